"""Classic back-ends on feature tables: logistic regression, SVM, random forest, MLP and the two-GMM baseline.

``train_classic`` trains one into a run folder, ``run_hpo`` searches its hyperparameters with Optuna, and
``ClassicDetector`` loads a trained one to score raw audio files end to end.
"""

from audios.classic.backends import BACKENDS, REFERENCE_GRID, Backend, get_backend, raw_scores
from audios.classic.detector import ClassicDetector, ModelFileError
from audios.classic.gmm import TwoGmmClassifier
from audios.classic.train import TrainConfig, TrainResult, reproduce_command, train_classic

__all__ = [
    "BACKENDS", "REFERENCE_GRID", "Backend", "ClassicDetector", "ModelFileError", "TrainConfig", "TrainResult",
    "TwoGmmClassifier", "get_backend", "raw_scores", "reproduce_command", "train_classic",
]
