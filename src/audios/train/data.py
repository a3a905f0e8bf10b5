"""Training data: fixed-length clips from the rows of one split of a manifest.

Training examples are random crops (after on-the-fly augmentation); evaluation examples are the first
window, or up to ``max_windows`` consecutive windows whose scores the trainer averages. A recording
shorter than a window is tiled end to end, as AASIST's `prepare_waveform` does. Each example's
randomness comes from its own generator seeded by ``(seed, epoch, index)``, so an epoch gives the same
examples whatever the number of workers and whether or not training was resumed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from audios.audio import AudioConfig, load_audio
from audios.errors import AudioError, ManifestError
from audios.manifest import audio_paths
from audios.models.aasist import prepare_waveform
from audios.train.augment import AugmentConfig, augment_waveform

log = logging.getLogger(__name__)

SPOOF, BONAFIDE = 0, 1
# Training crops are cut this much longer before augmentation, so a speed-up or a faster tempo (factor
# up to 1.25) still leaves a full clip to crop from afterwards.
AUGMENT_MARGIN = 1.25


def split_rows(table: pd.DataFrame, split: str, path: str | Path = "manifest") -> pd.DataFrame:
    """The rows of ``table`` whose ``split`` column equals ``split`` (index reset)."""
    if "split" not in table.columns:
        raise ManifestError(f"{path}: no 'split' column; run `audios split` on the manifest first")
    return table[table["split"] == split].reset_index(drop=True)


def label_ids(table: pd.DataFrame) -> np.ndarray:
    """``label`` column as int64: 1 for bona fide, 0 for spoof."""
    return (table["label"].to_numpy() == "bonafide").astype(np.int64)


def random_crop(x: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of ``n_samples``; a shorter signal is tiled first (from a random phase)."""
    if x.size < n_samples:
        start = int(rng.integers(0, x.size))
        x = np.tile(x, n_samples // x.size + 2)  # long enough for any start within the first period
    else:
        start = int(rng.integers(0, x.size - n_samples + 1))
    return np.ascontiguousarray(x[start:start + n_samples], dtype=np.float32)


def eval_windows(x: np.ndarray, n_samples: int, max_windows: int = 1) -> np.ndarray:
    """(windows, n_samples): consecutive non-overlapping windows from the start, at most ``max_windows``.

    A recording shorter than one window gives one tiled window; a partial last window is dropped.
    """
    n_full = max(1, min(max_windows, x.size // n_samples))
    if x.size < n_samples:
        return prepare_waveform(x, n_samples)[None, :]
    return np.ascontiguousarray(x[: n_full * n_samples].reshape(n_full, n_samples), dtype=np.float32)


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of example ``index`` in ``epoch``: independent streams from one seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))


class ClipDataset(Dataset):
    """Examples of one split: ``{"index", "x" (windows, samples) float32, "label"}`` or ``{"index", "error"}``.

    ``train=True``: one random crop per example, augmented by ``augment``. ``train=False``: the first
    ``max_windows`` windows, never augmented. Unreadable files come back as error items (the collate
    function sets them aside) so one bad file does not stop an epoch.
    """

    def __init__(self, table: pd.DataFrame, clip_samples: int, sample_rate: int = 16000, train: bool = False,
                 augment: AugmentConfig | None = None, seed: int = 0, max_windows: int = 1,
                 cache_audio: bool = False) -> None:
        self.paths = audio_paths(table)
        self.labels = label_ids(table)
        self.ids = table["id"].astype(str).tolist()
        self.clip_samples = clip_samples
        self.audio_config = AudioConfig(sample_rate=sample_rate)
        self.train = train
        self.augment = augment if augment is not None and augment.any_enabled else None
        self.seed = seed
        self.max_windows = max_windows
        self.cache_audio = cache_audio
        self._cache: dict[int, np.ndarray] = {}
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose crops and augmentations `__getitem__` draws."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> np.ndarray:
        if index in self._cache:
            return self._cache[index]
        x = load_audio(self.paths[index], self.audio_config)
        if self.cache_audio:
            self._cache[index] = x
        return x

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            x = self._load(index)
        except AudioError as exc:
            log.info("skipping %s", exc)
            return {"index": index, "path": str(self.paths[index]), "error": exc.reason}
        if not self.train:
            windows = eval_windows(x, self.clip_samples, self.max_windows)
        else:
            rng = example_rng(self.seed, self.epoch, index)
            if self.augment is not None:
                x = augment_waveform(random_crop(x, int(self.clip_samples * AUGMENT_MARGIN), rng),
                                     self.audio_config.sample_rate, self.augment, rng)
            windows = random_crop(x, self.clip_samples, rng)[None, :]
        return {"index": index, "x": torch.from_numpy(windows), "label": int(self.labels[index])}


@dataclass
class Batch:
    """Windows of several recordings: ``x`` (windows, samples), ``labels`` and ``owner`` (windows,) giving each
    window's position in ``indices`` (dataset indices of the recordings); ``skipped`` holds (path, reason)."""

    x: torch.Tensor
    labels: torch.Tensor
    owner: torch.Tensor
    indices: torch.Tensor
    skipped: list[tuple[str, str]]


def collate_clips(items: list[dict[str, Any]]) -> Batch:
    """Stack the windows of the readable items; unreadable ones go to ``skipped``."""
    good = [it for it in items if "error" not in it]
    skipped = [(it["path"], it["error"]) for it in items if "error" in it]
    if not good:
        empty = torch.zeros(0, dtype=torch.long)
        return Batch(torch.zeros(0, 0), empty, empty, empty, skipped)
    x = torch.cat([it["x"] for it in good])
    counts = torch.tensor([it["x"].shape[0] for it in good])
    owner = torch.repeat_interleave(torch.arange(len(good)), counts)
    labels = torch.tensor([it["label"] for it in good], dtype=torch.long)[owner]
    indices = torch.tensor([it["index"] for it in good], dtype=torch.long)
    return Batch(x, labels, owner, indices, skipped)
