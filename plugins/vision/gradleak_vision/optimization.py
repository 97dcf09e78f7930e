"""Passive optimization attacks on images beyond the core's generic ones, on the core engine."""

from __future__ import annotations

ATTACKS: list[type] = []
PRIORS: list[type] = []
