"""The exceptions gradleak raises.

Every error a user can cause is a :class:`UsageError`: the CLI prints its one-line message and exits 2.
Messages name the thing, what was expected and the fix, so they can be shown as they are.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GradleakError(Exception):
    """Base class of every gradleak error."""


class UsageError(GradleakError):
    """Bad input from the user (names, parameters, data, capabilities): exit code 2."""


class UnknownComponent(UsageError):
    """No component of that kind and name is registered."""


class AmbiguousComponent(UsageError):
    """A bare name is registered by several plugins and the case's modality does not decide."""


class ConfigError(UsageError):
    """A parameter is unknown or has a value of the wrong type."""


class IncompatibleError(UsageError):
    """A component does not apply to the case (wrong data kind)."""


class CapabilityError(UsageError):
    """The threat model withholds a capability the component needs."""


class DataError(UsageError):
    """The private data is missing, unreadable, too small, or the update holds NaN/inf."""


class DependencyMissing(UsageError, ModuleNotFoundError):
    """An optional package is not installed; the message names the pip command that installs it."""


class AttackFailed(GradleakError):
    """An attack knows it cannot reconstruct this batch (e.g. a rank condition fails).

    Raised from ``Attack.reconstruct``; the run goes on and records every sample of the batch with status
    ``failed: <reason>`` and no metric values, never a wrong reconstruction. ``reason`` is one short word
    (``rank``, ``budget``); ``detail`` says why in a sentence.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class PluginError(GradleakError):
    """A plugin broke the contract (raised only under GRADLEAK_STRICT_PLUGINS=1 or by the conformance kit)."""


def suggest(name: str, known: Iterable[str]) -> str:
    """A " Did you mean ...?" suffix for ``name`` among ``known`` (empty when nothing is close)."""
    close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
