"""Known-answer tests of the pure metric functions (scores: higher = bona fide; label 1/True = bona fide)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from audios.errors import ConfigError
from audios.evaluate.metrics import (
    DcfCosts,
    MetricInputError,
    act_dcf,
    average_precision,
    cllr,
    decision_metrics,
    det_curve,
    equal_error_rate,
    expected_calibration_error,
    min_cllr,
    min_dcf,
    pav_llr,
    per_group_metrics,
    reliability_diagram,
    roc_auc,
    summarize_metrics,
    threshold_at_far,
)

# A hand-worked case with ties: bona fide {1, 2, 2}, spoof {0, 2}.
TIE_SCORES = np.array([1.0, 2.0, 2.0, 0.0, 2.0])
TIE_LABELS = np.array([1, 1, 1, 0, 0])


def gaussian_scores(rng: np.random.Generator, n: int, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    y = rng.random(n) < 0.4
    return rng.normal(size=n) + shift * y, y


def independent_eer(scores: np.ndarray, bona: np.ndarray) -> float:
    """EER from sklearn's full ROC, crossing of FNR and FPR by linear interpolation between adjacent points."""
    fpr, tpr, _ = roc_curve(bona, scores, drop_intermediate=False)
    fnr = 1 - tpr
    diff = fnr - fpr  # +1 at the first point, -1 at the last, non-increasing
    i = int(np.flatnonzero(diff > 0)[-1])
    a = diff[i] / (diff[i] - diff[i + 1])
    return float(fnr[i] + a * (fnr[i + 1] - fnr[i]))


# ----------------------------------------------------------------------------------------------- hand-computed


def test_det_curve_with_ties_by_hand():
    c = det_curve(TIE_SCORES, TIE_LABELS)
    np.testing.assert_allclose(c.thresholds[:3], [0.0, 1.0, 2.0])
    assert c.thresholds[3] > 2.0
    np.testing.assert_allclose(c.p_miss, [0, 0, 1 / 3, 1])
    np.testing.assert_allclose(c.p_fa, [1, 0.5, 0.5, 0])


def test_eer_with_ties_by_hand():
    # The crossing lies on the segment (p_fa, p_miss) = (1/2, 1/3) -> (0, 1) at alpha = 1/7: EER = 3/7.
    r = equal_error_rate(TIE_SCORES, TIE_LABELS)
    assert r.eer == pytest.approx(3 / 7, abs=1e-12)
    assert r.threshold == pytest.approx(2.0)


def test_min_dcf_act_dcf_by_hand():
    # Points (p_miss, p_fa): (0,1) (0,.5) (1/3,.5) (1,0); DCF = (0.95 p_miss + 0.5 p_fa) / 0.5.
    r = min_dcf(TIE_SCORES, TIE_LABELS)
    assert r.value == pytest.approx(0.5)
    assert r.threshold == 1.0
    # Every score is above -log(1.9), so everything is accepted: p_miss 0, p_fa 1 -> DCF 1.
    a = act_dcf(TIE_SCORES, TIE_LABELS)
    assert a.value == pytest.approx(1.0)
    assert a.threshold == pytest.approx(-math.log(1.9))


def test_auc_and_ap_by_hand():
    # 6 bona/spoof pairs: 1>0, 1<2, 2>0 twice, 2=2 twice (half each) -> 4/6.
    assert roc_auc(TIE_SCORES, TIE_LABELS) == pytest.approx(2 / 3)
    # Spoof positive, flagged when score <= t: t=0 (P=1, R=.5), t=1 (P=.5, R=.5), t=2 (P=.4, R=1) -> .5 + .2.
    assert average_precision(TIE_SCORES, TIE_LABELS) == pytest.approx(0.7)


def test_cllr_by_hand():
    expected = 0.5 * (
        (math.log2(1 + math.exp(-1)) + 2 * math.log2(1 + math.exp(-2))) / 3
        + (math.log2(1 + math.exp(0)) + math.log2(1 + math.exp(2))) / 2
    )
    assert cllr(TIE_SCORES, TIE_LABELS) == pytest.approx(expected, rel=1e-12)
    assert cllr([0.0, 0.0], [1, 0]) == pytest.approx(1.0)  # an all-zero LLR carries no information: 1 bit


def test_pav_and_min_cllr_by_hand():
    # Per distinct score: 0 -> 0/1 bona, 1 -> 1/1, 2 -> 2/3; PAV pools {1, 2} to 3/4. Prior odds 3/2 -> LLR log 2.
    llr = pav_llr(TIE_SCORES, TIE_LABELS)
    np.testing.assert_allclose(llr[[0, 1, 2, 4]], math.log(2.0))
    assert llr[3] == -np.inf
    assert min_cllr(TIE_SCORES, TIE_LABELS) == pytest.approx(0.5 * (math.log2(1.5) + 0.5 * math.log2(3.0)))


def test_decision_metrics_by_hand():
    d = decision_metrics(TIE_SCORES, TIE_LABELS, threshold=1.5)
    # flagged (score < 1.5): bona 1 (false positive), spoof 0 (true positive); spoof 2 missed.
    assert d.accuracy == pytest.approx(3 / 5)
    assert (d.precision, d.recall, d.f1) == pytest.approx((0.5, 0.5, 0.5))
    assert (d.p_miss, d.p_fa) == pytest.approx((1 / 3, 1 / 2))
    assert d.balanced_accuracy == pytest.approx(1 - 0.5 * (1 / 3 + 1 / 2))


def test_threshold_at_far_by_hand():
    assert threshold_at_far(TIE_SCORES, TIE_LABELS, 0.5) == 1.0
    top = threshold_at_far(TIE_SCORES, TIE_LABELS, 0.0)
    assert top > 2.0
    assert decision_metrics(TIE_SCORES, TIE_LABELS, top).p_fa == 0.0
    assert threshold_at_far(TIE_SCORES, TIE_LABELS, 1.0) == 0.0


def test_ece_by_hand():
    # Two bins; every sigmoid(score) >= 0.5 so all five clips land in the upper bin.
    p = 1 / (1 + np.exp(-TIE_SCORES))
    d = reliability_diagram(TIE_SCORES, TIE_LABELS, n_bins=2)
    np.testing.assert_array_equal(d.counts, [0, 5])
    assert d.ece == pytest.approx(abs(3 / 5 - p.mean()))
    assert math.isnan(d.mean_predicted[0])
    assert expected_calibration_error(TIE_SCORES, TIE_LABELS, n_bins=2) == pytest.approx(d.ece)


def test_string_labels_match_numeric():
    text = np.where(TIE_LABELS == 1, "bonafide", "spoof")
    assert summarize_metrics(TIE_SCORES, text) == summarize_metrics(TIE_SCORES, TIE_LABELS)


# --------------------------------------------------------------------------------------------- known answers


def test_perfect_separation():
    scores = np.array([3.0, 4.0, 5.0, -1.0, 0.0, 1.0])
    labels = np.array([1, 1, 1, 0, 0, 0])
    r = equal_error_rate(scores, labels)
    assert r.eer == 0.0
    assert 1.0 < r.threshold <= 3.0
    assert decision_metrics(scores, labels, r.threshold).accuracy == 1.0
    assert min_dcf(scores, labels).value == 0.0
    assert roc_auc(scores, labels) == 1.0
    assert average_precision(scores, labels) == 1.0
    assert min_cllr(scores, labels) == 0.0


def test_perfectly_inverted_scores():
    scores = np.array([-3.0, -2.0, 2.0, 3.0])
    labels = np.array([1, 1, 0, 0])
    assert equal_error_rate(scores, labels).eer == 1.0
    assert roc_auc(scores, labels) == 0.0
    assert min_dcf(scores, labels).value == 1.0  # no threshold beats the best trivial system


def test_identical_distributions_give_chance():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=20000)
    labels = rng.random(20000) < 0.5
    assert equal_error_rate(scores, labels).eer == pytest.approx(0.5, abs=0.02)
    assert roc_auc(scores, labels) == pytest.approx(0.5, abs=0.02)
    # All scores equal: a single tie group, the DET curve is the diagonal, EER exactly 0.5, AUC exactly 0.5.
    same = np.zeros(10)
    lab = np.array([1, 0] * 5)
    assert equal_error_rate(same, lab).eer == pytest.approx(0.5)
    assert roc_auc(same, lab) == 0.5


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 1])
def test_eer_matches_independent_roc_computation(seed, decimals):
    rng = np.random.default_rng(seed)
    scores, labels = gaussian_scores(rng, 3000)
    if decimals is not None:
        scores = np.round(scores, decimals)  # many ties
    assert equal_error_rate(scores, labels).eer == pytest.approx(independent_eer(scores, labels), abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_auc_and_ap_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    scores, labels = gaussian_scores(rng, 2000)
    scores = np.round(scores, 1)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(~labels, -scores), abs=1e-12)


def test_eer_threshold_splits_at_the_eer():
    rng = np.random.default_rng(3)
    scores, labels = gaussian_scores(rng, 5000, shift=2.0)
    r = equal_error_rate(scores, labels)
    d = decision_metrics(scores, labels, r.threshold)
    assert d.p_miss == pytest.approx(r.eer, abs=1 / 2000)
    assert d.p_fa == pytest.approx(r.eer, abs=1 / 2000)


@pytest.mark.parametrize("seed", range(5))
def test_min_dcf_never_above_act_dcf(seed):
    rng = np.random.default_rng(seed)
    scores, labels = gaussian_scores(rng, 1000, shift=rng.uniform(0, 3))
    for s in (scores, 5 * scores - 3, scores / 10):
        for costs in (DcfCosts(), DcfCosts(1, 1, 0.5), DcfCosts(2, 1, 0.3)):
            assert min_dcf(s, labels, costs).value <= act_dcf(s, labels, costs).value + 1e-12


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 5), st.booleans()), min_size=2, max_size=40))
def test_orderings_hold_on_arbitrary_small_sets(pairs):
    scores = np.array([p[0] for p in pairs], dtype=float) / 2
    labels = np.array([p[1] for p in pairs])
    if labels.all() or not labels.any():
        return
    assert 0.0 <= equal_error_rate(scores, labels).eer <= 1.0
    assert min_dcf(scores, labels).value <= act_dcf(scores, labels).value + 1e-12
    assert min_cllr(scores, labels) <= cllr(scores, labels) + 1e-12
    assert min_cllr(scores, labels) <= 1.0 + 1e-12  # PAV never does worse than a constant LLR of 0
    assert equal_error_rate(scores, labels).eer == pytest.approx(independent_eer(scores, labels), abs=1e-9)


def test_invariance_to_strictly_increasing_transforms():
    rng = np.random.default_rng(7)
    scores, labels = gaussian_scores(rng, 2000)
    scores = np.round(scores, 1)  # with ties, which a monotone map must keep tied
    base = summarize_metrics(scores, labels)
    for f in (lambda x: 3 * x + 2, np.exp, lambda x: x**3 + x, lambda x: np.arctan(x) * 7 - 1):
        t = summarize_metrics(f(scores), labels)
        assert t.eer == pytest.approx(base.eer, abs=1e-12)
        assert t.min_dcf == pytest.approx(base.min_dcf, abs=1e-12)
        assert t.roc_auc == pytest.approx(base.roc_auc, abs=1e-12)
        assert t.ap == pytest.approx(base.ap, abs=1e-12)
        assert t.min_cllr == pytest.approx(base.min_cllr, abs=1e-12)
    # Cllr is calibration-sensitive: a monotone rescaling changes it.
    assert cllr(10 * scores, labels) != pytest.approx(base.cllr, abs=1e-3)


def test_true_llrs_are_calibrated():
    # Bona fide ~ N(+1, 1), spoof ~ N(-1, 1): the exact LLR is 2x; it is well calibrated (low ECE, Cllr near minCllr).
    rng = np.random.default_rng(11)
    n = 20000
    y = rng.random(n) < 0.5
    llr = 2 * (rng.normal(size=n) + np.where(y, 1.0, -1.0))
    assert expected_calibration_error(llr, y) < 0.02
    assert cllr(llr, y) - min_cllr(llr, y) < 0.01
    assert act_dcf(llr, y).value - min_dcf(llr, y).value < 0.05


def test_per_group_metrics_modes():
    scores = np.array([2.0, 3.0, 0.0, 1.0, 2.5, -1.0])
    labels = np.array([1, 1, 0, 0, 0, 0])
    groups = np.array(["human", "human", "A01", "A01", "A02", "A02"])
    rows = {r.group: r for r in per_group_metrics(scores, labels, groups)}
    assert rows["pooled"].n_spoof == 4 and rows["pooled"].mode == "within"
    assert rows["A01"].mode == "vs-all-bonafide" and rows["A01"].n_bonafide == 2 and rows["A01"].eer == 0.0
    # A02 = {2.5, -1} against bona {2, 3}: 2.5 beats one of the two bona fide clips.
    assert rows["A02"].roc_auc == pytest.approx(0.75)
    assert rows["human"].mode == "vs-all-spoof" and rows["human"].n_spoof == 4
    ordered = per_group_metrics(scores, labels, groups, order=["A02", "A01"])
    assert [r.group for r in ordered] == ["pooled", "A02", "A01", "human"]


# ------------------------------------------------------------------------------------------------ validation


def test_bad_inputs_name_the_field_and_value():
    with pytest.raises(MetricInputError, match=r"scores\[2\].*nan"):
        equal_error_rate([0.1, 0.2, float("nan")], [1, 0, 1])
    with pytest.raises(MetricInputError, match=r"scores\[0\].*inf"):
        cllr([float("inf"), 0.2], [1, 0])
    with pytest.raises(MetricInputError, match=r"labels\[1\].*'fake'"):
        roc_auc([0.1, 0.2], ["bonafide", "fake"])
    with pytest.raises(MetricInputError, match=r"labels\[0\].*2"):
        roc_auc([0.1, 0.2], [2, 0])
    with pytest.raises(MetricInputError, match="no spoof"):
        min_dcf([0.1, 0.2], [1, 1])
    with pytest.raises(MetricInputError, match="no bona fide"):
        min_dcf([0.1, 0.2], ["spoof", "spoof"])
    with pytest.raises(MetricInputError, match="length 3 differs"):
        act_dcf([0.1, 0.2], [1, 0, 1])
    with pytest.raises(MetricInputError, match="scores.*not numeric"):
        cllr(["a", "b"], [1, 0])
    with pytest.raises(MetricInputError, match="1-D"):
        roc_auc(np.zeros((2, 2)), [1, 0])
    with pytest.raises(MetricInputError, match="target_far"):
        threshold_at_far([0.0, 1.0], [0, 1], 1.5)
    with pytest.raises(MetricInputError, match="n_bins"):
        reliability_diagram([0.0, 1.0], [0, 1], n_bins=0)
    assert issubclass(MetricInputError, ValueError)


def test_costs_validate_themselves():
    assert DcfCosts().normaliser == pytest.approx(0.5)
    assert DcfCosts().bayes_threshold == pytest.approx(-math.log(1.9))
    assert DcfCosts(1, 1, 0.5).bayes_threshold == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="p_spoof"):
        DcfCosts(p_spoof=1.0)
    with pytest.raises(ConfigError, match="c_fa"):
        DcfCosts(c_fa=0)
