"""Score raw audio files with a saved classic back-end: decode, extract, classify, calibrate.

``model.joblib`` (written by :func:`audios.classic.train.train_classic`) is a dict holding the fitted estimator,
the logistic calibrator fitted on validation scores, the EER threshold on the raw-score scale, and the feature
table's description (extractor name, code version, config, and the decoding settings). A file is scored
exactly as its training rows were featurised: ``load_audio`` with the stored ``AudioConfig``, then the stored
extractor.

Scores returned are calibrated log-likelihood ratios (higher = more bona fide), and
``p_fake = 1 - sigmoid(llr)``, the posterior of spoof at a prior of 0.5 (the calibrator's training prior).

Only load model files you trust: joblib files are pickles and can run code when loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from scipy.special import expit

from audios.audio import AudioConfig, load_audio
from audios.classic.backends import raw_scores
from audios.config import build_config
from audios.errors import AudioError, AudiosError, ConfigError
from audios.features.base import extractor_from_description

log = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"


class ModelFileError(AudiosError, ValueError):
    """A saved model cannot be loaded; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class ClassicDetector:
    """A loaded back-end that scores audio end to end. Build it with :meth:`load`."""

    path: Path
    model: str
    estimator: Any
    calibrator: Any
    threshold: float
    extractor: Any
    audio_config: AudioConfig
    feature_columns: tuple[str, ...]

    @classmethod
    def load(cls, path: str | Path) -> ClassicDetector:
        """Load ``model.joblib`` from a run folder (or the file itself) and rebuild its extractor."""
        path = Path(path)
        file = path / MODEL_FILE if path.is_dir() else path
        if not file.is_file():
            raise ModelFileError(file, "model file not found (train one with `audios train-classic`)")
        try:
            bundle = joblib.load(file)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is unusable
            raise ModelFileError(file, f"cannot load ({type(exc).__name__}: {exc})") from exc
        if not isinstance(bundle, dict) or bundle.get("format") != "audios-classic":
            raise ModelFileError(file, "not an audios classic model (format tag missing)")
        try:
            description = bundle["extractor"]
            extractor = extractor_from_description(description["extractor"])
            audio_config = build_config(AudioConfig, description.get("audio") or {})
            return cls(path=file, model=str(bundle["model"]), estimator=bundle["estimator"],
                       calibrator=bundle["calibrator"], threshold=float(bundle["threshold"]), extractor=extractor,
                       audio_config=audio_config, feature_columns=tuple(bundle["feature_columns"]))
        except KeyError as exc:
            raise ModelFileError(file, f"model bundle lacks {exc}") from exc
        except ConfigError as exc:
            raise ModelFileError(file, f"cannot rebuild its feature extractor ({exc})") from exc

    @property
    def threshold_llr(self) -> float:
        """The validation EER threshold on the calibrated (LLR) scale; clips below it are called spoof."""
        return float(self.calibrator.transform([self.threshold])[0])

    def raw_scores(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        """Uncalibrated back-end scores of mono float signals at the extractor's sample rate, shape (n,)."""
        features = self.extractor.extract(list(signals))
        if hasattr(self.estimator, "score_recordings"):
            return self.estimator.score_recordings(features)
        X = np.stack([np.asarray(f, dtype=np.float64) for f in features])
        if X.shape[1] != len(self.feature_columns):
            raise ConfigError(f"{self.path}: extractor gives {X.shape[1]} features, model expects "
                              f"{len(self.feature_columns)}")
        return raw_scores(self.estimator, X)

    def score_signals(self, signals: Sequence[np.ndarray]) -> list[tuple[float, float]]:
        """(calibrated LLR, p_fake) per signal."""
        llr = self.calibrator.transform(self.raw_scores(signals))
        return [(float(s), float(1.0 - expit(s))) for s in llr]

    def score_files(self, paths: Sequence[str | Path]) -> list[tuple[float, float]]:
        """(calibrated LLR, p_fake) per file, in order; the first unusable file raises its AudioError."""
        return self.score_signals([load_audio(p, self.audio_config) for p in paths])

    def score_batch(self, paths: Sequence[str | Path]) -> tuple[list[tuple[str, float, float]], list[tuple[str, str]]]:
        """Score many files, skipping bad ones: ``([(path, llr, p_fake)], [(path, reason)])``."""
        scored: list[tuple[str, float, float]] = []
        skipped: list[tuple[str, str]] = []
        for p in paths:
            try:
                (llr, p_fake), = self.score_files([p])
            except AudioError as exc:
                skipped.append((str(p), exc.reason))
                continue
            scored.append((str(p), llr, p_fake))
        if skipped:
            log.warning("skipped %d of %d files", len(skipped), len(paths))
        return scored, skipped
