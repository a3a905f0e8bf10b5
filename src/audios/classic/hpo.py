"""Hyperparameter search for the vector back-ends with Optuna: objective = validation EER (lower is better).

* Sampler: ``TPESampler(seed=seed + number of trials already in the study)``, so a resumed study does not
  replay the first run's random start-up points.
* Pruning: only the MLP trains iteratively here (``partial_fit``, one epoch at a time, validation EER reported
  every ``EPOCHS_PER_REPORT`` epochs to a ``MedianPruner``). Logistic regression, the SVM and the random forest
  are fitted in one call, so there is nothing to prune between steps (``NopPruner``).
* Storage: ``sqlite:///<out>/study.db``, opened with ``load_if_exists=True``: rerunning the same command adds
  ``n_trials`` more trials to the same study; inspect it with ``optuna-dashboard`` or ``optuna.load_study``.
* Data: the table's train/val split; without a val split, 20 % of train (shuffled, seed 10) is held out as val.
  Test rows are never looked at.

Writes ``best_params.json`` (parameters in ``train-classic --params`` form), ``trials.csv``,
``optimization_history.png`` and ``param_importances.png`` beside the study, plus ``config.yaml``/``run.json``.
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from matplotlib.figure import Figure
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from audios.classic.backends import PROBA_EPS, get_backend
from audios.classic.data import FALLBACK_SEED, FALLBACK_TEST_SIZE, labels_of, load_feature_data, vector_matrix
from audios.classic.train import backend_scores
from audios.config import config_to_dict
from audios.errors import ConfigError
from audios.evaluate import equal_error_rate
from audios.runs import write_run_info, write_text_atomic

log = logging.getLogger(__name__)

HPO_MODELS = ("logreg", "svm", "rf", "mlp")
MLP_MAX_EPOCHS = 100
EPOCHS_PER_REPORT = 10


@dataclass(frozen=True)
class HpoConfig:
    """``n_trials`` more trials of ``model`` on ``features``, stored in ``out/study.db``."""

    features: str
    model: str = "logreg"
    out: str = "runs/hpo"
    n_trials: int = 20
    seed: int = 0
    timeout_s: float | None = None
    study_name: str | None = None

    def __post_init__(self) -> None:
        if self.model not in HPO_MODELS:
            raise ConfigError(f"hpo model={self.model!r} must be one of {HPO_MODELS} (gmm is sized by hand)")
        if self.n_trials < 1:
            raise ConfigError(f"n_trials={self.n_trials} must be at least 1")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError(f"timeout_s={self.timeout_s} must be positive")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")


def suggest(trial: optuna.Trial, model: str) -> dict[str, Any]:
    """The search space of ``model``: parameters in the form ``backends.build_<model>`` takes."""
    if model == "logreg":
        return {"C": trial.suggest_float("C", 1e-4, 1e2, log=True)}
    if model == "svm":
        return {"C": trial.suggest_float("C", 1e-2, 1e3, log=True),
                "gamma": trial.suggest_float("gamma", 1e-4, 1.0, log=True)}
    if model == "rf":
        return {"n_estimators": trial.suggest_int("n_estimators", 50, 500, log=True),
                "max_depth": trial.suggest_int("max_depth", 2, 32, log=True),
                "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 10),
                "max_features": trial.suggest_categorical("max_features", ["sqrt", "log2"])}
    if model == "mlp":
        return {"n_layers": trial.suggest_int("n_layers", 1, 2),
                "n_units": trial.suggest_int("n_units", 16, 256, log=True),
                "alpha": trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
                "learning_rate_init": trial.suggest_float("learning_rate_init", 1e-4, 1e-2, log=True)}
    raise ConfigError(f"no search space for model {model!r}")


def _mlp_objective(trial: optuna.Trial, params: dict[str, Any], X: np.ndarray, y: np.ndarray, Xv: np.ndarray,
                   yv: np.ndarray, seed: int) -> float:
    """Train epoch by epoch, report validation EER, stop early when the pruner says so."""
    scaler = StandardScaler().fit(X)
    Xs, Xvs = scaler.transform(X), scaler.transform(Xv)
    clf = MLPClassifier(hidden_layer_sizes=(params["n_units"],) * params["n_layers"], alpha=params["alpha"],
                        learning_rate_init=params["learning_rate_init"], random_state=seed)
    eer = 1.0
    for epoch in range(1, MLP_MAX_EPOCHS + 1):
        clf.partial_fit(Xs, y, classes=np.array([0, 1]))
        if epoch % EPOCHS_PER_REPORT == 0 or epoch == MLP_MAX_EPOCHS:
            p = np.clip(clf.predict_proba(Xvs)[:, 1], PROBA_EPS, 1 - PROBA_EPS)
            eer = equal_error_rate(np.log(p) - np.log1p(-p), yv).eer
            trial.report(eer, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation EER {eer:.4f} at epoch {epoch}")
    return eer


@dataclass
class HpoResult:
    out: Path
    study: optuna.Study
    best_params: dict[str, Any]
    best_value: float
    files: dict[str, Path]

    def summary(self) -> str:
        states = [t.state for t in self.study.trials]
        done = sum(s == optuna.trial.TrialState.COMPLETE for s in states)
        pruned = sum(s == optuna.trial.TrialState.PRUNED for s in states)
        return (f"{len(states)} trials in {self.out / 'study.db'} ({done} complete, {pruned} pruned); best "
                f"validation EER {100 * self.best_value:.2f} % with {json.dumps(self.best_params)}")


def _plot_history(study: optuna.Study, path: Path) -> Path:
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    numbers = [t.number for t in trials]
    values = [t.value for t in trials]
    ax.plot(numbers, values, "o", label="trial", alpha=0.7)
    ax.step(numbers, np.minimum.accumulate(values), where="post", label="best so far", color="C3")
    ax.set(xlabel="trial", ylabel="validation EER", title=f"Optimisation history ({study.study_name})")
    ax.legend()
    fig.savefig(path, dpi=120)
    return path


def _plot_importances(study: optuna.Study, path: Path) -> Path | None:
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:
        log.warning("no parameter importances (%s)", exc)
        return None
    names = list(importances)[::-1]
    fig = Figure(figsize=(6, 1 + 0.5 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names])
    ax.set(xlabel="importance (Optuna's default evaluator; shares sum to 1)", title="Parameter importances")
    fig.savefig(path, dpi=120)
    return path


def hpo_command(config: HpoConfig) -> str:
    args = ["audios", "hpo", config.features, "--model", config.model, "--trials", str(config.n_trials),
            "--out", config.out, "--seed", str(config.seed)]
    if config.timeout_s is not None:
        args += ["--timeout", str(config.timeout_s)]
    if config.study_name:
        args += ["--study-name", config.study_name]
    return shlex.join(args)


def run_hpo(config: HpoConfig) -> HpoResult:
    """Run (or resume) the study and write the best parameters, the trial table and the plots."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = get_backend(config.model)
    data = load_feature_data(config.features)
    if data.kind != "vector":
        raise ConfigError(f"{data.path}: hpo needs vector features, the table holds {data.kind} features")
    train, val, val_source = data.train, data.val, "the table's val split"
    if val is None:
        train, val = train_test_split(train, test_size=FALLBACK_TEST_SIZE, random_state=FALLBACK_SEED, shuffle=True)
        val_source = (f"train_test_split(train, test_size={FALLBACK_TEST_SIZE}, random_state={FALLBACK_SEED}, "
                      "shuffle=True)")
    where = str(data.path)
    X, y = vector_matrix(train, data.columns, where), labels_of(train, where)
    Xv, yv = vector_matrix(val, data.columns, where), labels_of(val, where)

    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    name = config.study_name or config.model
    existing = 0
    if name in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        existing = len(optuna.load_study(study_name=name, storage=storage).trials)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=EPOCHS_PER_REPORT)
              if config.model == "mlp" else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=config.seed + existing), pruner=pruner)
    study.set_user_attr("features", str(data.path.resolve()))
    study.set_user_attr("model", config.model)
    study.set_user_attr("objective", "validation EER")

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, config.model)
        if config.model == "mlp":
            return _mlp_objective(trial, params, X, y, Xv, yv, config.seed)
        est = backend.build(params, config.seed).fit(X, y)
        return equal_error_rate(backend_scores(est, Xv), yv).eer

    log.info("study %s: %d trials stored, running %d more", name, existing, config.n_trials)
    study.optimize(objective, n_trials=config.n_trials, timeout=config.timeout_s, gc_after_trial=False)
    try:
        best = study.best_trial
    except ValueError as exc:
        raise ConfigError(f"study {name}: no trial completed ({exc})") from exc

    params = dict(best.params)
    if config.model == "mlp":
        params["max_iter"] = MLP_MAX_EPOCHS
    files: dict[str, Path] = {}
    payload = {
        "model": config.model, "params": params, "value": best.value, "objective": "validation EER",
        "trial": best.number, "n_trials": len(study.trials), "val_source": val_source,
        "features": str(data.path.resolve()), "study": storage, "study_name": name,
        "train_command": shlex.join(["audios", "train-classic", config.features, "--model", config.model,
                                     "--params", str(out / "best_params.json")]),
    }
    files["best_params"] = write_text_atomic(out / "best_params.json", json.dumps(payload, indent=2) + "\n")
    files["trials"] = write_text_atomic(out / "trials.csv", study.trials_dataframe().to_csv(index=False))
    files["history"] = _plot_history(study, out / "optimization_history.png")
    importances = _plot_importances(study, out / "param_importances.png")
    if importances is not None:
        files["importances"] = importances
    write_run_info(out, hpo_command(config), {"stage": "hpo", **config_to_dict(config)}, seed=config.seed)
    return HpoResult(out=out, study=study, best_params=params, best_value=float(best.value), files=files)
