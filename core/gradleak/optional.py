"""The one import guard for optional packages."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import DependencyMissing


def import_optional(module: str, extra: str, what: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`DependencyMissing` naming ``pip install "<extra>"``.

    ``extra`` is what the user types, e.g. ``"gradleak[dp]"`` or ``"gradleak-vision[lpips]"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        subject = what or f"this feature"
        raise DependencyMissing(
            f"{subject} needs the '{module.split('.')[0]}' package ({exc.__class__.__name__}: {exc}). "
            f'Install it with: pip install "{extra}"'
        ) from exc
