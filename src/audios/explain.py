"""Explanations: which parts of the spectrogram (and which features) drove a detector's verdict.

Three methods, all reporting *evidence for fake* (positive = pushed the verdict towards "machine-generated"):

* ``occlusion`` (any detector): the STFT is cut into ``n_bands`` frequency bands x ``n_times`` time patches;
  each patch is zeroed, the signal resynthesised by inverse STFT and rescored. A patch's saliency is
  ``score(occluded) - score(original)`` in the detector's score units (LLR for calibrated ones): removing
  evidence of fake raises the bona fide score. Zeroing is the usual occlusion baseline; a detector may also
  react to the hole itself, which shows up as negative saliency.
* ``integrated-gradients`` (PyTorch detectors: ``audios train`` runs, released AASIST): Sundararajan et al.
  2017, "Axiomatic Attribution for Deep Networks", over a multiplicative mask on the STFT (baseline: mask 0,
  silence; path: ``alpha * mask``, ``steps`` Riemann points). The per-bin attributions are summed into the same
  band x time grid and negated (evidence for fake). By the completeness axiom they add up to about
  ``score(silence) - score(x)``.
* ``contributions`` (classic linear back-ends, e.g. ``logreg``): each feature's share of the calibrated LLR,
  ``slope * coef_j * (x_j - mean_j) / scale_j``, reported as the top features by magnitude (sign flipped to
  evidence for fake, like the others).

Long recordings are explained on their first ``max_duration_s`` seconds.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal as sps

from audios.audio import AudioConfig, load_audio
from audios.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("auto", "occlusion", "integrated-gradients")


@dataclass(frozen=True)
class ExplainConfig:
    """Saliency grid (``n_bands`` equal-width bands up to Nyquist x ``n_times`` equal time patches), STFT size,
    method, integrated-gradients ``steps``, how many feature contributions to list, and the length explained."""

    method: str = "auto"
    n_bands: int = 16
    n_times: int = 8
    n_fft: int = 512
    hop: int = 128
    steps: int = 16
    top_features: int = 12
    max_duration_s: float = 6.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"ExplainConfig.method={self.method!r} must be one of {METHODS}")
        if self.n_bands < 1 or self.n_times < 1 or self.steps < 1 or self.top_features < 0:
            raise ConfigError("ExplainConfig: n_bands, n_times and steps must be >= 1, top_features >= 0")
        if self.n_fft < 16 or not 0 < self.hop <= self.n_fft // 2:
            raise ConfigError(f"ExplainConfig: need n_fft >= 16 and 0 < hop <= n_fft / 2, got n_fft={self.n_fft}, "
                              f"hop={self.hop}")
        if self.n_bands > self.n_fft // 2:
            raise ConfigError(f"ExplainConfig.n_bands={self.n_bands} exceeds the {self.n_fft // 2} STFT bins")
        if not (self.max_duration_s > 0 and math.isfinite(self.max_duration_s)):
            raise ConfigError(f"ExplainConfig.max_duration_s={self.max_duration_s} must be positive")


@dataclass(frozen=True)
class Saliency:
    """Evidence for fake per (band, time patch): ``values`` (n_bands, n_times), edges in Hz and seconds."""

    values: np.ndarray
    band_edges_hz: np.ndarray
    time_edges_s: np.ndarray
    method: str
    base_score: float

    def band_profile(self) -> np.ndarray:
        """Positive saliency summed over time, per band, shape (n_bands,)."""
        return np.clip(self.values, 0, None).sum(axis=1)

    def band_share(self, lo_hz: float, hi_hz: float) -> float:
        """Share of the positive saliency in bands overlapping [lo_hz, hi_hz]."""
        profile = self.band_profile()
        total = profile.sum()
        if total <= 0:
            return 0.0
        inside = (self.band_edges_hz[1:] > lo_hz) & (self.band_edges_hz[:-1] < hi_hz)
        return float(profile[inside].sum() / total)

    def top_bands(self, k: int = 3) -> list[dict[str, float]]:
        profile = self.band_profile()
        order = np.argsort(-profile)[:k]
        return [{"low_hz": float(self.band_edges_hz[i]), "high_hz": float(self.band_edges_hz[i + 1]),
                 "evidence_for_fake": float(profile[i])} for i in order if profile[i] > 0]


@dataclass(frozen=True)
class Explanation:
    """A saliency map and, for linear classic back-ends, feature contributions ``[(name, evidence for fake)]``."""

    saliency: Saliency
    contributions: list[tuple[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.saliency.method, "base_score": self.saliency.base_score,
                "top_bands": self.saliency.top_bands(),
                "feature_contributions": [{"feature": n, "evidence_for_fake": v} for n, v in self.contributions]}


def _band_masks(freqs: np.ndarray, n_bands: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(0.0, sample_rate / 2, n_bands + 1)
    idx = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, n_bands - 1)
    return edges, idx


def _time_index(n_frames: int, frame_times: np.ndarray, duration_s: float, n_times: int
                ) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(0.0, duration_s, n_times + 1)
    idx = np.clip(np.searchsorted(edges, frame_times, side="right") - 1, 0, n_times - 1)
    return edges, idx


def recording_scores(detector: Any, signals: list[np.ndarray]) -> np.ndarray:
    """Each signal's score as ``audios detect`` computes it: detector windows, length-weighted mean."""
    from audios.detect import _windows

    sr = detector.sample_rate
    win = max(1, int(round(detector.window_s * sr)))
    hop = max(1, min(win, int(round(detector.hop_s * sr))))
    chunks, owner, lengths = [], [], []
    for i, x in enumerate(signals):
        for s, e in _windows(len(x), win, hop):
            chunks.append(x[s:e])
            owner.append(i)
            lengths.append(e - s)
    scores = np.empty(len(chunks))
    for b in range(0, len(chunks), 32):
        scores[b:b + 32] = np.asarray(detector.score_signals(chunks[b:b + 32]), dtype=np.float64)
    owner_a, w = np.asarray(owner), np.asarray(lengths, dtype=np.float64)
    return np.array([np.average(scores[owner_a == i], weights=w[owner_a == i]) for i in range(len(signals))])


def occlusion_saliency(detector: Any, x: np.ndarray, config: ExplainConfig = ExplainConfig()) -> Saliency:
    """Occlusion saliency of a mono signal at ``detector.sample_rate`` (see the module docstring)."""
    sr = detector.sample_rate
    x = np.asarray(x, dtype=np.float32)
    noverlap = config.n_fft - config.hop
    freqs, times, Z = sps.stft(x, fs=sr, nperseg=config.n_fft, noverlap=noverlap)
    band_edges, band_idx = _band_masks(freqs, config.n_bands, sr)
    time_edges, time_idx = _time_index(Z.shape[1], times, len(x) / sr, config.n_times)
    occluded, cells = [], []
    for b in range(config.n_bands):
        for t in range(config.n_times):
            mask = np.outer(band_idx == b, time_idx == t)
            if not mask.any():
                continue
            _, y = sps.istft(np.where(mask, 0, Z), fs=sr, nperseg=config.n_fft, noverlap=noverlap)
            y = y[: len(x)]
            occluded.append(np.pad(y, (0, len(x) - len(y))).astype(np.float32))
            cells.append((b, t))
    scores = recording_scores(detector, [x, *occluded])
    values = np.zeros((config.n_bands, config.n_times))
    for (b, t), s in zip(cells, scores[1:], strict=True):
        values[b, t] = s - scores[0]
    return Saliency(values=values, band_edges_hz=band_edges, time_edges_s=time_edges, method="occlusion",
                    base_score=float(scores[0]))


def integrated_gradients(score_fn: Any, x: np.ndarray, sample_rate: int, config: ExplainConfig = ExplainConfig()
                         ) -> Saliency:
    """Integrated gradients over an STFT mask for a differentiable ``score_fn``: (1, samples) tensor -> (1,) score."""
    import torch

    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))[None, :]
    window = torch.hann_window(config.n_fft)
    Z = torch.stft(xt, n_fft=config.n_fft, hop_length=config.hop, window=window, center=True,
                   return_complex=True)  # (1, bins, frames)
    grads = torch.zeros(Z.shape[1:], dtype=torch.float64)
    for k in range(config.steps):
        alpha = (k + 0.5) / config.steps
        mask = torch.full(Z.shape[1:], alpha, requires_grad=True)
        y = torch.istft(Z * mask, n_fft=config.n_fft, hop_length=config.hop, window=window, center=True,
                        length=xt.shape[1])
        score = score_fn(y).sum()
        (g,) = torch.autograd.grad(score, mask)
        grads += g.double()
    attribution = (grads / config.steps).numpy()  # mask (1) minus baseline (0) times the mean gradient
    with torch.no_grad():
        base = float(score_fn(xt).sum())
    freqs = np.fft.rfftfreq(config.n_fft, 1 / sample_rate)
    frame_times = np.arange(Z.shape[2]) * config.hop / sample_rate
    band_edges, band_idx = _band_masks(freqs, config.n_bands, sample_rate)
    time_edges, time_idx = _time_index(Z.shape[2], frame_times, x.size / sample_rate, config.n_times)
    values = np.zeros((config.n_bands, config.n_times))
    np.add.at(values, (band_idx[:, None], time_idx[None, :]), -attribution)  # evidence for fake
    return Saliency(values=values, band_edges_hz=band_edges, time_edges_s=time_edges,
                    method="integrated-gradients", base_score=base)


def torch_score_fn(detector: Any) -> Any:
    """A differentiable (1, samples) -> (1,) bona fide score for PyTorch detectors, or None for the others.

    The input is tiled to the model's input length as the detector does (``prepare_waveform``), in torch.
    """
    import torch

    trained = getattr(detector, "_trained", None)
    model = trained.model if trained is not None else getattr(detector, "_model", None)
    if model is None or not isinstance(model, torch.nn.Module):
        return None
    n = int(round(detector.window_s * detector.sample_rate))

    def score(y: torch.Tensor) -> torch.Tensor:
        reps = -(-n // y.shape[1])
        out = model(y.repeat(1, reps)[:, :n])
        logits = out[-1] if isinstance(out, tuple) else out
        return logits[:, 1] - logits[:, 0]

    return score


def linear_contributions(detector: Any, x: np.ndarray, top: int = 12) -> list[tuple[str, float]]:
    """Per-feature evidence for fake of a classic linear back-end (scaler + linear classifier), top by magnitude.

    Empty for other detectors.
    """
    inner = getattr(detector, "_inner", None)
    est = getattr(inner, "estimator", None)
    steps = getattr(est, "steps", None)
    if inner is None or not steps or len(steps) != 2 or not hasattr(steps[-1][1], "coef_"):
        return []
    scaler, clf = steps[0][1], steps[1][1]
    if not hasattr(scaler, "mean_") or np.shape(clf.coef_)[0] != 1:
        return []
    features = np.asarray(inner.extractor.extract([np.asarray(x, dtype=np.float32)])[0], dtype=np.float64)
    if features.ndim != 1 or features.size != len(inner.feature_columns):
        return []
    z = (features - scaler.mean_) / np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    slope = float(getattr(inner.calibrator, "slope_", 1.0))
    contrib = -slope * np.asarray(clf.coef_)[0] * z  # evidence for fake, in calibrated LLR units
    order = np.argsort(-np.abs(contrib))[:top]
    return [(str(inner.feature_columns[i]), float(contrib[i])) for i in order]


def explain_signal(detector: Any, x: np.ndarray, config: ExplainConfig = ExplainConfig()) -> Explanation:
    """Explain a mono signal at ``detector.sample_rate`` (its first ``max_duration_s`` seconds)."""
    x = np.asarray(x, dtype=np.float32)[: int(round(config.max_duration_s * detector.sample_rate))]
    method = config.method
    fn = torch_score_fn(detector) if method in ("auto", "integrated-gradients") else None
    if method == "integrated-gradients" and fn is None:
        raise ConfigError(f"integrated gradients need a PyTorch detector; {detector.name} is not one "
                          "(use method=occlusion)")
    if fn is not None:
        saliency = integrated_gradients(fn, x, detector.sample_rate, config)
    else:
        saliency = occlusion_saliency(detector, x, config)
    return Explanation(saliency=saliency, contributions=linear_contributions(detector, x, config.top_features))


def plot_explanation(x: np.ndarray, sample_rate: int, explanation: Explanation, title: str,
                     out_png: str | Path) -> Path:
    """Spectrogram, saliency over it (red = evidence for fake, blue = for real) and feature contributions."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    sal = explanation.saliency
    f, t, spec = sps.spectrogram(x, fs=sample_rate, nperseg=512, noverlap=384)
    db = 10 * np.log10(spec + 1e-12)
    n_rows = 3 if explanation.contributions else 2
    fig = Figure(figsize=(10, 3.2 * n_rows), dpi=100)
    axes = fig.subplots(n_rows, 1)
    axes[0].pcolormesh(t, f / 1000, db, shading="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max())
    axes[0].set_ylabel("kHz")
    axes[0].set_title(title)
    limit = float(np.abs(sal.values).max()) or 1.0
    axes[1].pcolormesh(t, f / 1000, db, shading="auto", cmap="gray", vmin=db.max() - 80, vmax=db.max())
    mesh = axes[1].pcolormesh(sal.time_edges_s, sal.band_edges_hz / 1000, sal.values, cmap="RdBu_r",
                              vmin=-limit, vmax=limit, alpha=0.6, shading="flat")
    fig.colorbar(mesh, ax=axes[1], label="evidence for fake")
    axes[1].set_ylabel("kHz")
    axes[1].set_xlabel("time (s)")
    axes[1].set_title(f"{sal.method} saliency")
    if explanation.contributions:
        names = [n for n, _ in explanation.contributions][::-1]
        values = [v for _, v in explanation.contributions][::-1]
        axes[2].barh(names, values, color=["#c0392b" if v > 0 else "#1e8449" for v in values])
        axes[2].axvline(0, color="#333", linewidth=0.8)
        axes[2].set_xlabel("evidence for fake (LLR units)")
        axes[2].set_title("feature contributions (linear back-end)")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png


def explain_file(detector: Any, path: str | Path, out_dir: str | Path, config: ExplainConfig = ExplainConfig()
                 ) -> dict[str, Any]:
    """Verdict plus explanation of one file: writes ``<stem>.explain.png`` and ``<stem>.explain.json``."""
    from audios.detect import detect_path
    from audios.runs import write_text_atomic

    path, out_dir = Path(path), Path(out_dir)
    result = detect_path(detector, path)
    x = load_audio(path, AudioConfig(sample_rate=detector.sample_rate))
    explanation = explain_signal(detector, x, config)
    x = x[: int(round(config.max_duration_s * detector.sample_rate))]
    title = f"{path.name}: {result['decision'].upper()}  p_fake={result['p_fake']:.3f}"
    png = plot_explanation(x, detector.sample_rate, explanation, title, out_dir / f"{path.stem}.explain.png")
    out = {**result, "explanation": {**explanation.as_dict(), "png": str(png)}}
    write_text_atomic(out_dir / f"{path.stem}.explain.json", json.dumps(out, indent=2) + "\n")
    return out
