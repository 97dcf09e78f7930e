"""Client-side detectors of active (malicious-server) attacks; generic, they inspect any received model."""

from __future__ import annotations

DETECTORS: list[type] = []
