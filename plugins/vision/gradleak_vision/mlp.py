"""The ``vision/mlp`` case (a ReLU MLP), the model of the exact linear-layer attacks."""

from __future__ import annotations

CASES: list[type] = []
