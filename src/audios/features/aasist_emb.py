"""``aasist``: the 160-d hidden embedding of an AASIST / AASIST-L checkpoint, as a feature vector.

The embedding is the readout the released models feed their output layer (see audios.models.aasist). A
recording is cut into consecutive 64600-sample windows (≈4.04 s at 16 kHz, the AASIST input; a shorter one
is tiled to that length, as the authors' evaluation does) and the window embeddings are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from audios.errors import ConfigError
from audios.features.base import check_batch, positive

AASIST_RATE = 16000
HIDDEN_DIMS = 160


@dataclass(frozen=True)
class AasistEmbeddingConfig:
    """Which checkpoint, and how many windows per recording at most."""

    checkpoint: str = ""
    sample_rate: int = AASIST_RATE
    max_windows: int = 4
    batch_windows: int = 8

    def __post_init__(self) -> None:
        positive("AasistEmbeddingConfig", max_windows=self.max_windows, batch_windows=self.batch_windows)
        if self.sample_rate != AASIST_RATE:
            raise ConfigError(f"AasistEmbeddingConfig.sample_rate={self.sample_rate}: AASIST works at 16 kHz")


@lru_cache(maxsize=2)
def _load(checkpoint: str):
    from audios.models.aasist import load_released_checkpoint

    return load_released_checkpoint(checkpoint)


class AasistEmbeddingExtractor:
    """Mean 160-d AASIST hidden embedding over a recording's first ``max_windows`` windows."""

    name: ClassVar[str] = "aasist"
    kind: ClassVar[str] = "vector"
    version: ClassVar[int] = 1
    decode_ahead: ClassVar[bool] = True  # decoding is cheap next to the model: overlap it (see extract.py)
    Config = AasistEmbeddingConfig

    def __init__(self, config: AasistEmbeddingConfig) -> None:
        self.config = config

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f"emb_{i}" for i in range(HIDDEN_DIMS))

    def extract(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        from audios.models.aasist import AASIST_N_SAMPLES, prepare_waveform

        if not self.config.checkpoint:
            raise ConfigError("the aasist extractor needs a checkpoint: --checkpoint PATH (a released AASIST or "
                              "AASIST-L .pth, e.g. ../shared/models/aasist/AASIST-L.pth)")
        model = _load(self.config.checkpoint)
        windows: list[np.ndarray] = []
        owner: list[int] = []
        for i, x in enumerate(check_batch(batch)):
            n = max(1, min(self.config.max_windows, x.size // AASIST_N_SAMPLES))
            for k in range(n):
                windows.append(prepare_waveform(x[k * AASIST_N_SAMPLES:(k + 1) * AASIST_N_SAMPLES]
                                                if x.size >= AASIST_N_SAMPLES else x))
                owner.append(i)
        hidden = []
        with torch.inference_mode():
            for start in range(0, len(windows), self.config.batch_windows):
                h, _ = model(torch.from_numpy(np.stack(windows[start:start + self.config.batch_windows])))
                hidden.append(h.double().numpy())
        stacked = np.concatenate(hidden)
        owner_arr = np.asarray(owner)
        return [stacked[owner_arr == i].mean(axis=0) for i in range(len(batch))]
