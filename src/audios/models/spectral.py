"""Models on log-mel spectrograms: SpecCNN (a 2-D CNN) and SpecViT (a small Vision Transformer).

Both start with `LogMel`, a torch-native front-end (``torch.stft`` and a fixed mel filterbank matrix built
with ``librosa.filters.mel`` at construction), so the waveform-in, logits-out contract matches the raw
models and augmentation stays on waveforms. Class convention (ASVspoof): logit 0 is spoof, logit 1 is bona
fide.

SpecViT follows Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words" (patch embedding, a class token,
pre-norm Transformer encoder), with fixed 2-D sinusoidal position codes so any clip length works.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import torch
from torch import nn

from audios.config import build_config
from audios.errors import ConfigError


@dataclass(frozen=True)
class LogMelConfig:
    """Front-end settings. 400/160 samples = 25 ms windows every 10 ms at 16 kHz (the usual speech framing);
    ``f_max=None`` means Nyquist."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float | None = None

    def __post_init__(self) -> None:
        if min(self.sample_rate, self.n_fft, self.win_length, self.hop_length, self.n_mels) <= 0:
            raise ConfigError(f"LogMelConfig: sample_rate, n_fft, win_length, hop_length and n_mels must be "
                              f"positive, got {self}")
        if self.win_length > self.n_fft:
            raise ConfigError(f"LogMelConfig.win_length={self.win_length} exceeds n_fft={self.n_fft}")
        top = self.f_max if self.f_max is not None else self.sample_rate / 2
        if not 0 <= self.f_min < top <= self.sample_rate / 2:
            raise ConfigError(f"LogMelConfig: need 0 <= f_min < f_max <= sample_rate / 2, got f_min={self.f_min}, "
                              f"f_max={self.f_max}")


class LogMel(nn.Module):
    """Waveform (batch, samples) -> log mel power (batch, n_mels, frames), natural log with a 1e-6 floor."""

    def __init__(self, config: LogMelConfig = LogMelConfig()) -> None:
        super().__init__()
        self.config = config
        mel = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                                  fmin=config.f_min, fmax=config.f_max)  # (n_mels, n_fft // 2 + 1)
        # Fixed, rebuilt from the config: kept out of the state dict.
        self.register_buffer("mel", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        spec = torch.stft(x.float(), n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                          window=self.window, center=True, return_complex=True)  # (batch, bins, frames)
        power = spec.real.square() + spec.imag.square()
        return torch.log(self.mel @ power + 1e-6)  # (batch, n_mels, frames)


@dataclass(frozen=True)
class SpecCnnConfig:
    """channels: filters of each 3x3 Conv2D + BN + ReLU + 2x2 MaxPool block; hidden: dense width."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    hidden: int = 64
    dropout: float = 0.3
    sample_rate: int = 16000
    n_mels: int = 64
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or min(self.channels) <= 0 or self.hidden <= 0:
            raise ConfigError(f"SpecCnnConfig: channels {list(self.channels)} and hidden={self.hidden} must be "
                              "positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"SpecCnnConfig.dropout: must lie in [0, 1), got {self.dropout}")
        if self.n_mels < 2 ** len(self.channels):
            raise ConfigError(f"SpecCnnConfig: n_mels={self.n_mels} is too few for {len(self.channels)} 2x2 pools")
        self.front_end  # noqa: B018 - validates the front-end fields now

    @property
    def front_end(self) -> LogMelConfig:
        return LogMelConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.win_length,
                            hop_length=self.hop_length, n_mels=self.n_mels)


class SpecCnn(nn.Module):
    """Waveform (batch, samples) -> logits (batch, 2) through log-mel and a 2-D CNN."""

    def __init__(self, config: SpecCnnConfig = SpecCnnConfig()) -> None:
        super().__init__()
        self.config = config
        self.front_end = LogMel(config.front_end)
        self.input_norm = nn.BatchNorm2d(1)
        blocks: list[nn.Module] = []
        in_ch = 1
        for out_ch in config.channels:
            blocks += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(), nn.MaxPool2d(2)]
            in_ch = out_ch
        self.encoder = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * in_ch, config.hidden), nn.ReLU(),
                                  nn.Dropout(config.dropout))
        self.out_layer = nn.Linear(config.hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"SpecCnn expects a (batch, samples) waveform, got shape {tuple(x.shape)}")
        image = self.input_norm(self.front_end(x).unsqueeze(1))  # (batch, 1, n_mels, frames)
        if image.size(-1) < 2 ** len(self.config.channels):
            raise ValueError(f"SpecCnn: {x.size(1)} samples give {image.size(-1)} frames, fewer than the "
                             f"{2 ** len(self.config.channels)} its pools need")
        h = self.encoder(image)  # (batch, C, n_mels / 2**k, frames / 2**k)
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (batch, 2C)
        return self.out_layer(self.head(h))  # (batch, 2)


@dataclass(frozen=True)
class SpecVitConfig:
    """patch: (mel bins, frames) per patch; dim/depth/heads/mlp_ratio: the Transformer's width, layers,
    attention heads and feed-forward expansion."""

    patch: tuple[int, int] = (16, 16)
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    sample_rate: int = 16000
    n_mels: int = 64
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        if len(self.patch) != 2 or min(self.patch) <= 0:
            raise ConfigError(f"SpecVitConfig.patch: expected two positive sizes, got {list(self.patch)}")
        if self.n_mels < self.patch[0]:
            raise ConfigError(f"SpecVitConfig: n_mels={self.n_mels} is smaller than the patch height {self.patch[0]}")
        if min(self.dim, self.depth, self.heads) <= 0 or self.mlp_ratio <= 0:
            raise ConfigError(f"SpecVitConfig: dim, depth, heads and mlp_ratio must be positive, got dim={self.dim}, "
                              f"depth={self.depth}, heads={self.heads}, mlp_ratio={self.mlp_ratio}")
        if self.dim % self.heads or self.dim % 4:
            raise ConfigError(f"SpecVitConfig.dim={self.dim} must be divisible by heads={self.heads} and by 4 "
                              "(2-D sinusoidal position codes)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"SpecVitConfig.dropout: must lie in [0, 1), got {self.dropout}")
        self.front_end  # noqa: B018 - validates the front-end fields now

    @property
    def front_end(self) -> LogMelConfig:
        return LogMelConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.win_length,
                            hop_length=self.hop_length, n_mels=self.n_mels)


def sinusoidal_positions_2d(rows: int, cols: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine/cosine codes (rows * cols, dim): half the channels code the row, half the column."""
    quarter = dim // 4
    freq = 1.0 / (10000.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter))  # (dim/4,)

    def code(n: int) -> torch.Tensor:
        angle = torch.arange(n, dtype=torch.float32)[:, None] * freq[None, :]  # (n, dim/4)
        return torch.cat([angle.sin(), angle.cos()], dim=1)  # (n, dim/2)

    r, c = code(rows), code(cols)
    return torch.cat([r[:, None, :].expand(rows, cols, -1), c[None, :, :].expand(rows, cols, -1)],
                     dim=2).reshape(rows * cols, dim)


class SpecVit(nn.Module):
    """Waveform (batch, samples) -> logits (batch, 2) through log-mel, patches and a Transformer encoder."""

    def __init__(self, config: SpecVitConfig = SpecVitConfig()) -> None:
        super().__init__()
        self.config = config
        self.front_end = LogMel(config.front_end)
        self.input_norm = nn.BatchNorm2d(1)
        self.patch_embed = nn.Conv2d(1, config.dim, kernel_size=config.patch, stride=config.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        layer = nn.TransformerEncoderLayer(config.dim, config.heads, int(config.dim * config.mlp_ratio),
                                           config.dropout, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        self.out_layer = nn.Linear(config.dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"SpecVit expects a (batch, samples) waveform, got shape {tuple(x.shape)}")
        image = self.input_norm(self.front_end(x).unsqueeze(1))  # (batch, 1, n_mels, frames)
        if image.size(-1) < self.config.patch[1]:
            raise ValueError(f"SpecVit: {x.size(1)} samples give {image.size(-1)} frames, fewer than one patch "
                             f"({self.config.patch[1]})")
        patches = self.patch_embed(image)  # (batch, dim, rows, cols)
        rows, cols = patches.shape[2], patches.shape[3]
        tokens = patches.flatten(2).transpose(1, 2)  # (batch, rows * cols, dim)
        tokens = tokens + sinusoidal_positions_2d(rows, cols, self.config.dim).to(tokens)
        tokens = torch.cat([self.cls_token.expand(tokens.size(0), -1, -1), tokens], dim=1)  # (batch, 1 + n, dim)
        h = self.norm(self.encoder(tokens))[:, 0]  # (batch, dim): the class token
        return self.out_layer(h)  # (batch, 2)


def build_speccnn(**overrides: object) -> SpecCnn:
    """SpecCNN with the default config, fields overridden by keyword."""
    return SpecCnn(build_config(SpecCnnConfig, dict(overrides)))


def build_specvit(**overrides: object) -> SpecVit:
    """SpecViT with the default config, fields overridden by keyword."""
    return SpecVit(build_config(SpecVitConfig, dict(overrides)))


__all__ = ["LogMel", "LogMelConfig", "SpecCnn", "SpecCnnConfig", "SpecVit", "SpecVitConfig", "build_speccnn",
           "build_specvit", "sinusoidal_positions_2d"]
