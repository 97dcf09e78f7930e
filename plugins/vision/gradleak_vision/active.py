"""Active attacks: a malicious server modifies the model before it sends it (``prepare``)."""

from __future__ import annotations

ATTACKS: list[type] = []
