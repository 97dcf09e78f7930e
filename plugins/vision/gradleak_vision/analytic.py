"""Analytic (closed-form, exact) attacks on images."""

from __future__ import annotations

ATTACKS: list[type] = []
