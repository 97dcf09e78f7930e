"""Plugin discovery: each entry point of the ``gradleak`` group loads on its own, lazily.

A plugin that raises on import is recorded as ``broken`` (or ``unavailable`` when the cause is a missing
package, with the pip command that fixes it) and the others keep working; ``GRADLEAK_STRICT_PLUGINS=1``
re-raises instead. ``GRADLEAK_DISABLE_PLUGINS`` and ``GRADLEAK_LOAD_PLUGINS`` (comma-separated plugin names)
block or allow-list plugins; the built-in plugin is always loaded.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from . import hookspecs
from .errors import DependencyMissing

log = logging.getLogger(__name__)

#: First-party plugins: name -> the command that installs them.
FIRST_PARTY: dict[str, str] = {m: f'pip install "gradleak[{m}]"' for m in ("vision", "graph", "rl", "snn", "text", "medical")}
BUILTIN = "builtin"


@dataclass
class PluginInfo:
    """One row of ``gradleak plugins``."""

    name: str
    distribution: str
    version: str
    status: str  # ok | broken | unavailable | disabled | not installed
    error: str = ""
    provides: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "provides": dict(self.provides),
        }


def register_all(register: Callable[[type], None], *groups: Iterable[type]) -> None:
    """Pass every class of ``groups`` to ``register``, in order: the whole body of most ``register_*`` hooks.

    A plugin keeps in each module the list of what that module contributes (``ATTACKS = [...]``), so adding
    a component is one line beside its class, and its hooks only name the lists::

        from gradleak import hookimpl, register_all

        @hookimpl
        def register_attacks(register):
            register_all(register, grain.ATTACKS, dlg.ATTACKS)
    """
    for group in groups:
        for cls in group:
            register(cls)


def strict() -> bool:
    return os.environ.get("GRADLEAK_STRICT_PLUGINS", "").strip() not in ("", "0", "false", "no")


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _install_hint(name: str, distribution: str) -> str:
    return FIRST_PARTY.get(name, f'pip install "{distribution}"')


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("gradleak")
    pm.add_hookspecs(hookspecs)
    return pm


def _entry_points() -> Iterable[metadata.EntryPoint]:
    seen: set[str] = set()
    for ep in metadata.entry_points(group="gradleak"):
        if ep.name in seen or ep.name == BUILTIN:
            continue
        seen.add(ep.name)
        yield ep


def load_plugins(
    pm: pluggy.PluginManager, extra: Iterable[tuple[str, types.ModuleType | object]] = (), entry_points: bool = True
) -> dict[str, PluginInfo]:
    """Register the built-in plugin, ``extra`` (name, module) pairs and every allowed entry point on ``pm``."""
    from importlib import import_module

    from . import __version__

    infos: dict[str, PluginInfo] = {}
    builtin = import_module("gradleak.builtin.plugin")
    pm.register(builtin, name=BUILTIN)
    infos[BUILTIN] = PluginInfo(BUILTIN, "gradleak", __version__, "ok")
    for name, module in extra:
        _register(pm, infos, name, lambda m=module: m, "(in process)", "")
    if not entry_points:
        return infos
    disabled = _names("GRADLEAK_DISABLE_PLUGINS") or set()
    allowed = _names("GRADLEAK_LOAD_PLUGINS")
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        if ep.name in disabled:
            infos[ep.name] = PluginInfo(ep.name, dist, version, "disabled", "disabled by GRADLEAK_DISABLE_PLUGINS")
            continue
        if allowed is not None and ep.name not in allowed:
            infos[ep.name] = PluginInfo(ep.name, dist, version, "disabled", "not in GRADLEAK_LOAD_PLUGINS")
            continue
        _register(pm, infos, ep.name, ep.load, dist, version)
    for name in FIRST_PARTY:
        if name not in infos:
            infos[name] = PluginInfo(name, f"gradleak-{name}", "", "not installed", f"install with: {FIRST_PARTY[name]}")
    return infos


def _register(pm: pluggy.PluginManager, infos: dict[str, PluginInfo], name: str, load, dist: str, version: str) -> None:
    try:
        module = load()
        pm.register(module, name=name)
        try:
            pm.check_pending()
        except Exception:
            pm.unregister(name=name)
            raise
        infos[name] = PluginInfo(name, dist, version, "ok")
    except (DependencyMissing, ModuleNotFoundError) as exc:
        if strict():
            raise
        missing = getattr(exc, "name", None) or str(exc)
        hint = str(exc) if isinstance(exc, DependencyMissing) else (
            f"missing package '{missing}'; install with: {_install_hint(name, dist)}"
        )
        infos[name] = PluginInfo(name, dist, version, "unavailable", hint)
        log.warning("plugin %s is unavailable: %s", name, hint)
    except Exception as exc:  # a third party's bug must not take the rest down
        if strict():
            raise
        infos[name] = PluginInfo(
            name, dist, version, "broken",
            f"{type(exc).__name__}: {exc} (run with GRADLEAK_STRICT_PLUGINS=1 for the traceback)",
        )
        log.warning("plugin %s failed to load: %s: %s", name, type(exc).__name__, exc)
