"""RawCNN: a small 1-D CNN on the raw waveform, the simplest deep baseline.

Conv1D + BatchNorm + ReLU + MaxPool blocks (32/64/128 filters by default), global mean and max pooling
over time (so any clip length works), then dense 128 and 64 with dropout and a 2-way output.
Class convention (ASVspoof): logit 0 is spoof, logit 1 is bona fide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from audios.config import build_config
from audios.errors import ConfigError

name = "rawcnn"

# 32000 samples = 2 s at 16 kHz: the default training clip.
RAWCNN_N_SAMPLES = 32000


@dataclass(frozen=True)
class RawCnnConfig:
    """channels: filters of each Conv1D block; kernel_size: taps per conv; pool_size: max-pool factor per block
    (the time axis shrinks by pool_size ** blocks); dense: widths of the hidden dense layers; dropout: after each.
    """

    channels: tuple[int, ...] = (32, 64, 128)
    kernel_size: int = 9
    pool_size: int = 4
    dense: tuple[int, ...] = (128, 64)
    dropout: float = 0.3
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "dense", tuple(int(d) for d in self.dense))
        if not self.channels or min(self.channels) <= 0:
            raise ConfigError(f"RawCnnConfig.channels: need positive widths, got {list(self.channels)}")
        if min(self.dense, default=1) <= 0:
            raise ConfigError(f"RawCnnConfig.dense: need positive widths, got {list(self.dense)}")
        if self.kernel_size <= 0 or self.pool_size <= 0:
            raise ConfigError(f"RawCnnConfig: kernel_size={self.kernel_size} and pool_size={self.pool_size} "
                              "must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"RawCnnConfig.dropout: must lie in [0, 1), got {self.dropout}")
        if self.sample_rate <= 0:
            raise ConfigError(f"RawCnnConfig.sample_rate: must be positive, got {self.sample_rate}")

    @property
    def min_samples(self) -> int:
        """Shortest input leaving one frame after every pool."""
        return self.pool_size ** len(self.channels)


Config = RawCnnConfig


class RawCnn(nn.Module):
    """Waveform (batch, samples) -> logits (batch, 2) [spoof, bona fide]."""

    def __init__(self, config: RawCnnConfig = RawCnnConfig()) -> None:
        super().__init__()
        self.config = config
        blocks: list[nn.Module] = []
        in_ch = 1
        for out_ch in config.channels:
            blocks += [nn.Conv1d(in_ch, out_ch, config.kernel_size, padding=config.kernel_size // 2),
                       nn.BatchNorm1d(out_ch), nn.ReLU(), nn.MaxPool1d(config.pool_size)]
            in_ch = out_ch
        self.encoder = nn.Sequential(*blocks)
        head: list[nn.Module] = []
        width = 2 * in_ch  # mean and max pooled
        for d in config.dense:
            head += [nn.Linear(width, d), nn.ReLU(), nn.Dropout(config.dropout)]
            width = d
        self.head = nn.Sequential(*head)
        self.out_layer = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"RawCnn expects a (batch, samples) waveform, got shape {tuple(x.shape)}")
        if x.size(1) < self.config.min_samples:
            raise ValueError(f"RawCnn needs at least {self.config.min_samples} samples, got {x.size(1)}")
        h = self.encoder(x.unsqueeze(1))  # (batch, C, samples // pool**blocks)
        h = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)  # (batch, 2C)
        return self.out_layer(self.head(h))  # (batch, 2)


def build_rawcnn(**overrides: object) -> RawCnn:
    """RawCNN with the default config, fields overridden by keyword (YAML lists become tuples)."""
    return RawCnn(build_config(RawCnnConfig, dict(overrides)))


__all__ = ["RAWCNN_N_SAMPLES", "RawCnn", "RawCnnConfig", "build_rawcnn"]
