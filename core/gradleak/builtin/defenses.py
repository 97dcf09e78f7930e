"""Generic defenses."""

from __future__ import annotations

from ..components import Defense


class NoDefense(Defense):
    """No defense: the update is sent as computed (the baseline of every comparison)."""

    name = "none"
    stage = "update"
