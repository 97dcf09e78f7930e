"""The report's plots (matplotlib, Agg): metric vs defense strength, and per-modality bars."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import pandas as pd

from ..optional import import_optional


@dataclass(frozen=True)
class Plot:
    title: str
    png_base64: str
    caption: str = ""


def _pyplot():
    matplotlib = import_optional("matplotlib", "gradleak[report]", "the report's plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _encode(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def defense_strength(defense: str) -> tuple[str, float | None]:
    """``"prune:ratio=0.9"`` -> ``("prune", 0.9)``: the defense and its first numeric parameter."""
    name, _, rest = defense.partition(":")
    for item in rest.split(","):
        _, eq, value = item.partition("=")
        if eq:
            try:
                return name, float(value)
            except ValueError:
                continue
    return name, None


def strength_plots(frame: pd.DataFrame, primary: dict[str, str | None]) -> list[Plot]:
    """For each defense used at >= 2 strengths: the primary metric against the strength, one line per case/attack.

    The undefended runs (``none``) are drawn at strength 0 as the reference point.
    """
    ok = frame[(frame["status"] == "ok") & ~frame["defense"].str.contains(r"\+", regex=True)]
    if ok.empty:
        return []
    plt = _pyplot()
    parsed = ok["defense"].map(defense_strength)
    ok = ok.assign(defense_name=[p[0] for p in parsed], strength=[p[1] for p in parsed])
    plots = []
    for mod, metric in primary.items():
        if metric is None or metric not in ok.columns:
            continue
        sub = ok[ok["modality"] == mod]
        for dname in sorted(set(sub["defense_name"]) - {"none"}):
            runs = sub[(sub["defense_name"] == dname) & sub["strength"].notna()]
            if runs["strength"].nunique() < 2:
                continue
            fig, ax = plt.subplots(figsize=(5.2, 3.4))
            for (case, attack), g in runs.groupby(["case", "attack"]):
                base = sub[(sub["defense_name"] == "none") & (sub["case"] == case) & (sub["attack"] == attack)]
                pts = pd.concat([g, base.assign(strength=0.0)]) if len(base) else g
                stats = pts.groupby("strength")[metric].agg(["mean", "std"]).sort_index()
                ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3,
                            label=f"{case} / {attack}")
            ax.set_xlabel(f"{dname} strength (first parameter; 0 = no defense)")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            plots.append(Plot(f"{mod}: {metric} vs {dname} strength", _encode(fig)))
            plt.close(fig)
    return plots


def modality_bars(frame: pd.DataFrame, primary: dict[str, str | None]) -> list[Plot]:
    """Per modality: the primary metric (mean +- sd over seeds) of every case/attack, one bar per defense."""
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        return []
    plt = _pyplot()
    plots = []
    for mod, metric in primary.items():
        sub = ok[ok["modality"] == mod]
        if metric is None or metric not in sub.columns or sub[metric].isna().all():
            continue
        stats = sub.groupby(["case", "attack", "defense"])[metric].agg(["mean", "std"]).reset_index()
        groups = [f"{c}\n{a}" for c, a in stats[["case", "attack"]].drop_duplicates().itertuples(index=False)]
        defenses = sorted(set(stats["defense"]), key=lambda d: (d != "none", d))
        width = 0.8 / max(1, len(defenses))
        fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(groups)), 3.4))
        for j, d in enumerate(defenses):
            xs, ys, es = [], [], []
            for i, g in enumerate(groups):
                case, attack = g.split("\n")
                row = stats[(stats["case"] == case) & (stats["attack"] == attack) & (stats["defense"] == d)]
                if len(row):
                    xs.append(i + (j - (len(defenses) - 1) / 2) * width)
                    ys.append(float(row["mean"].iloc[0]))
                    es.append(float(row["std"].fillna(0).iloc[0]))
            ax.bar(xs, ys, width=width, yerr=es, capsize=2, label=d)
        ax.set_xticks(range(len(groups)), groups, fontsize=7)
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, title="defense", title_fontsize=7)
        plots.append(Plot(f"{mod}: {metric} by case, attack and defense", _encode(fig)))
        plt.close(fig)
    return plots
