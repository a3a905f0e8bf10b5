"""Evaluate a score table end to end, and write the result as Markdown + PNG and one self-contained HTML file.

:func:`evaluate_scores` computes everything (metrics, bootstrap intervals, the decision threshold chosen on
validation, logistic calibration fitted on validation, breakdowns) into an :class:`EvaluationResult`;
:func:`write_report` only renders that result (tables from its numbers, plots from its scores) and never recomputes
a metric.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audios.evaluate.bootstrap import bootstrap_ci
from audios.evaluate.calibration import LogisticCalibrator
from audios.evaluate.metrics import (
    CI_METRICS,
    DcfCosts,
    DecisionMetrics,
    GroupMetrics,
    MetricInputError,
    MetricSummary,
    ReliabilityDiagram,
    act_dcf,
    as_binary_labels,
    cllr,
    decision_metrics,
    equal_error_rate,
    per_group_metrics,
    reliability_diagram,
    summarize_metrics,
    threshold_at_far,
)
from audios.evaluate import plots
from audios.runs import write_text_atomic

log = logging.getLogger(__name__)

#: ``--per`` names and the score-table column each reads.
BREAKDOWNS = {"generator": "generator", "source": "source", "duration": "duration_s"}
#: Duration bucket edges in seconds: <2, 2-4, 4-8, >=8 s (ASVspoof clips are mostly 2-8 s).
DURATION_EDGES_S = (2.0, 4.0, 8.0)
#: Speaker values that mean "not known"; such clips are resampled as their own single-clip groups.
UNKNOWN_SPEAKERS = {"", "-", "unknown", "nan", "none"}


@dataclass(frozen=True)
class CalibrationSummary:
    """Logistic calibration fitted on validation and applied to test: ``llr = slope * score + offset``."""

    slope: float
    offset: float
    cllr_before: float
    cllr_after: float
    act_dcf_before: float
    act_dcf_after: float
    ece_before: float
    ece_after: float
    min_cllr: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class EvaluationResult:
    """Everything the report shows. ``scores``/``labels`` (True = bona fide) are kept for the plots."""

    metrics: MetricSummary
    ci95: dict[str, list[float]]
    bootstrap: dict[str, Any]
    decision: DecisionMetrics
    threshold_source: str
    calibration: CalibrationSummary | None
    breakdowns: dict[str, tuple[GroupMetrics, ...]]
    costs: DcfCosts
    reliability: ReliabilityDiagram
    reliability_calibrated: ReliabilityDiagram | None
    scores: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    generators: np.ndarray | None = field(default=None, repr=False)
    calibrated_scores: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: headline metrics at the top level, then ``ci95``, the threshold, calibration, tables."""
        out: dict[str, Any] = dict(self.metrics.as_dict())
        out["ci95"] = self.ci95
        out["bootstrap"] = self.bootstrap
        out["threshold"] = {"source": self.threshold_source, **self.decision.as_dict()}
        out["calibration"] = self.calibration.as_dict() if self.calibration else None
        out["costs"] = asdict(self.costs)
        for name, rows in self.breakdowns.items():
            out[f"per_{name}"] = [r.as_dict() for r in rows]
        return out


def _labels(df: pd.DataFrame, what: str) -> np.ndarray:
    if "label" not in df.columns:
        raise MetricInputError(f"{what}.label", "the score table has no label column")
    return as_binary_labels(df["label"].to_numpy(), field=f"{what}.label")


def _speaker_groups(df: pd.DataFrame) -> np.ndarray | None:
    if "speaker" not in df.columns:
        return None
    speakers = df["speaker"].astype(str).str.strip()
    unknown = speakers.str.lower().isin(UNKNOWN_SPEAKERS)
    if int(speakers[~unknown].nunique()) < 2:
        return None
    return np.where(unknown, [f"\x00clip{i}" for i in range(len(df))], speakers)


def duration_bucket_names(edges: Sequence[float] = DURATION_EDGES_S) -> list[str]:
    """``<2 s``, ``2-4 s``, ..., ``>=8 s``: the bucket names in increasing duration."""
    return [f"<{edges[0]:g} s"] + [f"{a:g}-{b:g} s" for a, b in zip(edges[:-1], edges[1:])] + [f">={edges[-1]:g} s"]


def duration_bucket(duration_s: Any, edges: Sequence[float] = DURATION_EDGES_S) -> np.ndarray:
    """Bucket names (see :func:`duration_bucket_names`) for durations in seconds; ``unknown`` where missing."""
    d = pd.to_numeric(pd.Series(duration_s), errors="coerce").to_numpy(dtype=np.float64)
    names = duration_bucket_names(edges)
    idx = np.searchsorted(np.asarray(edges), d, side="right")
    return np.where(np.isfinite(d), np.asarray(names, dtype=object)[np.minimum(idx, len(names) - 1)], "unknown")


def _groups_for(df: pd.DataFrame, per: str) -> np.ndarray:
    if per not in BREAKDOWNS:
        raise MetricInputError("per", f"unknown breakdown {per!r} (known: {', '.join(BREAKDOWNS)})")
    column = BREAKDOWNS[per]
    if column not in df.columns:
        raise MetricInputError("per", f"--per {per} needs a {column!r} column in the score table (or its key)")
    if per == "duration":
        return duration_bucket(df[column])
    values = df[column].astype(str)
    if per == "source":
        values = values.str.split(":", n=1).str[0]  # upstream 'owner/repo:path' -> 'owner/repo'
    return values.to_numpy()


def evaluate_scores(
    test: pd.DataFrame,
    *,
    val: pd.DataFrame | None = None,
    per: Sequence[str] = (),
    n_bootstrap: int = 1000,
    rng: np.random.Generator | None = None,
    costs: DcfCosts = DcfCosts(),
    target_far: float | None = None,
    n_bins: int = 10,
) -> EvaluationResult:
    """Metrics, 95 % bootstrap intervals, decision threshold, calibration and breakdowns of a score table.

    ``test`` (and ``val``) have ``score`` and ``label`` columns, optionally ``generator``, ``source``,
    ``duration_s`` and ``speaker``. With ``val``, the decision threshold (EER point, or ``target_far``) and a
    logistic calibration are fitted there and applied to ``test``; without, the threshold comes from test itself
    and is marked optimistic. Bootstrap resamples speakers when a ``speaker`` column names at least two.
    """
    s = test["score"].to_numpy(dtype=np.float64) if "score" in test.columns else None
    if s is None:
        raise MetricInputError("test.score", "the score table has no score column")
    y = _labels(test, "test")
    summary = summarize_metrics(s, y, costs, n_bins)

    ci95: dict[str, list[float]] = {}
    boot: dict[str, Any] = {"n_resamples": 0, "unit": None}
    if n_bootstrap:
        if rng is None:
            raise MetricInputError("rng", "bootstrap needs a numpy.random.Generator (pass a seeded one)")
        groups = _speaker_groups(test)

        def statistic(bs: np.ndarray, by: np.ndarray) -> dict[str, float]:
            d = summarize_metrics(bs, by, costs, n_bins).as_dict()
            return {k: d[k] for k in CI_METRICS}

        result = bootstrap_ci(s, y, statistic, rng, n_resamples=n_bootstrap, groups=groups)
        ci95 = result.as_pairs()
        boot = {"n_resamples": result.n_resamples, "unit": result.unit, "n_units": result.n_groups,
                "level": result.level}

    calibration = None
    calibrated = None
    reliability_after = None
    if val is not None:
        vs = val["score"].to_numpy(dtype=np.float64)
        vy = _labels(val, "val")
        if target_far is None:
            threshold, source = equal_error_rate(vs, vy).threshold, "validation EER"
        else:
            threshold, source = threshold_at_far(vs, vy, target_far), f"validation FAR <= {target_far:g}"
        calibrator = LogisticCalibrator().fit(vs, vy)
        calibrated = calibrator.transform(s)
        reliability_after = reliability_diagram(calibrated, y, n_bins)
        calibration = CalibrationSummary(
            slope=calibrator.slope_, offset=calibrator.offset_,
            cllr_before=summary.cllr, cllr_after=cllr(calibrated, y),
            act_dcf_before=summary.act_dcf, act_dcf_after=act_dcf(calibrated, y, costs).value,
            ece_before=summary.ece, ece_after=reliability_after.ece, min_cllr=summary.min_cllr,
        )
    elif target_far is None:
        threshold, source = summary.eer_threshold, "test EER (optimistic: chosen on the test scores)"
    else:
        threshold, source = threshold_at_far(s, y, target_far), f"test FAR <= {target_far:g} (optimistic)"

    breakdowns = {}
    for name in dict.fromkeys(per):
        order = duration_bucket_names() if name == "duration" else None
        rows = per_group_metrics(s, y, _groups_for(test, name), costs, order=order)
        if name == "generator":  # the bona fide "generator" alone against every spoof just repeats the pooled row
            rows = tuple(r for r in rows if r.mode != "vs-all-spoof")
        breakdowns[name] = rows

    generators = test["generator"].astype(str).to_numpy() if "generator" in test.columns else None
    return EvaluationResult(
        metrics=summary, ci95=ci95, bootstrap=boot, decision=decision_metrics(s, y, threshold),
        threshold_source=source, calibration=calibration, breakdowns=breakdowns, costs=costs,
        reliability=reliability_diagram(s, y, n_bins), reliability_calibrated=reliability_after,
        scores=s, labels=y, generators=generators, calibrated_scores=calibrated,
    )


# ---------------------------------------------------------------------------------------------------------------
# Rendering

METRIC_NAMES = {
    "eer": ("EER", "%"), "eer_threshold": ("EER threshold", ""), "min_dcf": ("minDCF", ""),
    "act_dcf": ("actDCF", ""), "cllr": ("Cllr (bits)", ""), "min_cllr": ("minCllr (bits)", ""),
    "roc_auc": ("ROC-AUC", ""), "ap": ("AP (spoof positive)", ""), "ece": ("ECE", ""),
}


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if unit == "%":
        return f"{100 * value:.2f} %"
    return f"{value:.4f}"


def summary_rows(result: EvaluationResult) -> list[list[str]]:
    """[metric, value, 95 % CI] rows of the headline table (also used by the CLI)."""
    d = result.metrics.as_dict()
    rows = []
    for key, (name, unit) in METRIC_NAMES.items():
        ci = result.ci95.get(key)
        ci_text = f"[{_fmt(ci[0], unit)}, {_fmt(ci[1], unit)}]" if ci else "–"
        rows.append([name, _fmt(d[key], unit), ci_text])
    rows.append(["bona fide / spoof clips", f"{result.metrics.n_bonafide} / {result.metrics.n_spoof}", ""])
    return rows


def decision_rows(result: EvaluationResult) -> list[list[str]]:
    d = result.decision
    return [["threshold", f"{d.threshold:.4f} ({result.threshold_source})"],
            ["accuracy", _fmt(d.accuracy, "%")], ["balanced accuracy", _fmt(d.balanced_accuracy, "%")],
            ["precision (spoof)", _fmt(d.precision, "%")], ["recall (spoof)", _fmt(d.recall, "%")],
            ["F1 (spoof)", _fmt(d.f1, "%")], ["bona fide rejected (miss)", _fmt(d.p_miss, "%")],
            ["spoof accepted (false accept)", _fmt(d.p_fa, "%")]]


def calibration_rows(c: CalibrationSummary) -> list[list[str]]:
    return [["Cllr (bits)", _fmt(c.cllr_before), _fmt(c.cllr_after)],
            ["actDCF", _fmt(c.act_dcf_before), _fmt(c.act_dcf_after)],
            ["ECE", _fmt(c.ece_before), _fmt(c.ece_after)],
            ["minCllr (bits, floor)", _fmt(c.min_cllr), _fmt(c.min_cllr)]]


BREAKDOWN_HEADER = ["group", "scored against", "bona fide", "spoof", "EER", "minDCF", "ROC-AUC"]


def breakdown_rows(rows: Sequence[GroupMetrics]) -> list[list[str]]:
    return [[r.group, r.mode, str(r.n_bonafide), str(r.n_spoof), _fmt(r.eer, "%"), _fmt(r.min_dcf),
             _fmt(r.roc_auc)] for r in rows]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(x: str) -> str:
        return str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_plots(result: EvaluationResult, out_dir: str | Path) -> dict[str, Path]:
    """The report's PNGs, by name: roc, det, scores, attacks (with generators), calibration."""
    out = Path(out_dir)
    s, y = result.scores, result.labels
    paths = {
        "roc": plots.plot_roc(s, y, out / "roc.png", eer=result.metrics.eer),
        "det": plots.plot_det(s, y, out / "det.png", eer=result.metrics.eer),
        "scores": plots.plot_score_histograms(s, y, out / "scores.png", threshold=result.decision.threshold),
    }
    if result.generators is not None and len(set(result.generators[~y].tolist())) > 0:
        paths["attacks"] = plots.plot_attack_histograms(s, y, result.generators, out / "attacks.png")
    diagrams = {"raw scores": result.reliability}
    if result.reliability_calibrated is not None:
        diagrams["calibrated"] = result.reliability_calibrated
    paths["calibration"] = plots.plot_reliability(diagrams, out / "calibration.png")
    return paths


FIGURE_TITLES = {"roc": "ROC", "det": "DET (normal-deviate axes)", "scores": "Score histograms per class",
                 "attacks": "Score histograms per attack", "calibration": "Calibration (reliability diagram)"}

CSS = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
       "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code{background:#f6f6f6}")


def write_report(result: EvaluationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json``, the PNGs, ``report.md`` and a self-contained ``report.html`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": write_text_atomic(out / "metrics.json", json.dumps(result.to_dict(), indent=2) + "\n")}
    figures = write_plots(result, out)
    c = result.costs
    boot = result.bootstrap
    boot_note = (f"95 % intervals: percentile bootstrap, {boot['n_resamples']} resamples of {boot.get('n_units')} "
                 f"{boot['unit']}s." if boot.get("n_resamples") else "No bootstrap intervals (0 resamples).")
    sections: list[tuple[str, str, list[str], list[list[str]]]] = [
        ("Metrics", boot_note, ["metric", "value", "95 % CI"], summary_rows(result)),
        ("Decisions at a fixed threshold", "Spoof is the positive class; a clip is flagged when score < threshold.",
         ["", "value"], decision_rows(result)),
    ]
    if result.calibration is not None:
        cal = result.calibration
        sections.append(("Calibration", f"Logistic calibration fitted on validation: "
                         f"llr = {cal.slope:.4g} * score + {cal.offset:.4g}.",
                         ["", "before", "after"], calibration_rows(cal)))
    for name, rows in result.breakdowns.items():
        sections.append((f"Per {name}", "Spoof-only groups (attacks) are scored against every bona fide clip.",
                         BREAKDOWN_HEADER, breakdown_rows(rows)))
    intro = (f"Scores: higher = more bona fide. DCF costs: Cmiss={c.c_miss:g}, Cfa={c.c_fa:g}, "
             f"pi_spoof={c.p_spoof:g}; actDCF thresholds scores as LLRs at {c.bayes_threshold:.4f}.")

    md = ["# Evaluation report", "", intro, ""]
    body = [f"<h1>Evaluation report</h1><p>{html.escape(intro)}</p>"]
    for title, note, header, rows in sections:
        md += [f"## {title}", "", note, "", _md_table(header, rows), ""]
        body.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(note)}</p>{_html_table(header, rows)}")
    md += ["## Plots", ""]
    body.append("<h2>Plots</h2>")
    for name, path in figures.items():
        title = FIGURE_TITLES.get(name, name)
        md += [f"### {title}", "", f"![{title}]({path.name})", ""]
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body.append(f"<h3>{html.escape(title)}</h3><img alt=\"{html.escape(title)}\" "
                    f"src=\"data:image/png;base64,{data}\">")
    paths["markdown"] = write_text_atomic(out / "report.md", "\n".join(md))
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Evaluation report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    paths["html"] = write_text_atomic(out / "report.html", page)
    paths.update(figures)
    log.info("wrote evaluation report to %s", out)
    return paths
