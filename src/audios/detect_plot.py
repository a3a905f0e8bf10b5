"""Picture of a detection: the log spectrogram with the per-window probability of "fake" drawn over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_detection(x: np.ndarray, sample_rate: int, result: dict[str, Any], out_png: str | Path) -> Path:
    """Spectrogram (top) and per-window p_fake timeline with flagged regions shaded (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from scipy import signal

    f, t, spec = signal.spectrogram(x, fs=sample_rate, nperseg=512, noverlap=384)
    db = 10 * np.log10(spec + 1e-12)
    fig = Figure(figsize=(10, 5), dpi=100)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    ax1.pcolormesh(t, f / 1000, db, shading="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max())
    ax1.set_ylabel("kHz")
    verdict = f"{result['decision'].upper()}  p_fake={result['p_fake']:.3f}"
    ax1.set_title(f"{Path(result['path']).name}: {verdict}")
    for region in result.get("flagged_regions", []):
        for ax in (ax1, ax2):
            ax.axvspan(region["start_s"], region["end_s"], color="red", alpha=0.15, linewidth=0)
    centres = [(w["start_s"] + w["end_s"]) / 2 for w in result["windows"]]
    probs = [w["p_fake"] for w in result["windows"]]
    for w in result["windows"]:
        ax2.hlines(w["p_fake"], w["start_s"], w["end_s"], color="#555", linewidth=1, alpha=0.5)
    ax2.plot(centres, probs, "o-", color="#D55E00", markersize=3, label="window")
    if result.get("segments"):
        # Segment-level p_fake (detect --segments) and the ranges it flags, hatched on the spectrogram.
        seg_centres = [(s["start_s"] + s["end_s"]) / 2 for s in result["segments"]]
        ax2.plot(seg_centres, [s["p_fake"] for s in result["segments"]], "-", color="#0072B2", linewidth=1.2,
                 label="segment")
        for region in result.get("segment_regions", []):
            ax1.axvspan(region["start_s"], region["end_s"], facecolor="none", edgecolor="#56B4E9", hatch="//",
                        linewidth=1.0)
        ax2.legend(loc="upper right", fontsize=8)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlim(0, max(result["duration_s"], t[-1] if len(t) else 0))  # no empty margins around the spectrogram
    ax2.set_ylabel("p(fake)")
    ax2.set_xlabel("time (s)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png
