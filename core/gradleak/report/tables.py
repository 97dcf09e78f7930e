"""The numbers of a report: per-modality comparison tables and the cross-modality success-rate table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..errors import UsageError

ID_COLUMNS = ("key", "study", "case", "modality", "attack", "defense", "seed", "status", "seconds", "peak_mem_mb",
              "success_rate", "failed_samples", "device", "error")


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool


@dataclass(frozen=True)
class ModalityInfo:
    name: str
    primary_metric: str | None
    success_criterion: str


@dataclass(frozen=True)
class Cell:
    mean: float
    sd: float
    n: int
    best: bool = False

    def text(self) -> str:
        if math.isnan(self.mean):
            return "-"
        spread = f" &plusmn; {_fmt(self.sd)}" if self.n > 1 else ""
        return f"{_fmt(self.mean)}{spread}"


@dataclass(frozen=True)
class Table:
    """Rows (case, attack, defense) x metric columns, mean +- sd over seeds, best per column marked."""

    modality: str
    columns: list[str]
    directions: dict[str, bool]
    rows: list[tuple[tuple[str, str, str], int, dict[str, Cell]]]


def _fmt(v: float) -> str:
    if v == 0 or math.isnan(v):
        return f"{v:g}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ID_COLUMNS and not c.startswith("utility.")
            and pd.api.types.is_numeric_dtype(frame[c])]


def describe(frame: pd.DataFrame) -> tuple[dict[str, ModalityInfo], dict[tuple[str, str], MetricInfo]]:
    """What the registry says about the modalities and metrics in ``frame`` (defaults when a plugin is absent)."""
    from ..registry import registry

    reg = registry()
    modalities: dict[str, ModalityInfo] = {}
    metrics: dict[tuple[str, str], MetricInfo] = {}
    for mod in sorted(set(frame["modality"].dropna())):
        try:
            cls = reg.modality(mod)
            modalities[mod] = ModalityInfo(mod, cls.primary_metric, cls.success_criterion)
        except (UsageError, AttributeError):
            modalities[mod] = ModalityInfo(mod, None, "")
        sub = frame[frame["modality"] == mod]
        for col in metric_columns(sub):
            try:
                higher = bool(reg.get("metric", col, modality=mod).higher_is_better)
            except UsageError:
                higher = True
            metrics[(mod, col)] = MetricInfo(col, higher)
    return modalities, metrics


def comparison_tables(frame: pd.DataFrame, metrics: dict[tuple[str, str], MetricInfo],
                      modalities: dict[str, ModalityInfo]) -> list[Table]:
    ok = frame[frame["status"] == "ok"]
    tables = []
    for mod in sorted(set(ok["modality"].dropna())):
        sub = ok[ok["modality"] == mod]
        cols = [c for c in metric_columns(sub) if sub[c].notna().any()]
        primary = modalities[mod].primary_metric
        if primary in cols:
            cols.remove(primary)
            cols.insert(0, primary)
        cols += [c for c in ("success_rate", "seconds") if c in sub.columns and c not in cols]
        directions = {c: metrics.get((mod, c), MetricInfo(c, True)).higher_is_better for c in cols}
        directions["seconds"] = False
        rows: list[tuple[tuple[str, str, str], int, dict[str, Cell]]] = []
        for ident, group in sub.groupby(["case", "attack", "defense"], sort=True):
            cells = {}
            for c in cols:
                values = pd.to_numeric(group[c], errors="coerce").dropna()
                cells[c] = Cell(float(values.mean()) if len(values) else float("nan"),
                                float(values.std(ddof=1)) if len(values) > 1 else 0.0, int(len(values)))
            rows.append((ident, int(len(group)), cells))
        for c in cols:
            means = [r[2][c].mean for r in rows if not math.isnan(r[2][c].mean)]
            if len(means) < 2 or len(set(means)) == 1:
                continue  # nothing to compare, or every row ties
            best = max(means) if directions[c] else min(means)
            for r in rows:
                cell = r[2][c]
                if not math.isnan(cell.mean) and cell.mean == best:
                    r[2][c] = Cell(cell.mean, cell.sd, cell.n, best=True)
        tables.append(Table(mod, cols, directions, rows))
    return tables


def success_table(frame: pd.DataFrame) -> tuple[list[str], list[tuple[str, str, dict[str, Any]]]]:
    """Rows (modality, defense) x attack columns: the share of samples reconstructed successfully."""
    ok = frame[(frame["status"] == "ok") & frame["success_rate"].notna()]
    attacks = sorted(set(ok["attack"]))
    rows = []
    for (mod, defense), group in ok.groupby(["modality", "defense"], sort=True):
        rates = {a: float(g["success_rate"].mean()) for a, g in group.groupby("attack")}
        rows.append((str(mod), str(defense), rates))
    return attacks, rows


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame["status"].value_counts().sort_index().items()}
