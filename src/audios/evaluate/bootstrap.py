"""Percentile bootstrap confidence intervals for score-set metrics.

Two resampling units:

* utterances (no groups): bona fide and spoof clips are resampled with replacement *within their class*, so every
  replicate keeps the original class counts (stratified bootstrap);
* speakers (``groups`` given): whole groups are drawn with replacement, keeping each speaker's clips together, which
  accounts for the correlation between clips of one speaker. A replicate that happens to lack a class is redrawn.

The caller passes an ``rng: np.random.Generator``; nothing here seeds anything globally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from audios.evaluate.metrics import MetricInputError, check_scores_labels

log = logging.getLogger(__name__)

Statistic = Callable[[np.ndarray, np.ndarray], Mapping[str, float]]

#: A replicate lacking one class is redrawn at most this many times before the bootstrap gives up.
MAX_REDRAWS = 1000


@dataclass(frozen=True)
class ConfidenceInterval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class BootstrapResult:
    """Intervals per statistic name, at ``level`` (0.95 = 95 %), from ``n_resamples`` replicates over ``unit``."""

    intervals: Mapping[str, ConfidenceInterval]
    level: float
    n_resamples: int
    unit: str
    n_groups: int

    def as_pairs(self) -> dict[str, list[float]]:
        """``{name: [low, high]}``, the JSON form."""
        return {k: [v.low, v.high] for k, v in self.intervals.items()}


def _group_sampler(codes: np.ndarray, rng: np.random.Generator) -> Callable[[], np.ndarray]:
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    n_groups = sizes.size

    def draw() -> np.ndarray:
        picked = rng.integers(0, n_groups, size=n_groups)
        lengths = sizes[picked]
        # For each picked group, the positions starts[g] .. starts[g] + sizes[g] - 1 in `order`.
        offsets = np.repeat(starts[picked] - np.cumsum(lengths) + lengths, lengths)
        return order[offsets + np.arange(lengths.sum())]

    return draw


def bootstrap_ci(
    scores: Any,
    labels: Any,
    statistic: Statistic,
    rng: np.random.Generator,
    n_resamples: int = 1000,
    level: float = 0.95,
    groups: Any = None,
) -> BootstrapResult:
    """Percentile intervals for every value ``statistic(scores, labels)`` returns.

    ``statistic`` takes validated arrays (float scores, bool labels with True = bona fide) and returns a mapping of
    names to numbers; it is evaluated once on the full data for the estimates and once per replicate.
    ``groups`` (e.g. speaker ids, one per clip) switches to resampling whole groups.
    """
    if not isinstance(rng, np.random.Generator):
        raise MetricInputError("rng", f"expected numpy.random.Generator, got {type(rng).__name__}")
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise MetricInputError("n_resamples", f"{n_resamples!r} is not a positive integer")
    if not 0.0 < level < 1.0:
        raise MetricInputError("level", f"{level!r} is not in (0, 1)")
    s, y = check_scores_labels(scores, labels)
    estimates = {k: float(v) for k, v in statistic(s, y).items()}

    if groups is None:
        unit, n_groups = "utterance", int(s.size)
        bona_idx, spoof_idx = np.flatnonzero(y), np.flatnonzero(~y)

        def draw() -> np.ndarray:
            return np.concatenate((
                bona_idx[rng.integers(0, bona_idx.size, bona_idx.size)],
                spoof_idx[rng.integers(0, spoof_idx.size, spoof_idx.size)],
            ))
    else:
        g = np.asarray(groups)
        if g.shape != s.shape:
            raise MetricInputError("groups", f"length {g.size} differs from scores length {s.size}")
        _, codes = np.unique(g.astype(str), return_inverse=True)
        unit, n_groups = "speaker", int(codes.max()) + 1
        draw = _group_sampler(codes, rng)

    values = {k: np.empty(n_resamples) for k in estimates}
    for r in range(n_resamples):
        for _ in range(MAX_REDRAWS):
            idx = draw()
            yb = y[idx]
            if yb.any() and not yb.all():
                break
        else:
            raise MetricInputError("groups", f"{MAX_REDRAWS} group resamples in a row lacked a class")
        for k, v in statistic(s[idx], yb).items():
            values[k][r] = v

    tail = 100.0 * (1.0 - level) / 2.0
    intervals = {}
    for k, est in estimates.items():
        low, high = np.percentile(values[k], [tail, 100.0 - tail])
        intervals[k] = ConfidenceInterval(estimate=est, low=float(low), high=float(high))
    log.debug("bootstrap: %d replicates over %d %ss", n_resamples, n_groups, unit)
    return BootstrapResult(intervals=intervals, level=level, n_resamples=int(n_resamples), unit=unit,
                           n_groups=n_groups)
