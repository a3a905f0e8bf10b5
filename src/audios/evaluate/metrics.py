"""Pure detection metrics for bona fide vs spoof scores.

Conventions (ASVspoof): a higher score means more likely bona fide, and a calibrated score is a natural-log
likelihood ratio ``log p(x | bona fide) / p(x | spoof)``. Labels are ``1``/``True``/``"bonafide"`` for bona fide and
``0``/``False``/``"spoof"`` for spoof. A clip is *accepted* (called bona fide) when ``score >= threshold``, so

* ``p_miss``: fraction of bona fide clips rejected (``score < threshold``), the ASVspoof 5 "miss";
* ``p_fa``: fraction of spoof clips accepted (``score >= threshold``), the ASVspoof 5 "false alarm".

Every function validates its inputs, returns a number or a frozen dataclass, and does no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression
from scipy.special import expit

from audios.errors import AudiosError, ConfigError

LN2 = math.log(2.0)


class MetricInputError(AudiosError, ValueError):
    """Scores or labels handed to a metric are unusable; the message names the field and the bad value."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


# ---------------------------------------------------------------------------------------------------------------
# Input validation


def as_binary_labels(labels: Any, field: str = "labels") -> np.ndarray:
    """Labels as a bool array, True for bona fide; accepts 0/1, bools or ``bonafide``/``spoof`` strings."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise MetricInputError(field, f"expected a 1-D array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.copy()
    if arr.dtype.kind in "iuf":
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise MetricInputError(f"{field}[{i}]", f"label {arr[i]!r} is not 0 (spoof) or 1 (bona fide)")
        return arr.astype(bool)
    text = np.char.lower(np.char.strip(arr.astype(str)))
    bona = text == "bonafide"
    bad = ~(bona | (text == "spoof"))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MetricInputError(f"{field}[{i}]", f"label {arr[i]!r} is not 'bonafide' or 'spoof'")
    return bona


def as_scores(scores: Any, field: str = "scores") -> np.ndarray:
    """Scores as a finite float64 1-D array."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(field, f"not numeric ({exc})") from None
    if arr.ndim != 1:
        raise MetricInputError(field, f"expected a 1-D array, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MetricInputError(f"{field}[{i}]", f"score {arr[i]!r} is not finite")
    return arr


def check_scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a score/label pair: same length, finite scores, known labels, at least one clip per class."""
    s = as_scores(scores)
    y = as_binary_labels(labels)
    if s.shape != y.shape:
        raise MetricInputError("labels", f"length {y.size} differs from scores length {s.size}")
    n_bona = int(y.sum())
    if n_bona == 0:
        raise MetricInputError("labels", "no bona fide clips (need at least one of each class)")
    if n_bona == y.size:
        raise MetricInputError("labels", "no spoof clips (need at least one of each class)")
    return s, y


# ---------------------------------------------------------------------------------------------------------------
# Operating points


@dataclass(frozen=True)
class DcfCosts:
    """Detection cost parameters; defaults are ASVspoof 5's (Cmiss=1, Cfa=10, pi_spoof=0.05).

    ``c_miss`` is the cost of rejecting a bona fide clip, ``c_fa`` of accepting a spoof, ``p_spoof`` the prior of a
    spoof. The normalised DCF divides by the cost of the better trivial system (accept all or reject all).
    """

    c_miss: float = 1.0
    c_fa: float = 10.0
    p_spoof: float = 0.05

    def __post_init__(self) -> None:
        if not (self.c_miss > 0 and math.isfinite(self.c_miss)):
            raise ConfigError(f"c_miss={self.c_miss} must be a positive finite cost")
        if not (self.c_fa > 0 and math.isfinite(self.c_fa)):
            raise ConfigError(f"c_fa={self.c_fa} must be a positive finite cost")
        if not 0.0 < self.p_spoof < 1.0:
            raise ConfigError(f"p_spoof={self.p_spoof} must lie strictly between 0 and 1")

    @property
    def w_miss(self) -> float:
        return self.c_miss * (1.0 - self.p_spoof)

    @property
    def w_fa(self) -> float:
        return self.c_fa * self.p_spoof

    @property
    def normaliser(self) -> float:
        """Cost of the best trivial system: min(Cmiss*(1-pi), Cfa*pi) (0.5 for ASVspoof 5)."""
        return min(self.w_miss, self.w_fa)

    @property
    def bayes_threshold(self) -> float:
        """Bayes-optimal threshold on an LLR: accept when LLR >= -log(beta), beta = Cmiss(1-pi)/(Cfa*pi).

        Accepting costs Cfa*P(spoof|x) and rejecting Cmiss*P(bona|x); accepting is cheaper when
        LLR + log((1-pi)/pi) > log(Cfa/Cmiss), i.e. LLR > log(Cfa*pi / (Cmiss*(1-pi))) = -log(beta).
        For the ASVspoof 5 costs beta = 0.95/0.5 = 1.9 and the threshold is -log(1.9) ~ -0.642.
        """
        return -math.log(self.w_miss / self.w_fa)


@dataclass(frozen=True)
class DetCurve:
    """Every distinct operating point, thresholds ascending.

    ``thresholds[k]`` accepts ``score >= thresholds[k]``; the thresholds are the distinct scores plus one value just
    above the largest score (reject everything), so the first point is (p_miss=0, p_fa=1) and the last (1, 0).
    """

    thresholds: np.ndarray
    p_miss: np.ndarray
    p_fa: np.ndarray


def det_curve(scores: Any, labels: Any) -> DetCurve:
    """Miss and false-alarm rates at every distinct threshold (ties move both rates in one step)."""
    s, y = check_scores_labels(scores, labels)
    return _det_curve(s, y)


def _det_curve(s: np.ndarray, y: np.ndarray) -> DetCurve:
    bona = np.sort(s[y])
    spoof = np.sort(s[~y])
    top = np.nextafter(s.max(), np.inf)
    thresholds = np.append(np.unique(s), top)
    p_miss = np.searchsorted(bona, thresholds, side="left") / bona.size
    p_fa = 1.0 - np.searchsorted(spoof, thresholds, side="left") / spoof.size
    return DetCurve(thresholds=thresholds, p_miss=p_miss, p_fa=p_fa)


@dataclass(frozen=True)
class EerResult:
    eer: float
    threshold: float


def equal_error_rate(scores: Any, labels: Any) -> EerResult:
    """Equal error rate and its threshold.

    The DET curve is the piecewise-linear curve through every operating point of :func:`det_curve` (consecutive
    points joined by straight segments; a tie group gives one diagonal segment). The EER is where that curve
    crosses p_miss = p_fa. The returned threshold is the score interpolated linearly at the crossing between the
    two thresholds of the segment, or, when the crossing is an operating point itself, the middle of the range of
    thresholds that reach it; ``score >= threshold`` accepts.
    """
    s, y = check_scores_labels(scores, labels)
    return _eer(_det_curve(s, y))


def _eer(curve: DetCurve) -> EerResult:
    d = curve.p_fa - curve.p_miss  # non-increasing: +1 at the first point, -1 at the last
    j = int(np.argmax(d <= 0))  # first point at or past the crossing; j >= 1
    k = j - 1
    alpha = d[k] / (d[k] - d[j])
    eer = curve.p_miss[k] + alpha * (curve.p_miss[j] - curve.p_miss[k])
    if d[j] == 0:
        # The crossing is an operating point reached by every threshold in (thresholds[k], thresholds[m]]:
        # take the middle, so that a perfectly separated validation set puts the threshold in the gap between
        # the classes rather than on the lowest bona fide score (which would reject similar bona fide clips).
        m = j
        while m + 1 < len(d) and d[m + 1] == 0:
            m += 1
        t = 0.5 * (curve.thresholds[k] + curve.thresholds[m])
    else:
        t = curve.thresholds[k] + alpha * (curve.thresholds[j] - curve.thresholds[k])
    return EerResult(eer=float(eer), threshold=float(t))


@dataclass(frozen=True)
class DcfResult:
    value: float
    threshold: float


def min_dcf(scores: Any, labels: Any, costs: DcfCosts = DcfCosts()) -> DcfResult:
    """Normalised minimum DCF over every threshold (ASVspoof 5 costs by default); threshold that attains it."""
    s, y = check_scores_labels(scores, labels)
    return _min_dcf(_det_curve(s, y), costs)


def _min_dcf(curve: DetCurve, costs: DcfCosts) -> DcfResult:
    dcf = (costs.w_miss * curve.p_miss + costs.w_fa * curve.p_fa) / costs.normaliser
    k = int(np.argmin(dcf))
    return DcfResult(value=float(dcf[k]), threshold=float(curve.thresholds[k]))


def act_dcf(scores: Any, labels: Any, costs: DcfCosts = DcfCosts()) -> DcfResult:
    """Normalised actual DCF: scores read as LLRs and thresholded at the Bayes threshold ``-log(beta)``."""
    s, y = check_scores_labels(scores, labels)
    return _act_dcf(s, y, costs)


def _act_dcf(s: np.ndarray, y: np.ndarray, costs: DcfCosts) -> DcfResult:
    t = costs.bayes_threshold
    p_miss = np.mean(s[y] < t)
    p_fa = np.mean(s[~y] >= t)
    return DcfResult(value=float((costs.w_miss * p_miss + costs.w_fa * p_fa) / costs.normaliser), threshold=t)


# ---------------------------------------------------------------------------------------------------------------
# Calibration-sensitive costs


def cllr(scores: Any, labels: Any) -> float:
    """Log-likelihood-ratio cost in bits: 0.5*(mean log2(1+e^-s) over bona fide + mean log2(1+e^s) over spoof).

    0 is perfect, 1 is an uninformative (all-zero) LLR; larger means misleading, badly calibrated scores.
    """
    s, y = check_scores_labels(scores, labels)
    return _cllr(s, y)


def _cllr(s: np.ndarray, y: np.ndarray) -> float:
    # logaddexp(0, x) = log(1 + e^x) without overflow; it is also exact for x = +-inf (PAV LLRs).
    c_bona = np.mean(np.logaddexp(0.0, -s[y]))
    c_spoof = np.mean(np.logaddexp(0.0, s[~y]))
    return float(0.5 * (c_bona + c_spoof) / LN2)


def pav_llr(scores: Any, labels: Any) -> np.ndarray:
    """Optimally calibrated LLRs by pool-adjacent-violators (isotonic regression of the label on the score).

    Tied scores are pooled first, so they always share one LLR. The isotonic fit gives the posterior
    P(bona | score) under the empirical prior N_bona/N; subtracting the prior log-odds log(N_bona/N_spoof) turns it
    into an LLR. Blocks holding only one class give +-inf, which Cllr handles exactly (their cost is 0).
    """
    s, y = check_scores_labels(scores, labels)
    return _pav_llr(s, y)


def _pav_llr(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    values, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    n_bona_per_value = np.bincount(inverse, weights=y.astype(np.float64), minlength=values.size)
    fraction = n_bona_per_value / counts
    posterior = isotonic_regression(fraction, weights=counts.astype(np.float64), increasing=True).x
    posterior = np.clip(posterior, 0.0, 1.0)
    n_bona = int(y.sum())
    prior_log_odds = math.log(n_bona / (y.size - n_bona))
    with np.errstate(divide="ignore"):
        log_odds = np.log(posterior) - np.log1p(-posterior)
    return (log_odds - prior_log_odds)[inverse]


def min_cllr(scores: Any, labels: Any) -> float:
    """Cllr after optimal monotone calibration (PAV), in bits: the discrimination-only part of Cllr."""
    s, y = check_scores_labels(scores, labels)
    return _cllr(_pav_llr(s, y), y)


# ---------------------------------------------------------------------------------------------------------------
# Ranking metrics


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve: P(bona fide score > spoof score), ties counted one half (Mann-Whitney)."""
    s, y = check_scores_labels(scores, labels)
    return _roc_auc(s, y)


def _roc_auc(s: np.ndarray, y: np.ndarray) -> float:
    bona = s[y]
    spoof = np.sort(s[~y])
    below = np.searchsorted(spoof, bona, side="left")
    not_above = np.searchsorted(spoof, bona, side="right")
    wins = below.sum() + 0.5 * (not_above - below).sum()
    return float(wins / (bona.size * spoof.size))


def average_precision(scores: Any, labels: Any) -> float:
    """Average precision of detecting spoofs (spoof is the positive class, ranked by ascending score).

    AP = sum_k (R_k - R_{k-1}) * P_k over distinct thresholds, flagging ``score <= t`` as spoof (sklearn's
    step-wise definition, no interpolation; a tie group is one step).
    """
    s, y = check_scores_labels(scores, labels)
    return _average_precision(s, y)


def _average_precision(s: np.ndarray, y: np.ndarray) -> float:
    values = np.unique(s)
    spoof = np.sort(s[~y])
    bona = np.sort(s[y])
    tp = np.searchsorted(spoof, values, side="right")
    fp = np.searchsorted(bona, values, side="right")
    precision = tp / (tp + fp)
    recall = tp / spoof.size
    gain = np.diff(recall, prepend=0.0)
    return float(np.sum(gain * precision))


# ---------------------------------------------------------------------------------------------------------------
# Hard decisions


@dataclass(frozen=True)
class DecisionMetrics:
    """Hard-decision metrics at one threshold; spoof is the positive (detected) class: ``score < threshold``."""

    threshold: float
    accuracy: float
    balanced_accuracy: float
    precision: float
    recall: float
    f1: float
    p_miss: float
    p_fa: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def decision_metrics(scores: Any, labels: Any, threshold: float) -> DecisionMetrics:
    """Accuracy, balanced accuracy, precision/recall/F1 for spoof detection, and the miss/false-alarm rates."""
    s, y = check_scores_labels(scores, labels)
    if not math.isfinite(threshold):
        raise MetricInputError("threshold", f"{threshold!r} is not finite")
    flagged = s < threshold
    spoof = ~y
    tp = int(np.sum(flagged & spoof))
    fp = int(np.sum(flagged & y))
    fn = int(np.sum(~flagged & spoof))
    p_fa = fn / int(spoof.sum())
    p_miss = fp / int(y.sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DecisionMetrics(
        threshold=float(threshold),
        accuracy=float(np.mean(flagged == spoof)),
        balanced_accuracy=float(1.0 - 0.5 * (p_miss + p_fa)),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        p_miss=float(p_miss),
        p_fa=float(p_fa),
    )


def threshold_at_far(scores: Any, labels: Any, target_far: float) -> float:
    """Lowest threshold whose false-accept rate (spoofs accepted) is at most ``target_far``.

    The lowest such threshold rejects the fewest bona fide clips. Pick it on validation, apply it on test.
    """
    if not 0.0 <= target_far <= 1.0:
        raise MetricInputError("target_far", f"{target_far!r} is not a rate in [0, 1]")
    s, y = check_scores_labels(scores, labels)
    curve = _det_curve(s, y)
    k = int(np.argmax(curve.p_fa <= target_far))  # p_fa is non-increasing and ends at 0
    return float(curve.thresholds[k])


# ---------------------------------------------------------------------------------------------------------------
# Calibration of posteriors


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Equal-width bins of P(bona fide) = sigmoid(score) (posterior under a 0.5 prior when scores are LLRs).

    ``mean_predicted`` and ``fraction_bonafide`` are NaN in empty bins. ``ece`` is the count-weighted mean of
    ``|fraction_bonafide - mean_predicted|`` over non-empty bins.
    """

    bin_edges: np.ndarray
    counts: np.ndarray
    mean_predicted: np.ndarray
    fraction_bonafide: np.ndarray
    ece: float


def reliability_diagram(scores: Any, labels: Any, n_bins: int = 10) -> ReliabilityDiagram:
    """Bin P(bona fide) = sigmoid(score) into ``n_bins`` equal-width bins and compare with the observed rate."""
    s, y = check_scores_labels(scores, labels)
    return _reliability(s, y, n_bins)


def _reliability(s: np.ndarray, y: np.ndarray, n_bins: int) -> ReliabilityDiagram:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise MetricInputError("n_bins", f"{n_bins!r} is not a positive integer")
    p = expit(s)
    idx = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)  # p == 1.0 goes to the last bin
    counts = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = sum_p / counts
        frac_y = sum_y / counts
    ece = float(np.sum(np.abs(sum_y - sum_p)) / s.size)
    return ReliabilityDiagram(
        bin_edges=np.linspace(0.0, 1.0, n_bins + 1),
        counts=counts,
        mean_predicted=mean_p,
        fraction_bonafide=frac_y,
        ece=ece,
    )


def expected_calibration_error(scores: Any, labels: Any, n_bins: int = 10) -> float:
    """ECE of P(bona fide) = sigmoid(score) with equal-width bins (0 = perfectly calibrated)."""
    return reliability_diagram(scores, labels, n_bins).ece


# ---------------------------------------------------------------------------------------------------------------
# All at once


@dataclass(frozen=True)
class MetricSummary:
    """The headline metrics of one score set (see the module docstring for conventions)."""

    eer: float
    eer_threshold: float
    min_dcf: float
    act_dcf: float
    cllr: float
    min_cllr: float
    roc_auc: float
    ap: float
    ece: float
    n_bonafide: int
    n_spoof: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


#: Metrics that bootstrap confidence intervals are reported for (the counts are fixed by the resampling).
CI_METRICS: tuple[str, ...] = (
    "eer", "eer_threshold", "min_dcf", "act_dcf", "cllr", "min_cllr", "roc_auc", "ap", "ece",
)


def summarize_metrics(scores: Any, labels: Any, costs: DcfCosts = DcfCosts(), n_bins: int = 10) -> MetricSummary:
    """Every headline metric, sharing one sort of the scores."""
    s, y = check_scores_labels(scores, labels)
    curve = _det_curve(s, y)
    eer = _eer(curve)
    return MetricSummary(
        eer=eer.eer,
        eer_threshold=eer.threshold,
        min_dcf=_min_dcf(curve, costs).value,
        act_dcf=_act_dcf(s, y, costs).value,
        cllr=_cllr(s, y),
        min_cllr=_cllr(_pav_llr(s, y), y),
        roc_auc=_roc_auc(s, y),
        ap=_average_precision(s, y),
        ece=_reliability(s, y, n_bins).ece,
        n_bonafide=int(y.sum()),
        n_spoof=int((~y).sum()),
    )


@dataclass(frozen=True)
class GroupMetrics:
    """Metrics of one group of a breakdown (one attack, source or duration bucket).

    ``mode`` says which clips were scored: ``within`` (the group holds both classes), ``vs-all-bonafide`` (a
    spoof-only group, e.g. one attack, against every bona fide clip, as in ASVspoof per-attack tables) or
    ``vs-all-spoof`` (a bona-fide-only group against every spoof clip).
    """

    group: str
    mode: str
    n_bonafide: int
    n_spoof: int
    eer: float
    eer_threshold: float
    min_dcf: float
    roc_auc: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def per_group_metrics(
    scores: Any, labels: Any, groups: Sequence[Any] | np.ndarray, costs: DcfCosts = DcfCosts(),
    order: Sequence[str] | None = None,
) -> tuple[GroupMetrics, ...]:
    """A pooled row (group ``pooled``) then one row per group value: in ``order`` where listed, then by name."""
    s, y = check_scores_labels(scores, labels)
    g = np.asarray(groups).astype(str)
    if g.shape != s.shape:
        raise MetricInputError("groups", f"length {g.size} differs from scores length {s.size}")

    def row(name: str, mode: str, mask: np.ndarray) -> GroupMetrics:
        curve = _det_curve(s[mask], y[mask])
        eer = _eer(curve)
        return GroupMetrics(
            group=name, mode=mode, n_bonafide=int(y[mask].sum()), n_spoof=int((~y[mask]).sum()),
            eer=eer.eer, eer_threshold=eer.threshold, min_dcf=_min_dcf(curve, costs).value,
            roc_auc=_roc_auc(s[mask], y[mask]),
        )

    rows = [row("pooled", "within", np.ones_like(y))]
    rank = {name: i for i, name in enumerate(order or ())}
    for name in sorted(set(g.tolist()), key=lambda v: (rank.get(v, len(rank)), v)):
        member = g == name
        has_bona, has_spoof = bool(np.any(member & y)), bool(np.any(member & ~y))
        if has_bona and has_spoof:
            rows.append(row(name, "within", member))
        elif has_spoof:
            rows.append(row(name, "vs-all-bonafide", member | y))
        else:
            rows.append(row(name, "vs-all-spoof", member | ~y))
    return tuple(rows)
