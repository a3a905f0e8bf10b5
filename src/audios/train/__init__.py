"""Training deep detectors: one engine (`train`, `resume`), clip datasets and on-the-fly augmentation.

See `audios.train.trainer` for the run folder's contents, determinism and multi-GPU use with ``torchrun``.
"""

from audios.train.augment import AugmentConfig, augment_waveform
from audios.train.data import ClipDataset, collate_clips, eval_windows, random_crop, split_rows
from audios.train.trainer import (
    TrainConfig,
    TrainedModel,
    TrainError,
    TrainResult,
    checkpoint_name,
    export_model,
    load_train_config,
    load_trained_model,
    logits_of,
    resume,
    score_dataset,
    scores_of,
    train,
)

__all__ = [
    "AugmentConfig", "ClipDataset", "TrainConfig", "TrainError", "TrainResult", "TrainedModel", "augment_waveform",
    "checkpoint_name", "collate_clips", "eval_windows", "export_model", "load_train_config", "load_trained_model",
    "logits_of", "random_crop", "resume", "score_dataset", "scores_of", "split_rows", "train",
]
