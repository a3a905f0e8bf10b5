"""The classic back-ends, by name: each builds a scikit-learn estimator and carries a small search grid.

Every vector back-end is ``StandardScaler`` followed by one classifier, as one ``Pipeline`` (the scaler's
statistics are learnt on the training rows only, inside each cross-validation fold too). Labels are 1 for
bona fide and 0 for spoof, so ``raw_scores`` (higher = more bona fide) is the log-odds of P(bona fide) or,
for the SVM, its signed distance to the margin. ``gmm`` works on frame features and lives in
:mod:`audios.classic.gmm`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from audios.errors import ConfigError

#: Probabilities are clipped to [EPS, 1 - EPS] before the log-odds, so a forest voting 100 % gives a finite score.
PROBA_EPS = 1e-6


@dataclass(frozen=True)
class Backend:
    """A named back-end: ``kind`` is the feature kind it needs (``vector`` or ``frames``), ``grid`` the
    hyperparameters searched by ``train-classic`` (keys are the classifier's parameter names)."""

    name: str
    kind: str
    summary: str
    build: Callable[[Mapping[str, Any], int], Any]
    grid: Mapping[str, tuple[Any, ...]]


def _pipeline(classifier: Any) -> Pipeline:
    return Pipeline([("scaler", StandardScaler()), ("clf", classifier)])


def build_logreg(params: Mapping[str, Any], seed: int) -> Pipeline:
    # The lbfgs solver is deterministic; random_state only matters for other solvers.
    return _pipeline(LogisticRegression(max_iter=params.get("max_iter", 1000), C=params.get("C", 1.0),
                                        random_state=seed))


def build_reference_logreg(params: Mapping[str, Any], seed: int) -> Pipeline:
    """The reference baseline's model: LogisticRegression with scikit-learn's defaults except ``C``."""
    return _pipeline(LogisticRegression(C=params.get("C", 1.0)))


def build_svm(params: Mapping[str, Any], seed: int) -> Pipeline:
    return _pipeline(SVC(kernel="rbf", C=params.get("C", 1.0), gamma=params.get("gamma", "scale"),
                         random_state=seed))


def build_rf(params: Mapping[str, Any], seed: int) -> Pipeline:
    return _pipeline(RandomForestClassifier(
        n_estimators=int(params.get("n_estimators", 300)), max_depth=params.get("max_depth"),
        min_samples_leaf=int(params.get("min_samples_leaf", 1)), max_features=params.get("max_features", "sqrt"),
        random_state=seed, n_jobs=1,
    ))


def mlp_layers(params: Mapping[str, Any]) -> tuple[int, ...]:
    """Hidden layer sizes from either ``hidden_layer_sizes`` or ``n_units`` x ``n_layers`` (the HPO form)."""
    if "hidden_layer_sizes" in params:
        return tuple(int(v) for v in params["hidden_layer_sizes"])
    return (int(params.get("n_units", 64)),) * int(params.get("n_layers", 1))


def build_mlp(params: Mapping[str, Any], seed: int) -> Pipeline:
    return _pipeline(MLPClassifier(
        hidden_layer_sizes=mlp_layers(params), alpha=float(params.get("alpha", 1e-4)),
        learning_rate_init=float(params.get("learning_rate_init", 1e-3)), max_iter=int(params.get("max_iter", 500)),
        random_state=seed,
    ))


def build_gmm(params: Mapping[str, Any], seed: int) -> Any:
    from audios.classic.gmm import TwoGmmClassifier  # frames back-end; imported late to keep this module light

    return TwoGmmClassifier(n_components=int(params.get("n_components", 64)), random_state=seed,
                            **{k: v for k, v in params.items() if k != "n_components"})


# The grids stay small on purpose: 5-fold CV of every point must run in seconds on a few thousand clips.
BACKENDS: dict[str, Backend] = {}
for _b in (
    Backend("logreg", "vector", "StandardScaler + logistic regression", build_logreg,
            {"C": (0.01, 0.1, 1.0, 10.0)}),
    Backend("svm", "vector", "StandardScaler + RBF support-vector machine", build_svm,
            {"C": (0.1, 1.0, 10.0), "gamma": ("scale", 0.01)}),
    Backend("rf", "vector", "StandardScaler + random forest (300 trees)", build_rf,
            {"max_depth": (None, 8), "min_samples_leaf": (1, 5)}),
    Backend("mlp", "vector", "StandardScaler + multi-layer perceptron (adam)", build_mlp,
            {"hidden_layer_sizes": ((64,), (64, 32)), "alpha": (1e-4, 1e-2)}),
    Backend("gmm", "frames", "two diagonal GMMs (bona fide, spoof) on frame features; score = mean log-LR",
            build_gmm, {}),
):
    if _b.name in BACKENDS:
        raise RuntimeError(f"back-end {_b.name!r} registered twice")
    BACKENDS[_b.name] = _b

#: The reference baseline's grid (C in {0.01, 0.1, 1.0}), kept apart so that it never drifts with BACKENDS.
REFERENCE_GRID: dict[str, tuple[float, ...]] = {"C": (0.01, 0.1, 1.0)}


def get_backend(name: str) -> Backend:
    """The back-end called ``name``; an unknown name raises ConfigError listing the known ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(BACKENDS))}") from None


def raw_scores(estimator: Any, X: np.ndarray) -> np.ndarray:
    """Uncalibrated scores, higher = more bona fide: decision function where there is one, else log-odds.

    Shape (n,) for X of shape (n, features). Requires classes ``[0, 1]`` (1 = bona fide).
    """
    classes = list(getattr(estimator, "classes_", []))
    if classes != [0, 1]:
        raise ConfigError(f"estimator classes are {classes}; expected [0, 1] (0 = spoof, 1 = bona fide)")
    if hasattr(estimator, "decision_function"):
        try:
            return np.asarray(estimator.decision_function(X), dtype=np.float64)
        except AttributeError:  # a Pipeline exposes the attribute even when its last step lacks it
            pass
    p = np.clip(estimator.predict_proba(X)[:, 1], PROBA_EPS, 1.0 - PROBA_EPS)
    return np.log(p) - np.log1p(-p)
