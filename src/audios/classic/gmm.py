"""The classic two-GMM baseline: one Gaussian mixture for bona fide frames, one for spoof frames.

As in the ASVspoof 2019/2021 LFCC-GMM and CQCC-GMM baselines, a recording's score is the log-likelihood ratio
averaged over its frames::

    score(X) = mean_t log p(x_t | GMM_bonafide) - mean_t log p(x_t | GMM_spoof)

(higher = more bona fide). Mixtures have diagonal covariances and are trained with EM (scikit-learn's
``GaussianMixture``, k-means initialisation) on the pooled frames of each class.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture

from audios.errors import ConfigError

log = logging.getLogger(__name__)


class TwoGmmClassifier:
    """Bona fide vs spoof by two diagonal GMMs over frames; follows scikit-learn's fit/score contract.

    ``max_frames_per_class`` caps the frames used for EM per class (a seeded uniform subsample), which bounds
    memory and time on large corpora: 200 000 frames are 33 min of audio at a 10 ms hop.
    """

    def __init__(self, n_components: int = 64, covariance_type: str = "diag", max_iter: int = 100,
                 reg_covar: float = 1e-3, max_frames_per_class: int = 200_000, random_state: int = 0) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.max_frames_per_class = max_frames_per_class
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"n_components": self.n_components, "covariance_type": self.covariance_type,
                "max_iter": self.max_iter, "reg_covar": self.reg_covar,
                "max_frames_per_class": self.max_frames_per_class, "random_state": self.random_state}

    def _check(self) -> None:
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ConfigError(f"gmm.n_components={self.n_components!r} must be a positive integer")
        if self.covariance_type not in ("diag", "full", "spherical", "tied"):
            raise ConfigError(f"gmm.covariance_type={self.covariance_type!r} is not diag, full, spherical or tied")
        if self.max_frames_per_class < 1:
            raise ConfigError(f"gmm.max_frames_per_class={self.max_frames_per_class} must be at least 1")

    def _pool(self, matrices: Sequence[np.ndarray], rng: np.random.Generator, what: str) -> np.ndarray:
        frames = np.concatenate([np.asarray(m, dtype=np.float64) for m in matrices], axis=0)
        if frames.shape[0] > self.max_frames_per_class:
            keep = np.sort(rng.choice(frames.shape[0], self.max_frames_per_class, replace=False))
            frames = frames[keep]
        if frames.shape[0] < self.n_components:
            raise ConfigError(f"gmm: {frames.shape[0]} {what} frames cannot fit n_components={self.n_components}")
        return frames

    def fit(self, matrices: Sequence[np.ndarray], labels: Any) -> TwoGmmClassifier:
        """Fit on (frames, dims) matrices with labels 1 (bona fide) / 0 (spoof); returns self."""
        self._check()
        y = np.asarray(labels).astype(int)
        if len(matrices) != y.size:
            raise ConfigError(f"gmm.fit: {len(matrices)} recordings but {y.size} labels")
        if not (y == 1).any() or not (y == 0).any():
            raise ConfigError("gmm.fit: need recordings of both classes")
        dims = {np.asarray(m).shape[1] for m in matrices}
        if len(dims) != 1:
            raise ConfigError(f"gmm.fit: recordings have different frame dimensions {sorted(dims)}")
        rng = np.random.default_rng(self.random_state)
        models = []
        for cls, what in ((1, "bona fide"), (0, "spoof")):
            frames = self._pool([m for m, c in zip(matrices, y) if c == cls], rng, what)
            gmm = GaussianMixture(n_components=self.n_components, covariance_type=self.covariance_type,
                                  max_iter=self.max_iter, reg_covar=self.reg_covar, random_state=self.random_state)
            gmm.fit(frames)
            if not gmm.converged_:
                log.warning("gmm (%s): EM did not converge in %d iterations", what, self.max_iter)
            models.append(gmm)
        self.bonafide_, self.spoof_ = models
        self.n_features_in_ = dims.pop()
        self.classes_ = np.array([0, 1])
        return self

    def score_recordings(self, matrices: Sequence[np.ndarray]) -> np.ndarray:
        """Mean frame log-likelihood ratio per recording, shape (n,); higher = more bona fide."""
        if not hasattr(self, "bonafide_"):
            raise NotFittedError("TwoGmmClassifier: call fit before score_recordings")
        out = np.empty(len(matrices))
        for i, m in enumerate(matrices):
            m = np.asarray(m, dtype=np.float64)
            if m.ndim != 2 or m.shape[1] != self.n_features_in_ or m.shape[0] == 0:
                raise ConfigError(f"gmm: recording {i} has shape {m.shape}, expected (frames > 0, "
                                  f"{self.n_features_in_})")
            out[i] = float(np.mean(self.bonafide_.score_samples(m) - self.spoof_.score_samples(m)))
        return out
