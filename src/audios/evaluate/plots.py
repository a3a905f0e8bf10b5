"""Evaluation plots written as PNG: ROC, DET, score histograms (per class, per attack) and reliability diagram.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly, so nothing touches pyplot's global
state or needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm

from audios.evaluate.metrics import ReliabilityDiagram, check_scores_labels, det_curve

BONA_COLOUR = "#1b7837"
SPOOF_COLOUR = "#c51b7d"
DPI = 110
#: DET axis ticks (probabilities), as in the usual NIST/ASVspoof DET plots.
DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def plot_roc(scores: Any, labels: Any, path: str | Path, eer: float | None = None) -> Path:
    """ROC curve: bona fide accepted (1 - p_miss) against spoofs accepted (p_fa), with the EER point."""
    curve = det_curve(scores, labels)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot(curve.p_fa, 1 - curve.p_miss, color="#2166ac", lw=1.8, label="ROC")
    ax.plot([0, 1], [0, 1], color="0.7", ls="--", lw=1, label="chance")
    if eer is not None:
        ax.plot([eer], [1 - eer], "o", color="black", label=f"EER {100 * eer:.2f} %")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="spoof accepted (false-accept rate)",
           ylabel="bona fide accepted (1 - miss rate)", title="ROC")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_det(scores: Any, labels: Any, path: str | Path, eer: float | None = None) -> Path:
    """DET curve on normal-deviate (probit) axes: miss rate against false-accept rate."""
    s, y = check_scores_labels(scores, labels)
    curve = det_curve(s, y)
    # Rates of 0 or 1 have no probit; clip to half a clip's share so the curve's ends stay on the plot.
    floor = 0.5 / max(int(y.sum()), int((~y).sum()))
    lo, hi = max(min(DET_TICKS), floor), 1 - floor
    x = norm.ppf(np.clip(curve.p_fa, lo, hi))
    z = norm.ppf(np.clip(curve.p_miss, lo, hi))
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot(x, z, color="#2166ac", lw=1.8, label="DET")
    if eer is not None and eer > 0:
        e = norm.ppf(min(max(eer, lo), hi))
        ax.plot([e], [e], "o", color="black", label=f"EER {100 * eer:.2f} %")
    ticks = [t for t in DET_TICKS if t >= lo]
    positions = norm.ppf(ticks)
    names = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(positions, names)
    ax.set_yticks(positions, names)
    limit = (norm.ppf(lo), norm.ppf(0.8))
    ax.set(xlim=limit, ylim=limit, xlabel="false-accept rate (%)", ylabel="miss rate (%)", title="DET")
    ax.plot(limit, limit, color="0.7", ls="--", lw=1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def _bins(s: np.ndarray, n: int = 40) -> np.ndarray:
    lo, hi = float(s.min()), float(s.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


def plot_score_histograms(scores: Any, labels: Any, path: str | Path, threshold: float | None = None) -> Path:
    """Overlaid density histograms of bona fide and spoof scores, with an optional threshold line."""
    s, y = check_scores_labels(scores, labels)
    bins = _bins(s)
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    ax.hist(s[y], bins=bins, density=True, alpha=0.55, color=BONA_COLOUR, label=f"bona fide (n={int(y.sum())})")
    ax.hist(s[~y], bins=bins, density=True, alpha=0.55, color=SPOOF_COLOUR, label=f"spoof (n={int((~y).sum())})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set(xlabel="score (higher = more bona fide)", ylabel="density", title="Scores per class")
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_attack_histograms(scores: Any, labels: Any, generators: Sequence[Any], path: str | Path,
                           max_panels: int = 36) -> Path:
    """Small multiples: each attack's spoof scores against all bona fide scores (shared bins and x axis).

    Attacks are ordered by median score, hardest (highest, most bona-fide-like) first; beyond ``max_panels``
    the easiest are left out and the title says how many.
    """
    s, y = check_scores_labels(scores, labels)
    g = np.asarray(generators).astype(str)
    attacks = sorted(set(g[~y].tolist()), key=lambda a: -float(np.median(s[~y & (g == a)])))
    shown = attacks[:max_panels]
    n = max(len(shown), 1)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    bins = _bins(s, 30)
    height_in = 2.1 * rows + 0.6
    fig = Figure(figsize=(3.0 * cols, height_in))
    for i, attack in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.hist(s[y], bins=bins, density=True, alpha=0.5, color=BONA_COLOUR)
        ax.hist(s[~y & (g == attack)], bins=bins, density=True, alpha=0.6, color=SPOOF_COLOUR)
        ax.set_title(f"{attack} (n={int(np.sum(~y & (g == attack)))})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    title = "Spoof scores per attack (magenta) vs all bona fide (green)"
    if len(attacks) > len(shown):
        title += f"; {len(attacks) - len(shown)} easiest attacks not shown"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height_in))  # keep the top 0.45 inch for the title
    return _save(fig, path)


def plot_reliability(diagrams: dict[str, ReliabilityDiagram], path: str | Path) -> Path:
    """Reliability (calibration) curves: observed bona fide rate against mean P(bona fide) per bin."""
    fig = Figure(figsize=(5.5, 6))
    ax = fig.add_subplot(4, 1, (1, 3))
    hist = fig.add_subplot(4, 1, 4, sharex=ax)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    width = 1.0 / max(len(diagrams), 1)
    for j, (name, d) in enumerate(diagrams.items()):
        ok = d.counts > 0
        ax.plot(d.mean_predicted[ok], d.fraction_bonafide[ok], "o-", label=f"{name} (ECE {d.ece:.3f})")
        centres = 0.5 * (d.bin_edges[:-1] + d.bin_edges[1:])
        step = d.bin_edges[1] - d.bin_edges[0]
        hist.bar(centres - step / 2 + step * width * (j + 0.5), d.counts, width=step * width, label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed bona fide rate", title="Reliability diagram")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    hist.set(xlabel="predicted P(bona fide) = sigmoid(score)", ylabel="clips")
    fig.tight_layout()
    return _save(fig, path)
