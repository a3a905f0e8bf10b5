"""Logistic (affine) score calibration: fit on validation scores, apply to test scores, get LLRs.

The calibrated score is ``llr = slope_ * score + offset_``. Fitting minimises the prior-weighted cross-entropy
(Brümmer's linear logistic-regression calibration, the objective behind Cllr)::

    prior * mean_bona log(1 + e^-(llr + logit(prior))) + (1 - prior) * mean_spoof log(1 + e^(llr + logit(prior)))

so that ``llr + logit(prior)`` is a posterior log-odds under ``prior`` and ``llr`` itself a log-likelihood ratio,
whatever the class balance of the validation set. With ``prior=0.5`` the objective is ``ln 2 * Cllr``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from audios.errors import AudiosError, ConfigError
from audios.evaluate.metrics import as_scores, check_scores_labels


class NotFittedError(AudiosError, ValueError):
    """A calibrator was used before ``fit``."""


@dataclass(frozen=True)
class CalibratorConfig:
    """``prior``: P(bona fide) the training objective weights the classes by; ``l2``: ridge on the slope.

    The tiny default ridge only matters for perfectly separated validation scores, where the unpenalised slope
    would grow without bound.
    """

    prior: float = 0.5
    l2: float = 1e-6

    def __post_init__(self) -> None:
        if not 0.0 < self.prior < 1.0:
            raise ConfigError(f"prior={self.prior} must lie strictly between 0 and 1")
        if not (self.l2 >= 0 and math.isfinite(self.l2)):
            raise ConfigError(f"l2={self.l2} must be a finite non-negative number")


class LogisticCalibrator:
    """Affine score-to-LLR map learned by weighted logistic regression (sklearn-style ``fit``/``transform``)."""

    def __init__(self, prior: float = 0.5, l2: float = 1e-6) -> None:
        self.prior = prior
        self.l2 = l2

    def get_params(self) -> dict[str, float]:
        return {"prior": self.prior, "l2": self.l2}

    def fit(self, scores: Any, labels: Any) -> LogisticCalibrator:
        """Learn ``slope_`` and ``offset_`` from validation scores and labels; returns self."""
        config = CalibratorConfig(prior=self.prior, l2=self.l2)
        s, y = check_scores_labels(scores, labels)
        # Standardise for conditioning, then map the parameters back.
        centre, scale = float(s.mean()), float(s.std()) or 1.0
        z = (s - centre) / scale
        zb, zs = z[y], z[~y]
        wb, ws = config.prior / zb.size, (1.0 - config.prior) / zs.size
        prior_log_odds = math.log(config.prior / (1.0 - config.prior))

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            a, b = theta
            lb = a * zb + b + prior_log_odds
            ls = a * zs + b + prior_log_odds
            loss = wb * np.sum(np.logaddexp(0.0, -lb)) + ws * np.sum(np.logaddexp(0.0, ls)) + config.l2 * a * a
            gb = -wb * expit(-lb)  # d loss / d lb
            gs = ws * expit(ls)
            grad = np.array([np.dot(gb, zb) + np.dot(gs, zs) + 2 * config.l2 * a, gb.sum() + gs.sum()])
            return float(loss), grad

        result = minimize(objective, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        a, b = result.x
        self.slope_ = float(a / scale)
        self.offset_ = float(b - a * centre / scale)
        self.converged_ = bool(result.success)
        return self

    def transform(self, scores: Any) -> np.ndarray:
        """Calibrated LLRs for ``scores`` (any length, labels not needed)."""
        if not hasattr(self, "slope_"):
            raise NotFittedError("LogisticCalibrator: call fit(scores, labels) before transform")
        return self.slope_ * as_scores(scores) + self.offset_

    def fit_transform(self, scores: Any, labels: Any) -> np.ndarray:
        return self.fit(scores, labels).transform(scores)
