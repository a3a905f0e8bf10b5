"""Localisation of partly spoofed recordings: segment-level scores, smoothing, flagged ranges and their metrics.

Segments lie on a grid: segment ``k`` spans ``[k * hop_s, k * hop_s + segment_s]`` (the last one ends at the
recording's end). Each is scored by an analysis window of ``context_s`` seconds; the windows are the detector's
ordinary sliding windows (length ``context_s``, hop ``hop_s``, the last ending at the end, as in
:mod:`audios.detect`), and a segment takes the score of the window whose centre is nearest its own. With
``context_s == segment_s`` (the default for detectors that take any length, such as classic back-ends) the
window *is* the segment. Detectors with a fixed long input (released AASIST, ``audios train`` models: ~4 s)
would pad a 160 ms segment into a clip they never saw, so by default their context is their own window: a
segment is then judged by the window centred on it, and the localisation is only as sharp as the hop.

Scores of short segments are noisy (a spectral summary of 160 ms of speech varies a lot), so the LLRs are
smoothed along time by a running median (or mean) over ``smooth`` segments before the threshold. Flagged
ranges merge consecutive flagged segments; for the ranges, each segment owns the ``hop_s`` cell around its
centre, so a boundary is placed to within half a hop rather than half a segment.

Metrics (pure functions): segment-level EER (a segment is spoof when more than half its cell lies inside a
true spoofed range) and boundary precision/recall, where a predicted boundary (start or end of a flagged
range, file edges excluded) is a hit when it lies within ``tolerance_s`` of a true boundary not matched yet.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import median_filter, uniform_filter1d
from scipy.special import expit

from audios.audio import AudioConfig
from audios.errors import AudioError, ConfigError
from audios.evaluate.metrics import MetricInputError, equal_error_rate

log = logging.getLogger(__name__)

SMOOTHINGS = ("median", "mean")
#: Detector kinds that take one fixed input length (shorter input is padded), see the module docstring.
FIXED_INPUT_KINDS = frozenset({"aasist", "trained"})


@dataclass(frozen=True)
class SegmentConfig:
    """Segment grid and smoothing. Defaults: 160 ms segments every 80 ms, a 5-segment (400 ms) running median.

    ``context_s`` None: ``segment_s`` for detectors that take any length, the detector's window for fixed-input
    ones. ``threshold`` None: the detector's threshold (LLR scale).
    """

    segment_s: float = 0.16
    hop_s: float = 0.08
    context_s: float | None = None
    smooth: int = 5
    smoothing: str = "median"
    threshold: float | None = None

    def __post_init__(self) -> None:
        if not (self.segment_s > 0 and math.isfinite(self.segment_s)):
            raise ConfigError(f"SegmentConfig.segment_s={self.segment_s} must be a positive number of seconds")
        if not 0 < self.hop_s <= self.segment_s:
            raise ConfigError(f"SegmentConfig.hop_s={self.hop_s} must be positive and at most segment_s="
                              f"{self.segment_s} (a longer hop would leave gaps)")
        if self.context_s is not None and self.context_s < self.segment_s:
            raise ConfigError(f"SegmentConfig.context_s={self.context_s} must be at least segment_s={self.segment_s}")
        if self.smooth < 1:
            raise ConfigError(f"SegmentConfig.smooth={self.smooth} must be >= 1 (1 = no smoothing)")
        if self.smoothing not in SMOOTHINGS:
            raise ConfigError(f"SegmentConfig.smoothing={self.smoothing!r} must be one of {SMOOTHINGS}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ConfigError("SegmentConfig.threshold must be finite")


@dataclass(frozen=True)
class SegmentScores:
    """Per-segment times (s), raw and smoothed LLR scores (higher = more bona fide), shapes (n,)."""

    starts_s: np.ndarray
    ends_s: np.ndarray
    raw: np.ndarray
    scores: np.ndarray
    duration_s: float
    hop_s: float
    threshold: float

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``hop_s`` cell each segment owns (around its centre), clipped to the recording."""
        centres = (self.starts_s + self.ends_s) / 2
        return np.clip(centres - self.hop_s / 2, 0, self.duration_s), np.clip(centres + self.hop_s / 2, 0,
                                                                              self.duration_s)

    def flagged_regions(self) -> list[dict[str, float]]:
        """Merged time ranges whose smoothed score falls below the threshold."""
        lo, hi = self.cells()
        if lo.size:  # the first and last cells reach the recording's edges
            lo[0], hi[-1] = 0.0, self.duration_s
        regions: list[dict[str, float]] = []
        for a, b, flagged in zip(lo, hi, self.scores < self.threshold, strict=True):
            if not flagged:
                continue
            if regions and a <= regions[-1]["end_s"] + 1e-9:
                regions[-1]["end_s"] = round(float(b), 3)
            else:
                regions.append({"start_s": round(float(a), 3), "end_s": round(float(b), 3)})
        return regions

    def as_result(self) -> dict[str, Any]:
        """The JSON keys ``audios detect --segments`` adds: ``segments`` and ``segment_regions``."""
        p = 1.0 - expit(self.scores)
        segments = [{"start_s": round(float(a), 3), "end_s": round(float(b), 3), "p_fake": round(float(q), 6)}
                    for a, b, q in zip(self.starts_s, self.ends_s, p, strict=True)]
        return {"segments": segments, "segment_regions": self.flagged_regions()}


def context_seconds(detector: Any, config: SegmentConfig) -> float:
    """Length of the window that scores each segment (see the module docstring)."""
    if config.context_s is not None:
        return config.context_s
    kinds = {getattr(detector, "kind", None)} | {getattr(m, "kind", None) for m in getattr(detector, "members", [])}
    if kinds & FIXED_INPUT_KINDS:
        return max(config.segment_s, float(detector.window_s))
    return config.segment_s


def segment_grid(duration_s: float, config: SegmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Segment starts and ends (s) covering ``duration_s``: every ``hop_s``, the last ending at the end."""
    if duration_s <= config.segment_s:
        return np.array([0.0]), np.array([duration_s])
    n = int(math.ceil((duration_s - config.segment_s) / config.hop_s - 1e-9)) + 1
    starts = np.arange(n) * config.hop_s
    ends = np.minimum(starts + config.segment_s, duration_s)
    return starts, ends


def smooth_scores(scores: Any, size: int, how: str = "median") -> np.ndarray:
    """Running median or mean over ``size`` neighbours (edges repeat the end values), shape kept."""
    s = np.asarray(scores, dtype=np.float64)
    if size <= 1 or s.size <= 1:
        return s.copy()
    if how == "median":
        return median_filter(s, size=size, mode="nearest")
    if how == "mean":
        return uniform_filter1d(s, size=size, mode="nearest")
    raise ConfigError(f"smoothing {how!r} must be one of {SMOOTHINGS}")


def _fill_non_finite(raw: np.ndarray) -> np.ndarray:
    """Segments a detector cannot judge (a non-finite score, e.g. a silent pause for a ratio feature) take the
    score of the nearest judged segment."""
    finite = np.isfinite(raw)
    if finite.all():
        return raw
    good = np.flatnonzero(finite)
    pos = np.arange(raw.size)
    nearest = good[np.abs(pos[:, None] - good[None, :]).argmin(axis=1)]
    return raw[nearest]


def _assign(win_starts: np.ndarray, win_ends: np.ndarray, win_scores: np.ndarray, duration_s: float,
            detector: Any, config: SegmentConfig) -> SegmentScores:
    starts, ends = segment_grid(duration_s, config)
    centres = (starts + ends) / 2
    win_centres = (win_starts + win_ends) / 2
    nearest = np.abs(centres[:, None] - win_centres[None, :]).argmin(axis=1)
    raw = _fill_non_finite(win_scores[nearest])
    threshold = config.threshold if config.threshold is not None else float(detector.threshold)
    return SegmentScores(starts_s=starts, ends_s=ends, raw=raw,
                         scores=smooth_scores(raw, config.smooth, config.smoothing), duration_s=duration_s,
                         hop_s=config.hop_s, threshold=threshold)


def _scored(detector: Any, chunks: Iterator[tuple[float, np.ndarray]], name: str
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from audios.detect import DetectConfig, _score_windows
    from audios.features.base import SILENCE_PEAK

    # Digitally silent windows (a pause of at least one segment) are not sent to the detector: extractors
    # refuse silent input, which would fail the whole batch and so the whole recording. They score NaN and,
    # like other segments a detector cannot judge, take the nearest judged score (_fill_non_finite).
    audible: list[bool] = []
    silent_bounds: dict[int, dict[str, float]] = {}
    sr = detector.sample_rate

    def audible_only() -> Iterator[tuple[float, np.ndarray]]:
        for start_s, x in chunks:
            if x.size and float(np.max(np.abs(x))) < SILENCE_PEAK:
                silent_bounds[len(audible)] = {"start_s": round(start_s, 3), "end_s": round(start_s + x.size / sr, 3)}
                audible.append(False)
                continue
            audible.append(True)
            yield start_s, x

    heard_bounds, heard_scores, _ = _score_windows(detector, audible_only(), DetectConfig())
    if not audible:
        raise AudioError(name, "no audio to score")
    if heard_scores.size == 0 or not np.isfinite(heard_scores).any():
        raise AudioError(name, "the detector produced no finite segment score")
    scores = np.full(len(audible), np.nan)
    scores[np.flatnonzero(audible)] = heard_scores
    heard = iter(heard_bounds)
    bounds = [next(heard) if a else silent_bounds[i] for i, a in enumerate(audible)]
    # Window times as detect reports them (rounded to the millisecond).
    return (np.array([b["start_s"] for b in bounds]), np.array([b["end_s"] for b in bounds]), scores)


def score_segments_signal(detector: Any, x: np.ndarray, config: SegmentConfig = SegmentConfig(),
                          name: str = "<signal>") -> SegmentScores:
    """Segment scores of a mono signal already at ``detector.sample_rate``."""
    from audios.detect import _windows

    sr = detector.sample_rate
    win = max(1, int(round(context_seconds(detector, config) * sr)))
    hop = max(1, min(win, int(round(config.hop_s * sr))))
    chunks = ((s / sr, x[s:e]) for s, e in _windows(len(x), win, hop))
    ws, we, scores = _scored(detector, chunks, name)
    return _assign(ws, we, scores, len(x) / sr, detector, config)


def score_segments_path(detector: Any, path: str | Path, config: SegmentConfig = SegmentConfig(),
                        max_duration_s: float = 3 * 3600.0) -> SegmentScores:
    """Segment scores of a file, streamed block by block (memory about one window plus one block)."""
    from audios.detect import _stream_windows

    sr = detector.sample_rate
    win = max(1, int(round(context_seconds(detector, config) * sr)))
    hop = max(1, min(win, int(round(config.hop_s * sr))))
    n = 0

    def counted() -> Iterator[tuple[float, np.ndarray]]:
        nonlocal n
        audio_config = AudioConfig(sample_rate=sr, max_duration_s=max_duration_s)
        for start_s, x in _stream_windows(Path(path), sr, win, hop, audio_config):
            n = max(n, int(round(start_s * sr)) + len(x))
            yield start_s, x

    ws, we, scores = _scored(detector, counted(), str(path))
    return _assign(ws, we, scores, n / sr, detector, config)


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def parse_regions(value: Any, where: str = "spoof_regions") -> list[tuple[float, float]]:
    """True spoofed ranges from JSON text ``[[start_s, end_s], ...]`` (or the list itself), sorted."""
    data = json.loads(value) if isinstance(value, str) else value
    if data is None:
        return []
    out = []
    for item in data:
        a, b = (item["start_s"], item["end_s"]) if isinstance(item, dict) else item
        if not (math.isfinite(a) and math.isfinite(b) and 0 <= a < b):
            raise MetricInputError(where, f"range {item!r} is not 0 <= start < end")
        out.append((float(a), float(b)))
    return sorted(out)


def segment_labels(segments: SegmentScores, regions: Sequence[tuple[float, float]]) -> np.ndarray:
    """True (bona fide) for each segment unless more than half its cell lies in a spoofed range."""
    lo, hi = segments.cells()
    inside = np.zeros(lo.size)
    for a, b in regions:
        inside += np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0, None)
    return inside <= 0.5 * np.maximum(hi - lo, 1e-12)


def region_boundaries(regions: Sequence[tuple[float, float]] | Sequence[dict[str, float]], duration_s: float,
                      edge_s: float = 1e-3) -> np.ndarray:
    """Starts and ends of ranges (s), sorted, leaving out those at the recording's edges."""
    points = []
    for r in regions:
        a, b = (r["start_s"], r["end_s"]) if isinstance(r, dict) else r
        points += [p for p in (a, b) if edge_s < p < duration_s - edge_s]
    return np.sort(np.asarray(points, dtype=np.float64))


@dataclass(frozen=True)
class BoundaryCounts:
    """Matched boundaries: ``hits`` of ``n_predicted`` predictions and ``n_true`` true boundaries."""

    hits: int
    n_predicted: int
    n_true: int

    @property
    def precision(self) -> float:
        """Hits / predictions; 1.0 when nothing was predicted (no false boundary)."""
        return self.hits / self.n_predicted if self.n_predicted else 1.0

    @property
    def recall(self) -> float:
        """Hits / true boundaries; 1.0 when there is none to find."""
        return self.hits / self.n_true if self.n_true else 1.0

    def __add__(self, other: BoundaryCounts) -> BoundaryCounts:
        return BoundaryCounts(self.hits + other.hits, self.n_predicted + other.n_predicted,
                              self.n_true + other.n_true)


def match_boundaries(predicted: Any, truth: Any, tolerance_s: float) -> BoundaryCounts:
    """One-to-one matching of predicted to true boundary times within ``tolerance_s``, closest pairs first."""
    if not (tolerance_s >= 0 and math.isfinite(tolerance_s)):
        raise MetricInputError("tolerance_s", f"{tolerance_s!r} is not a finite non-negative number")
    p = np.asarray(predicted, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=np.float64).ravel()
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise MetricInputError("boundaries", "contain non-finite times")
    hits = 0
    if p.size and t.size:
        d = np.abs(p[:, None] - t[None, :])
        used_p, used_t = set(), set()
        for flat in np.argsort(d, axis=None, kind="stable"):
            i, j = divmod(int(flat), t.size)
            if d[i, j] > tolerance_s:
                break
            if i in used_p or j in used_t:
                continue
            used_p.add(i)
            used_t.add(j)
            hits += 1
    return BoundaryCounts(hits=hits, n_predicted=int(p.size), n_true=int(t.size))


@dataclass(frozen=True)
class LocalizationReport:
    """Pooled segment EER and boundary precision/recall at ``tolerance_s`` over ``n_files`` recordings."""

    segment_eer: float
    boundaries: BoundaryCounts
    tolerance_s: float
    n_files: int
    n_segments: int
    n_skipped: int
    per_file: pd.DataFrame

    def as_dict(self) -> dict[str, Any]:
        return {"segment_eer": self.segment_eer, "boundary_precision": self.boundaries.precision,
                "boundary_recall": self.boundaries.recall, "boundary_hits": self.boundaries.hits,
                "n_predicted_boundaries": self.boundaries.n_predicted, "n_true_boundaries": self.boundaries.n_true,
                "tolerance_s": self.tolerance_s, "n_files": self.n_files, "n_segments": self.n_segments,
                "n_skipped": self.n_skipped}

    def summary(self) -> str:
        return (f"{self.n_files} files, {self.n_segments} segments: segment EER {self.segment_eer:.4f}; boundaries "
                f"at ±{self.tolerance_s:g} s: precision {self.boundaries.precision:.3f}, recall "
                f"{self.boundaries.recall:.3f} ({self.boundaries.hits} hits, {self.boundaries.n_predicted} "
                f"predicted, {self.boundaries.n_true} true)" + (f"; {self.n_skipped} skipped" if self.n_skipped
                                                                   else ""))


def evaluate_localization(detector: Any, table: pd.DataFrame, config: SegmentConfig = SegmentConfig(),
                          tolerance_s: float = 0.2, progress: bool = False) -> LocalizationReport:
    """Score every recording of a spliced manifest (``root``, ``path``, ``spoof_regions``) and pool the metrics.

    Recordings without spoofed ranges (bona fide) add bona fide segments and any false boundaries.
    """
    from audios.manifest.io import audio_paths
    from audios.parallel import progress_bar

    for column in ("path", "root", "spoof_regions"):
        if column not in table.columns:
            raise MetricInputError("table", f"missing column {column!r} (make spliced data with `audios synth "
                                            "--splice`)")
    all_scores, all_labels, rows = [], [], []
    counts = BoundaryCounts(0, 0, 0)
    skipped = 0
    bar = progress_bar(len(table), "localize", progress)
    for path, regions_text in zip(audio_paths(table), table["spoof_regions"], strict=True):
        bar.update()
        try:
            seg = score_segments_path(detector, path, config)
        except AudioError as exc:
            log.warning("%s: skipped (%s)", path, exc.reason)
            skipped += 1
            continue
        truth = parse_regions(regions_text, f"{path}: spoof_regions")
        labels = segment_labels(seg, truth)
        predicted = region_boundaries(seg.flagged_regions(), seg.duration_s)
        true_b = region_boundaries(truth, seg.duration_s)
        c = match_boundaries(predicted, true_b, tolerance_s)
        counts = counts + c
        all_scores.append(seg.scores)
        all_labels.append(labels)
        rows.append({"path": str(path), "n_segments": int(seg.scores.size), "hits": c.hits,
                     "predicted": json.dumps([round(float(v), 3) for v in predicted]),
                     "true": json.dumps([round(float(v), 3) for v in true_b])})
    bar.close()
    if not all_scores:
        raise MetricInputError("table", "no recording could be scored")
    s, y = np.concatenate(all_scores), np.concatenate(all_labels)
    eer = equal_error_rate(s, y).eer if y.any() and not y.all() else float("nan")
    return LocalizationReport(segment_eer=float(eer), boundaries=counts, tolerance_s=tolerance_s,
                              n_files=len(rows), n_segments=int(s.size), n_skipped=skipped, per_file=pd.DataFrame(rows))
