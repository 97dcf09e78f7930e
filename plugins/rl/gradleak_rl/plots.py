"""The report's picture of an RL reconstruction: true vs reconstructed states and next states."""

from __future__ import annotations

import math
from pathlib import Path

from .transitions import Transitions

#: At most this many state dimensions are drawn (highway observations have 25 and more).
MAX_PANELS = 8


def plot_trajectories(truth: Transitions, recon: Transitions, path: Path) -> None:
    """One panel per state dimension: the true s (line) and s' (dashed) against the transition index, with the
    reconstructed s (circles) and s' (crosses) on top. Dimensions beyond :data:`MAX_PANELS` are left out, the
    most varying ones kept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, s2 = truth.s.detach().cpu().double(), truth.s2.detach().cpu().double()
    rs, rs2 = recon.s.detach().cpu().double(), recon.s2.detach().cpu().double()
    dims = s.std(0).argsort(descending=True)[:MAX_PANELS].sort().values.tolist() if len(s) > 1 else list(
        range(min(MAX_PANELS, s.shape[1])))
    cols = min(4, len(dims))
    rows = math.ceil(len(dims) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    x = list(range(len(s)))
    for ax, d in zip(axes.ravel(), dims):
        ax.plot(x, s[:, d], "-", color="0.2", label="true s")
        ax.plot(x, s2[:, d], "--", color="0.55", label="true s'")
        ax.plot(x, rs[:, d], "o", mfc="none", color="tab:blue", label="recon s")
        ax.plot(x, rs2[:, d], "x", color="tab:red", label="recon s'")
        ax.set_title(f"state[{d}]", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(dims):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=6, loc="best")
    fig.suptitle(f"{truth.env}: true vs reconstructed transitions", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
