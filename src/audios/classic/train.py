"""Train a classic back-end on a feature table and write a complete run folder.

Steps: split the table (its ``split`` column, else the reference baseline's shuffled 80/20 split with seed 10),
choose hyperparameters (k-fold CV on train scored by ROC-AUC, or the lowest validation EER with
``select_on="val"``), refit on all of train, fit a logistic calibration and pick the EER threshold on validation
scores (out-of-fold train scores when there is no val split), score val and test, and evaluate with
:mod:`audios.evaluate` (bootstrap CIs, per-generator table, report).

The run folder holds ``config.yaml`` and ``run.json`` (exact command, versions, commit), ``model.joblib`` (see
:mod:`audios.classic.detector`), ``scores_val.csv``, ``scores_test.csv``, ``cv_results.csv``, ``train.json``,
``metrics.json``, ``report.md``/``report.html`` and the report's PNGs.

The reference baseline (``reference_baseline=True``) is exactly: ``Pipeline(StandardScaler, LogisticRegression())``
with scikit-learn defaults, ``GridSearchCV(param_grid={"C": [0.01, 0.1, 1.0]}, cv=5, scoring="roc_auc",
refit=True)`` (``cv=5`` is an unshuffled ``StratifiedKFold``), fitted on the training rows.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold

from audios.classic.backends import REFERENCE_GRID, Backend, build_reference_logreg, get_backend, raw_scores
from audios.classic.data import (
    FALLBACK_SEED, FALLBACK_TEST_SIZE, FeatureData, cv_splitter, frame_matrices, labels_of, load_feature_data,
    summarize_data, vector_matrix,
)
from audios.config import config_to_dict
from audios.errors import ConfigError
from audios.evaluate import EvaluationResult, LogisticCalibrator, equal_error_rate, evaluate_scores, write_report
from audios.evaluate.scores import write_scores
from audios.runs import write_run_info, write_text_atomic

log = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
#: Bumped when the layout of ``model.joblib`` changes.
BUNDLE_VERSION = 1
SELECTIONS = ("cv", "val")


@dataclass(frozen=True)
class TrainConfig:
    """What ``train-classic`` does.

    ``params``: fixed hyperparameters (e.g. ``best_params.json`` from ``audios hpo``); no search then.
    ``select_on``: ``cv`` (k-fold CV on train by ROC-AUC) or ``val`` (fit each grid point on train, keep the
    lowest validation EER). ``cv_group_by``: columns whose shared values keep rows in one CV fold.
    ``n_components``/``max_frames_per_class``: the GMM back-end's size and frame budget.
    """

    features: str
    model: str = "logreg"
    out: str = "runs/classic"
    seed: int = 0
    reference_baseline: bool = False
    select_on: str = "cv"
    cv_folds: int = 5
    cv_group_by: tuple[str, ...] = ("sha256", "utterance", "speaker")
    params: dict[str, Any] | None = None
    n_components: int = 64
    max_frames_per_class: int = 200_000
    n_bootstrap: int = 1000
    fallback_test_size: float = FALLBACK_TEST_SIZE
    fallback_seed: int = FALLBACK_SEED

    def __post_init__(self) -> None:
        get_backend(self.model)
        if self.reference_baseline and self.model != "logreg":
            raise ConfigError(f"reference_baseline is the logreg baseline; model={self.model!r}")
        if self.reference_baseline and self.params:
            raise ConfigError("reference_baseline searches C itself; do not pass params")
        if self.select_on not in SELECTIONS:
            raise ConfigError(f"select_on={self.select_on!r} must be one of {SELECTIONS}")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds={self.cv_folds} must be at least 2")
        if self.n_components < 1:
            raise ConfigError(f"n_components={self.n_components} must be at least 1")
        if self.n_bootstrap < 0:
            raise ConfigError(f"n_bootstrap={self.n_bootstrap} must be >= 0")
        if not 0 < self.fallback_test_size < 1:
            raise ConfigError(f"fallback_test_size={self.fallback_test_size} must lie in (0, 1)")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")


def reproduce_command(config: TrainConfig) -> str:
    """The ``audios train-classic`` command line that reproduces ``config`` (defaults left out)."""
    default = TrainConfig(features=config.features)
    args = ["audios", "train-classic", config.features, "--model", config.model, "--out", config.out,
            "--seed", str(config.seed)]
    if config.reference_baseline:
        args.append("--reference-baseline")
    if config.select_on != default.select_on:
        args += ["--select-on", config.select_on]
    if config.cv_folds != default.cv_folds:
        args += ["--cv-folds", str(config.cv_folds)]
    if config.cv_group_by != default.cv_group_by:
        args += ["--cv-group-by", ",".join(config.cv_group_by)]
    if config.params:
        args += ["--params", json.dumps(config.params, sort_keys=True)]
    if config.n_components != default.n_components:
        args += ["--n-components", str(config.n_components)]
    if config.max_frames_per_class != default.max_frames_per_class:
        args += ["--max-frames-per-class", str(config.max_frames_per_class)]
    if config.n_bootstrap != default.n_bootstrap:
        args += ["--bootstrap", str(config.n_bootstrap)]
    return shlex.join(args)


@dataclass
class TrainResult:
    """What a training run produced; the numbers are also in the run folder."""

    run_dir: Path
    model: str
    params: dict[str, Any]
    selection: str
    val_eer: float
    evaluation: EvaluationResult
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def test_eer(self) -> float:
        return self.evaluation.metrics.eer

    def summary(self) -> str:
        m = self.evaluation.metrics
        ci = self.evaluation.ci95.get("eer")
        ci_text = f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}] %" if ci else ""
        return (f"{self.model}: params {json.dumps(self.params, default=str)} ({self.selection}); "
                f"val EER {100 * self.val_eer:.2f} %, test EER {100 * m.eer:.2f} %{ci_text}, "
                f"minDCF {m.min_dcf:.4f}, AUC {m.roc_auc:.4f}; {self.seconds:.1f} s -> {self.run_dir}")


def _inputs(data: FeatureData, df: pd.DataFrame, backend: Backend, where: str) -> Any:
    if backend.kind != data.kind:
        raise ConfigError(f"{data.path}: model {backend.name!r} needs {backend.kind} features, the table holds "
                          f"{data.kind} features ({data.description['extractor']['name']})")
    if backend.kind == "frames":
        return frame_matrices(df, where)
    return vector_matrix(df, data.columns, where)


def _subset(X: Any, idx: np.ndarray) -> Any:
    return [X[i] for i in idx] if isinstance(X, list) else X[idx]


def backend_scores(estimator: Any, X: Any) -> np.ndarray:
    """Uncalibrated scores (higher = more bona fide) of a fitted vector pipeline or two-GMM model."""
    if hasattr(estimator, "score_recordings"):
        return estimator.score_recordings(X)
    return raw_scores(estimator, X)


def _with_prefix(params: dict[str, Any]) -> dict[str, Any]:
    return {f"clf__{k}": v for k, v in params.items()}


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}


def _search(config: TrainConfig, backend: Backend, X: Any, y: np.ndarray, train: pd.DataFrame,
            Xv: Any, yv: np.ndarray | None) -> tuple[Any, dict[str, Any], pd.DataFrame, str, Any, Any]:
    """(fitted estimator, chosen params, search table, selection text, CV splitter, CV groups)."""
    seed = config.seed
    if config.reference_baseline:
        splitter, groups = StratifiedKFold(n_splits=5), None
        search = GridSearchCV(build_reference_logreg({}, seed), {"clf__C": list(REFERENCE_GRID["C"])}, cv=5,
                              scoring="roc_auc", refit=True, n_jobs=1)
        search.fit(X, y)
        params = {"C": search.best_params_["clf__C"]}
        table = pd.DataFrame(search.cv_results_)[["param_clf__C", "mean_test_score", "std_test_score",
                                                   "rank_test_score"]].rename(columns={"param_clf__C": "C"})
        return (search.best_estimator_, params, table,
                "reference baseline: GridSearchCV(cv=5 unshuffled StratifiedKFold, scoring=roc_auc, refit=True)",
                splitter, groups)

    splitter, groups, cv_text = cv_splitter(train, y, config.cv_folds, config.cv_group_by, seed)
    if backend.kind == "frames":
        params = {"n_components": config.n_components, "max_frames_per_class": config.max_frames_per_class,
                  **(config.params or {})}
        est = backend.build(params, seed).fit(X, y)
        return est, params, pd.DataFrame([params]), "fixed (GMM size from config)", splitter, groups
    if config.params:
        est = backend.build(config.params, seed).fit(X, y)
        table = pd.DataFrame([_jsonable(dict(config.params))])
        return est, dict(config.params), table, "fixed params", splitter, groups

    grid = {k: list(v) for k, v in backend.grid.items()}
    if config.select_on == "val":
        if Xv is None:
            raise ConfigError(f"{config.features}: select_on='val' needs a val split")
        rows, best, best_eer = [], None, np.inf
        for params in ParameterGrid(grid):
            est = backend.build(params, seed).fit(X, y)
            eer = equal_error_rate(backend_scores(est, Xv), yv).eer
            rows.append({**_jsonable(params), "val_eer": eer})
            if eer < best_eer:  # ties keep the earlier (simpler, by grid order) point
                best, best_eer = (est, params), eer
        return best[0], dict(best[1]), pd.DataFrame(rows), "lowest validation EER", splitter, groups

    search = GridSearchCV(backend.build({}, seed), {f"clf__{k}": v for k, v in grid.items()}, cv=splitter,
                          scoring="roc_auc", refit=True, n_jobs=1)
    search.fit(X, y, groups=groups)
    params = {k.removeprefix("clf__"): v for k, v in search.best_params_.items()}
    keep = [c for c in search.cv_results_ if c.startswith("param_")] + ["mean_test_score", "std_test_score",
                                                                         "rank_test_score"]
    table = pd.DataFrame(search.cv_results_)[keep]
    table.columns = [c.removeprefix("param_clf__") for c in table.columns]
    return search.best_estimator_, params, table, f"{cv_text}, scoring=roc_auc", splitter, groups


def _out_of_fold(config: TrainConfig, backend: Backend, params: dict[str, Any], X: Any, y: np.ndarray,
                 splitter: Any, groups: Any) -> np.ndarray:
    """Scores of each training row by a model fitted without its fold (calibration data when there is no val)."""
    out = np.empty(y.size)
    for fit_idx, held_idx in splitter.split(np.zeros(y.size), y, groups):
        if config.reference_baseline:
            est = build_reference_logreg(params, config.seed)
        else:
            est = backend.build(params, config.seed)
        est.fit(_subset(X, fit_idx), y[fit_idx])
        out[held_idx] = backend_scores(est, _subset(X, held_idx))
    return out


def score_frame(df: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """Our score format: id, score, label, then generator and speaker when the table has them."""
    out = pd.DataFrame({"id": df["id"].astype(str).to_numpy(), "score": scores,
                        "label": df["label"].astype(str).str.lower().to_numpy()})
    for col in ("generator", "speaker"):
        if col in df.columns:
            out[col] = df[col].astype(str).to_numpy()
    return out


def train_classic(config: TrainConfig) -> TrainResult:
    """Train ``config.model`` on ``config.features`` and write the run folder ``config.out``."""
    started = time.perf_counter()
    backend = get_backend(config.model)
    run_dir = Path(config.out)
    data = load_feature_data(config.features, config.fallback_seed, config.fallback_test_size)
    where = str(data.path)
    X, y = _inputs(data, data.train, backend, where), labels_of(data.train, where)
    Xt, yt = _inputs(data, data.test, backend, where), labels_of(data.test, where)
    Xv = yv = None
    if data.val is not None:
        Xv, yv = _inputs(data, data.val, backend, where), labels_of(data.val, where)
    log.info("%s: %d train, %d val, %d test rows (%s)", config.model, y.size, 0 if yv is None else yv.size, yt.size,
             data.split_source)

    estimator, params, search_table, selection, splitter, groups = _search(config, backend, X, y, data.train, Xv, yv)
    log.info("%s: chose %s by %s", config.model, params, selection)

    if data.val is not None:
        calib_df, calib_scores, calib_source = data.val, backend_scores(estimator, Xv), "validation split"
    else:
        calib_df = data.train
        calib_scores = _out_of_fold(config, backend, params, X, y, splitter, groups)
        calib_source = "out-of-fold scores of the training split (no val split)"
    calib_y = labels_of(calib_df, where)
    calibrator = LogisticCalibrator().fit(calib_scores, calib_y)
    eer_val = equal_error_rate(calib_scores, calib_y)
    test_scores = backend_scores(estimator, Xt)

    run_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    val_frame = score_frame(calib_df, calib_scores)
    test_frame = score_frame(data.test, test_scores)
    files["scores_val"] = write_scores(val_frame, run_dir / "scores_val.csv")
    files["scores_test"] = write_scores(test_frame, run_dir / "scores_test.csv")
    buf = search_table.to_csv(index=False)
    files["cv_results"] = write_text_atomic(run_dir / "cv_results.csv", buf)

    per = ("generator",) if "generator" in data.test.columns else ()
    evaluation = evaluate_scores(test_frame, val=val_frame, per=per, n_bootstrap=config.n_bootstrap,
                                 rng=np.random.default_rng(config.seed))
    files.update(write_report(evaluation, run_dir))

    bundle = {
        "format": "audios-classic", "bundle_version": BUNDLE_VERSION, "model": config.model,
        "estimator": estimator, "params": params, "calibrator": calibrator,
        "threshold": eer_val.threshold, "threshold_source": f"EER point of the {calib_source}",
        "extractor": data.description, "feature_columns": data.columns, "kind": data.kind,
    }
    files["model"] = run_dir / MODEL_FILE
    tmp = run_dir / f".{MODEL_FILE}.part"
    joblib.dump(bundle, tmp)
    tmp.replace(files["model"])

    seconds = time.perf_counter() - started
    info = {
        "model": config.model, "backend": backend.summary, "params": _jsonable(params), "selection": selection,
        "reference_baseline": config.reference_baseline, "split_source": data.split_source,
        "calibration_source": calib_source, "calibration": {"slope": calibrator.slope_, "offset": calibrator.offset_},
        "threshold": eer_val.threshold, "val_eer": eer_val.eer, "test_eer": evaluation.metrics.eer,
        "rows": {"train": int(y.size), "val": None if yv is None else int(yv.size), "test": int(yt.size)},
        "extractor": data.description, "data": summarize_data(data), "seconds": seconds,
    }
    files["train"] = write_text_atomic(run_dir / "train.json", json.dumps(info, indent=2, default=str) + "\n")
    write_run_info(run_dir, reproduce_command(config), {"stage": "train-classic", **config_to_dict(config)},
                   seed=config.seed)
    log.info("wrote run folder %s", run_dir)
    return TrainResult(run_dir=run_dir, model=config.model, params=_jsonable(params), selection=selection,
                       val_eer=eer_val.eer, evaluation=evaluation, seconds=seconds, files=files)
