"""Evaluation: pure metrics, calibration, bootstrap intervals, score-file I/O, plots and reports."""

from audios.evaluate.bootstrap import BootstrapResult, ConfidenceInterval, bootstrap_ci
from audios.evaluate.calibration import LogisticCalibrator, NotFittedError
from audios.evaluate.metrics import (
    DcfCosts,
    DecisionMetrics,
    DetCurve,
    GroupMetrics,
    MetricInputError,
    MetricSummary,
    ReliabilityDiagram,
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
from audios.evaluate.report import EvaluationResult, evaluate_scores, write_report
from audios.evaluate.scores import FORMATS, ScoreFileError, read_key, read_scores, write_key, write_scores

__all__ = [
    "FORMATS", "BootstrapResult", "ConfidenceInterval", "DcfCosts", "DecisionMetrics", "DetCurve",
    "EvaluationResult", "GroupMetrics", "LogisticCalibrator", "MetricInputError", "MetricSummary",
    "NotFittedError", "ReliabilityDiagram", "ScoreFileError", "act_dcf", "average_precision", "bootstrap_ci",
    "cllr", "decision_metrics", "det_curve", "equal_error_rate", "evaluate_scores", "expected_calibration_error",
    "min_cllr", "min_dcf", "pav_llr", "per_group_metrics", "read_key", "read_scores", "reliability_diagram",
    "roc_auc", "summarize_metrics", "threshold_at_far", "write_key", "write_report", "write_scores",
]
