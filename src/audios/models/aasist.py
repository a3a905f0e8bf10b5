"""AASIST and AASIST-L: raw-waveform anti-spoofing with spectro-temporal graph attention.

Jung et al. 2022, "AASIST: Audio Anti-Spoofing using Integrated Spectro-Temporal Graph Attention
Networks" (ICASSP). One code, two configs (`AASIST_CONFIG`, `AASIST_L_CONFIG`). The forward pass
follows the authors' released model (see /work/shared/models/aasist/README.md for the facts it must
reproduce, including two quirks kept on purpose: the dead pre-activation BatchNorm in residual blocks
2-6 and graph pooling that keeps nodes in descending-score order). `load_released_checkpoint` loads the
authors' `AASIST.pth` / `AASIST-L.pth` strictly through a key map to the module names used here.

Class convention (ASVspoof): logit 0 is spoof, logit 1 is bona fide; the score is ``logits[:, 1]``,
higher meaning more likely bona fide.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from audios.audio import AudioConfig, load_audio
from audios.config import build_config, config_to_dict
from audios.errors import AudioError, AudiosError, ConfigError
from audios.parallel import progress_bar

log = logging.getLogger(__name__)

name = "aasist"

# 64600 samples ≈ 4.04 s at 16 kHz: the fixed AASIST input length (crop or tile to it at evaluation).
AASIST_N_SAMPLES = 64600
SPOOF, BONAFIDE = 0, 1


class CheckpointError(AudiosError, ValueError):
    """A weights file cannot be read or does not fit the model; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AasistConfig:
    """Hyper-parameters, named as in the authors' ``model_config`` so their .conf files read directly.

    nb_samp: input length in samples; 64600 ≈ 4.04 s at 16 kHz (the model itself accepts other
        lengths; this is what `prepare_waveform` crops/tiles to).
    first_conv: sinc kernel length; an even value is rounded up to the next odd one (128 -> 129 taps).
    filts: (number of sinc filters, then (in, out) channels of residual blocks 1-4; blocks 5 and 6
        repeat the last pair).
    gat_dims: (graph-attention width of the spectral/temporal graphs, width of the heterogeneous layers).
    pool_ratios: fraction of nodes kept by the spectral pool, the temporal pool and every pool inside
        the heterogeneous branches; the fourth entry is unused (kept for .conf compatibility).
    temperatures: softmax temperatures of the spectral GAT, the temporal GAT and every heterogeneous
        layer; the fourth entry is unused.
    small: drop all graph attention (encoder, pooled readout, linear) for weak machines; such a model
        cannot load the released weights.
    sample_rate: the rate the sinc filter bank is designed for, in Hz.
    """

    nb_samp: int = AASIST_N_SAMPLES
    first_conv: int = 128
    filts: tuple[int | tuple[int, int], ...] = (70, (1, 32), (32, 32), (32, 64), (64, 64))
    gat_dims: tuple[int, ...] = (64, 32)
    pool_ratios: tuple[float, ...] = (0.5, 0.7, 0.5, 0.5)
    temperatures: tuple[float, ...] = (2.0, 2.0, 100.0, 100.0)
    small: bool = False
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        # Accept lists (YAML) by normalising to tuples; the dataclass stays frozen and hashable.
        filts = tuple(f if isinstance(f, int) else tuple(f) for f in self.filts)
        object.__setattr__(self, "filts", filts)
        for field in ("gat_dims", "pool_ratios", "temperatures"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        if self.nb_samp <= 0:
            raise ConfigError(f"AasistConfig.nb_samp: must be positive, got {self.nb_samp}")
        if self.first_conv <= 0:
            raise ConfigError(f"AasistConfig.first_conv: must be positive, got {self.first_conv}")
        if self.sample_rate <= 0:
            raise ConfigError(f"AasistConfig.sample_rate: must be positive, got {self.sample_rate}")
        if len(filts) != 5 or not isinstance(filts[0], int):
            raise ConfigError(f"AasistConfig.filts: expected (n_filters, 4 channel pairs), got {self.filts}")
        if filts[0] < 3:
            raise ConfigError(f"AasistConfig.filts[0]: need at least 3 sinc filters, got {filts[0]}")
        pairs = filts[1:]
        if any(not isinstance(p, tuple) or len(p) != 2 or min(p) <= 0 for p in pairs):
            raise ConfigError(f"AasistConfig.filts: channel entries must be positive (in, out) pairs, got {pairs}")
        if pairs[0][0] != 1:
            raise ConfigError(f"AasistConfig.filts[1]: the first block reads 1 channel, got in={pairs[0][0]}")
        for i in range(1, 4):
            if pairs[i][0] != pairs[i - 1][1]:
                raise ConfigError(f"AasistConfig.filts[{i + 1}]: in={pairs[i][0]} does not match the previous "
                                  f"block's out={pairs[i - 1][1]}")
        if pairs[3][0] != pairs[3][1]:
            raise ConfigError(f"AasistConfig.filts[4]: blocks 5 and 6 repeat it, so in and out must be equal, "
                              f"got {pairs[3]}")
        if len(self.gat_dims) != 2 or min(self.gat_dims) <= 0:
            raise ConfigError(f"AasistConfig.gat_dims: expected two positive widths, got {self.gat_dims}")
        if len(self.pool_ratios) != 4 or not all(0.0 < r <= 1.0 for r in self.pool_ratios):
            raise ConfigError(f"AasistConfig.pool_ratios: expected four ratios in (0, 1], got {self.pool_ratios}")
        if len(self.temperatures) != 4 or not all(t > 0 for t in self.temperatures):
            raise ConfigError(f"AasistConfig.temperatures: expected four positive values, got {self.temperatures}")

    @property
    def n_sinc_filters(self) -> int:
        return int(self.filts[0])

    @property
    def block_channels(self) -> tuple[tuple[int, int], ...]:
        """(in, out) channels of the six residual blocks."""
        pairs = tuple(self.filts[1:])
        return pairs + (pairs[-1], pairs[-1])  # type: ignore[return-value]

    @property
    def encoder_channels(self) -> int:
        return self.block_channels[-1][1]

    @property
    def n_spectral_nodes(self) -> int:
        """Rows left by the 3x3 max-pool after the sinc bank; residual blocks keep them (23 for 70 filters)."""
        return self.n_sinc_filters // 3

    @property
    def n_taps(self) -> int:
        """Sinc kernel length actually used: ``first_conv`` rounded up to odd (129)."""
        return self.first_conv + 1 if self.first_conv % 2 == 0 else self.first_conv

    @property
    def min_samples(self) -> int:
        """Shortest input leaving one frame after the 3x3 pool and six (1, 3) pools: 3**7 + taps - 1 (2315)."""
        return 3**7 + self.n_taps - 1

    @property
    def hidden_dim(self) -> int:
        """Readout width: five pieces of ``gat_dims[1]`` (160 for both released models)."""
        return 5 * self.gat_dims[1]


AASIST_CONFIG = AasistConfig()
AASIST_L_CONFIG = AasistConfig(
    filts=(70, (1, 32), (32, 32), (32, 24), (24, 24)),
    gat_dims=(24, 32),
    pool_ratios=(0.4, 0.5, 0.7, 0.5),
    temperatures=(2.0, 2.0, 100.0, 100.0),
)
RELEASED_CONFIGS: dict[str, AasistConfig] = {"aasist": AASIST_CONFIG, "aasist-l": AASIST_L_CONFIG}


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def sinc_filter_bank(n_filters: int, kernel_size: int, sample_rate: int = 16000) -> torch.Tensor:
    """Fixed mel-spaced band-pass sinc filters (RawNet2/AASIST front-end) -> (n_filters, taps) float32.

    The dtypes of every step are spelled out because the released model's outputs depend on them at the
    1e-5 level: tap arguments are float32, the per-band 2f/sr scaling and the high-minus-low subtraction
    are float64 (NumPy 2 promotion of a float64 scalar with a float32 array), and the Hamming window and
    the ideal response are cast to float32 before being multiplied.
    """
    taps = kernel_size + 1 if kernel_size % 2 == 0 else kernel_size
    # Band edges: evenly spaced in mel over the range of a 257-point 0..Nyquist grid (NFFT 512), as released.
    n_fft = 512
    grid_hz = (sample_rate // 2) * np.linspace(0.0, 1.0, n_fft // 2 + 1)
    grid_mel = _hz_to_mel(grid_hz)
    edges_hz = _mel_to_hz(np.linspace(grid_mel.min(), grid_mel.max(), n_filters + 1))
    half = (taps - 1) / 2
    positions = torch.arange(-half, half + 1, dtype=torch.float32)  # tap positions -64..64

    def lowpass(cutoff_hz: np.float64) -> np.ndarray:
        argument = ((2.0 * cutoff_hz) * positions / sample_rate).numpy()  # float32, computed by torch
        return np.float64(2.0 * cutoff_hz / sample_rate) * np.sinc(argument).astype(np.float64)

    window = torch.from_numpy(np.hamming(taps)).float()
    bank = torch.zeros(n_filters, taps)
    for i in range(n_filters):
        ideal = lowpass(edges_hz[i + 1]) - lowpass(edges_hz[i])
        bank[i] = window * torch.from_numpy(ideal).float()
    return bank


class SincFrontEnd(nn.Module):
    """Fixed sinc band-pass bank applied as a 1-D convolution (stride 1, no padding, no bias)."""

    def __init__(self, n_filters: int, kernel_size: int, sample_rate: int) -> None:
        super().__init__()
        # Not learnable and not stored in checkpoints: rebuilt here, kept out of the state dict.
        self.register_buffer("filters", sinc_filter_bank(n_filters, kernel_size, sample_rate), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, samples)
        out = F.conv1d(x.unsqueeze(1), self.filters.unsqueeze(1))  # (batch, filters, samples - taps + 1)
        return out


class ResidualBlock(nn.Module):
    """conv(2x3) -> BN -> SELU -> conv(2x3), plus identity (1x3 conv if channels change), then max-pool (1, 3)."""

    def __init__(self, in_channels: int, out_channels: int, first: bool = False) -> None:
        super().__init__()
        if not first:
            # The released model computes BN+SELU of the block input and then discards it (conv1 reads
            # the raw input). Kept only so the released weights load strictly; it never affects outputs.
            self.unused_bn = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(2, 3), padding=(1, 1))
        self.bn = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(2, 3), padding=(0, 1))
        self.skip = (nn.Conv2d(in_channels, out_channels, kernel_size=(1, 3), padding=(0, 1))
                     if in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, in, freq, time)
        out = F.selu(self.bn(self.conv1(x)))  # (batch, out, freq + 1, time)
        out = self.conv2(out) + self.skip(x)  # (batch, out, freq, time)
        return F.max_pool2d(out, (1, 3))  # (batch, out, freq, time // 3)


def _pairwise_products(x: torch.Tensor) -> torch.Tensor:
    """(batch, nodes, dim) -> (batch, nodes, nodes, dim) with [b, i, j] = x_i * x_j."""
    return x.unsqueeze(2) * x.unsqueeze(1)


def _node_batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d over all nodes of all examples: (batch, nodes, dim) -> same shape."""
    return bn(x.reshape(-1, x.size(-1))).view_as(x)


class GraphAttention(nn.Module):
    """Graph attention over a fully connected graph (AASIST eq. 2-3), with BN and SELU on the output."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, nodes, in_dim)
        x = self.input_drop(x)
        pair = torch.tanh(self.att_proj(_pairwise_products(x)))  # (batch, nodes, nodes, out_dim)
        logits = (pair @ self.att_weight).squeeze(-1) / self.temperature  # (batch, nodes, nodes)
        att = F.softmax(logits, dim=-1)  # rows sum to 1 over neighbours j
        out = self.proj_with_att(att @ x) + self.proj_without_att(x)  # (batch, nodes, out_dim)
        return F.selu(_node_batch_norm(self.bn, out))


class HeteroGraphAttention(nn.Module):
    """Heterogeneous stacking graph attention over [temporal; spectral] nodes plus a master node (HS-GAL)."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.proj_temporal = nn.Linear(in_dim, in_dim)
        self.proj_spectral = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        # One score vector per block of the attention map: temporal-temporal, spectral-spectral, and
        # one shared by both cross-type blocks.
        self.att_weight_tt = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.att_weight_ss = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.att_weight_cross = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.master_att_proj = nn.Linear(in_dim, out_dim)
        self.master_att_weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.master_proj_with_att = nn.Linear(in_dim, out_dim)
        self.master_proj_without_att = nn.Linear(in_dim, out_dim)
        self.input_drop = nn.Dropout(0.2)

    def forward(self, temporal: torch.Tensor, spectral: torch.Tensor,
                master: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # temporal: (batch, n_t, in_dim); spectral: (batch, n_s, in_dim); master: (batch, 1, in_dim)
        n_t = temporal.size(1)
        x = torch.cat([self.proj_temporal(temporal), self.proj_spectral(spectral)], dim=1)  # (batch, n, in_dim)
        x = self.input_drop(x)

        pair = torch.tanh(self.att_proj(_pairwise_products(x)))  # (batch, n, n, out_dim)
        weights = torch.cat([self.att_weight_tt, self.att_weight_cross, self.att_weight_ss], dim=1)  # (out_dim, 3)
        is_spectral = (torch.arange(x.size(1), device=x.device) >= n_t).long()  # (n,)
        block = is_spectral.unsqueeze(1) + is_spectral.unsqueeze(0)  # (n, n): 0 tt, 1 cross, 2 ss
        all_logits = pair @ weights  # (batch, n, n, 3)
        index = block.expand(x.size(0), -1, -1).unsqueeze(-1)  # (batch, n, n, 1)
        logits = all_logits.gather(-1, index).squeeze(-1) / self.temperature  # (batch, n, n)
        att = F.softmax(logits, dim=-1)
        nodes = self.proj_with_att(att @ x) + self.proj_without_att(x)  # (batch, n, out_dim)
        nodes = F.selu(_node_batch_norm(self.bn, nodes))

        master_logits = (torch.tanh(self.master_att_proj(x * master)) @ self.master_att_weight)  # (batch, n, 1)
        master_att = F.softmax(master_logits / self.temperature, dim=1)  # over all nodes
        master = (self.master_proj_with_att(master_att.transpose(1, 2) @ x)
                  + self.master_proj_without_att(master))  # (batch, 1, out_dim); no BN or SELU
        return nodes[:, :n_t], nodes[:, n_t:], master


class GraphPool(nn.Module):
    """Keep the top ``ratio`` of nodes by sigmoid(Linear) score, in descending-score order, scaled by score."""

    def __init__(self, ratio: float, dim: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Linear(dim, 1)
        self.drop = nn.Dropout(dropout)

    def n_kept(self, n_nodes: int) -> int:
        return max(int(n_nodes * self.ratio), 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # h: (batch, nodes, dim)
        scores = torch.sigmoid(self.proj(self.drop(h)))  # (batch, nodes, 1)
        # Sorted top-k order matters: the two branches are later merged by rank position.
        _, idx = torch.topk(scores, self.n_kept(h.size(1)), dim=1)  # (batch, kept, 1)
        return torch.gather(h * scores, 1, idx.expand(-1, -1, h.size(2)))  # (batch, kept, dim)


class HeteroBranch(nn.Module):
    """One of the two parallel heterogeneous inference paths, with its own learned master node."""

    def __init__(self, config: AasistConfig) -> None:
        super().__init__()
        in_dim, out_dim = config.gat_dims
        ratio, temperature = config.pool_ratios[2], config.temperatures[2]
        self.master = nn.Parameter(torch.randn(1, 1, in_dim))
        self.hetero1 = HeteroGraphAttention(in_dim, out_dim, temperature)
        self.pool_spectral = GraphPool(ratio, out_dim)
        self.pool_temporal = GraphPool(ratio, out_dim)
        self.hetero2 = HeteroGraphAttention(out_dim, out_dim, temperature)

    def forward(self, temporal: torch.Tensor,
                spectral: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # temporal: (batch, n_t, gat_dims[0]); spectral: (batch, n_s, gat_dims[0])
        master = self.master.expand(temporal.size(0), -1, -1)  # (batch, 1, gat_dims[0])
        temporal, spectral, master = self.hetero1(temporal, spectral, master)
        temporal = self.pool_temporal(temporal)  # (batch, n_t', gat_dims[1])
        spectral = self.pool_spectral(spectral)  # (batch, n_s', gat_dims[1])
        d_temporal, d_spectral, d_master = self.hetero2(temporal, spectral, master)
        return temporal + d_temporal, spectral + d_spectral, master + d_master


def _readout(temporal: torch.Tensor, spectral: torch.Tensor) -> list[torch.Tensor]:
    """Node-wise max |.| and mean of each node set: four (batch, dim) pieces, temporal first."""
    return [temporal.abs().amax(dim=1), temporal.mean(dim=1), spectral.abs().amax(dim=1), spectral.mean(dim=1)]


class Aasist(nn.Module):
    """AASIST / AASIST-L (or the graph-free ``small`` variant): waveform -> (hidden, logits)."""

    def __init__(self, config: AasistConfig = AASIST_CONFIG) -> None:
        super().__init__()
        self.config = config
        c = config.encoder_channels
        self.sinc = SincFrontEnd(config.n_sinc_filters, config.first_conv, config.sample_rate)
        self.front_bn = nn.BatchNorm2d(1)
        self.encoder = nn.Sequential(*(ResidualBlock(i, o, first=k == 0)
                                       for k, (i, o) in enumerate(config.block_channels)))
        if config.small:
            self.small_proj = nn.Linear(4 * c, config.hidden_dim)
        else:
            gat_dim = config.gat_dims[0]
            self.spectral_pos = nn.Parameter(torch.randn(1, config.n_spectral_nodes, c))
            self.gat_spectral = GraphAttention(c, gat_dim, config.temperatures[0])
            self.gat_temporal = GraphAttention(c, gat_dim, config.temperatures[1])
            self.pool_spectral = GraphPool(config.pool_ratios[0], gat_dim)
            self.pool_temporal = GraphPool(config.pool_ratios[1], gat_dim)
            self.branches = nn.ModuleList([HeteroBranch(config), HeteroBranch(config)])
            self.branch_drop = nn.Dropout(0.2)
        self.hidden_drop = nn.Dropout(0.5)
        self.out_layer = nn.Linear(config.hidden_dim, 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Waveform (batch, samples) -> feature map (batch, channels, spectral nodes, frames)."""
        if x.dim() != 2:
            raise ValueError(f"Aasist expects a (batch, samples) waveform, got shape {tuple(x.shape)}")
        if x.size(1) < self.config.min_samples:
            raise ValueError(f"Aasist needs at least {self.config.min_samples} samples, got {x.size(1)}")
        bands = self.sinc(x)  # (batch, 70, samples - 128)
        image = F.max_pool2d(bands.abs().unsqueeze(1), (3, 3))  # (batch, 1, 23, (samples - 128) // 3)
        image = F.selu(self.front_bn(image))
        return self.encoder(image)  # (batch, C, 23, frames); frames = 29 for 64600 samples

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveform (batch, samples) float -> (hidden (batch, 160), logits (batch, 2): [spoof, bona fide])."""
        e = self.encode(x)  # (batch, C, 23, frames)
        spectral = e.abs().amax(dim=3).transpose(1, 2)  # (batch, 23, C): max over time
        temporal = e.abs().amax(dim=2).transpose(1, 2)  # (batch, frames, C): max over frequency
        if self.config.small:
            hidden = F.selu(self.small_proj(torch.cat(_readout(temporal, spectral), dim=1)))  # (batch, 160)
        else:
            spectral = self.pool_spectral(self.gat_spectral(spectral + self.spectral_pos))  # (batch, n_s, gat0)
            temporal = self.pool_temporal(self.gat_temporal(temporal))  # (batch, n_t, gat0)
            t1, s1, m1 = (self.branch_drop(v) for v in self.branches[0](temporal, spectral))
            t2, s2, m2 = (self.branch_drop(v) for v in self.branches[1](temporal, spectral))
            # Element-wise max pairs nodes by rank position (each pool returns them best first).
            temporal, spectral, master = torch.maximum(t1, t2), torch.maximum(s1, s2), torch.maximum(m1, m2)
            hidden = torch.cat(_readout(temporal, spectral) + [master.squeeze(1)], dim=1)  # (batch, 160)
        logits = self.out_layer(self.hidden_drop(hidden))  # (batch, 2)
        return hidden, logits

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Bona fide logit per example, (batch,); higher = more likely bona fide (ASVspoof convention)."""
        return self(x)[1][:, BONAFIDE]


# Released checkpoint names -> ours, applied in order to each key.
_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"^first_bn\.", "front_bn."),
    (r"^pos_S$", "spectral_pos"),
    (r"^encoder\.(\d+)\.0\.", r"encoder.\1."),
    (r"\.bn1\.", ".unused_bn."),
    (r"\.bn2\.", ".bn."),
    (r"\.conv_downsample\.", ".skip."),
    (r"^GAT_layer_S\.", "gat_spectral."),
    (r"^GAT_layer_T\.", "gat_temporal."),
    (r"^pool_S\.", "pool_spectral."),
    (r"^pool_T\.", "pool_temporal."),
    (r"^master1$", "branches.0.master"),
    (r"^master2$", "branches.1.master"),
    (r"^HtrgGAT_layer_ST1([12])\.", r"branches.0.hetero\1."),
    (r"^HtrgGAT_layer_ST2([12])\.", r"branches.1.hetero\1."),
    (r"^pool_hS1\.", "branches.0.pool_spectral."),
    (r"^pool_hT1\.", "branches.0.pool_temporal."),
    (r"^pool_hS2\.", "branches.1.pool_spectral."),
    (r"^pool_hT2\.", "branches.1.pool_temporal."),
    (r"\.proj_type1\.", ".proj_temporal."),
    (r"\.proj_type2\.", ".proj_spectral."),
    (r"\.att_weight11$", ".att_weight_tt"),
    (r"\.att_weight22$", ".att_weight_ss"),
    (r"\.att_weight12$", ".att_weight_cross"),
    (r"\.att_weightM$", ".master_att_weight"),
    (r"\.att_projM\.", ".master_att_proj."),
    (r"\.proj_with_attM\.", ".master_proj_with_att."),
    (r"\.proj_without_attM\.", ".master_proj_without_att."),
)


def released_key_to_ours(key: str) -> str:
    """Map one key of the authors' state dict to this module's name for the same tensor."""
    for pattern, replacement in _KEY_MAP:
        key = re.sub(pattern, replacement, key)
    return key


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(path, "not a plain PyTorch state dict (weights-only loading refused it)") from exc
    except Exception as exc:  # torch raises many types for corrupt or truncated files
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(path, f"cannot read as a PyTorch weights file ({type(exc).__name__}: {first_line})") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(path, "expected a state dict (a mapping of names to tensors)")
    return dict(state)


def _shape_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """None if ``state`` fits ``model`` key for key and shape for shape, else the first problem."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        return f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            return f"{key} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
    return None


def load_released_checkpoint(path: str | Path, config: AasistConfig | None = None) -> Aasist:
    """Build the model for the authors' ``AASIST.pth`` / ``AASIST-L.pth`` and load it strictly; eval mode.

    With ``config=None`` the variant is inferred from tensor shapes among the released configs.
    """
    path = Path(path)
    state = {released_key_to_ours(k.removeprefix("module.")): v for k, v in _read_state_dict(path).items()}
    candidates = {"given": config} if config is not None else RELEASED_CONFIGS
    problems = []
    for label, cfg in candidates.items():
        if cfg.small:
            raise CheckpointError(path, "the small (graph-free) variant cannot load released AASIST weights")
        model = Aasist(cfg)
        problem = _shape_mismatch(model, state)
        if problem is None:
            model.load_state_dict(state, strict=True)
            log.info("loaded %s as %s", path, label)
            return model.eval()
        problems.append(f"{label}: {problem}")
    raise CheckpointError(path, "does not fit " + "; ".join(problems))


def prepare_waveform(x: np.ndarray, n_samples: int = AASIST_N_SAMPLES) -> np.ndarray:
    """Evaluation-time input: the first ``n_samples`` of a mono waveform, a shorter one tiled end to end then cut.

    (samples,) float -> (n_samples,) float32.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"prepare_waveform expects a mono (samples,) waveform, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("prepare_waveform got an empty waveform")
    if n_samples <= 0:
        raise ValueError(f"prepare_waveform: n_samples must be positive, got {n_samples}")
    if x.size < n_samples:
        x = np.tile(x, n_samples // x.size + 1)
    return np.ascontiguousarray(x[:n_samples], dtype=np.float32)


@dataclass(frozen=True)
class FileScores:
    """Bona fide scores of the files that could be scored, and ``(path, reason)`` for those that could not."""

    scores: tuple[tuple[str, float], ...]
    skipped: tuple[tuple[str, str], ...]


def score_files(model: Aasist, paths: list[str | Path], batch_size: int = 8, progress: bool = False) -> FileScores:
    """Score each file's first ``nb_samp`` samples (tiled if shorter) with ``model`` in eval mode.

    Unreadable, empty, silent or too-short files are skipped with their reason; the rest keep input order.
    """
    if batch_size <= 0:
        raise ConfigError(f"batch_size: must be positive, got {batch_size}")
    model.eval()
    audio_config = AudioConfig(sample_rate=model.config.sample_rate)
    scores: list[tuple[str, float]] = []
    skipped: list[tuple[str, str]] = []
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        x = torch.from_numpy(np.stack([w for _, w in batch]))  # (batch, nb_samp)
        scores.extend(zip([p for p, _ in batch], model.score(x).tolist()))
        batch.clear()

    bar = progress_bar(len(paths), "aasist", progress)
    try:
        for path in paths:
            try:
                batch.append((str(path), prepare_waveform(load_audio(path, audio_config), model.config.nb_samp)))
            except AudioError as exc:
                log.info("skipping %s", exc)
                skipped.append((str(path), exc.reason))
            if len(batch) == batch_size:
                flush()
            bar.update()
        if batch:
            flush()
    finally:
        bar.close()
    return FileScores(scores=tuple(scores), skipped=tuple(skipped))


def save_model(model: Aasist, directory: str | Path) -> Path:
    """Write ``config.yaml`` and ``weights.pt`` (our key names) to ``directory``; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config_to_dict(model.config), sort_keys=False))
    torch.save(model.state_dict(), directory / "weights.pt")
    return directory


def load_model(directory: str | Path) -> Aasist:
    """Inverse of `save_model`: rebuild from ``config.yaml`` and load ``weights.pt`` strictly; eval mode."""
    directory = Path(directory)
    config_path, weights_path = directory / "config.yaml", directory / "weights.pt"
    if not config_path.is_file():
        raise CheckpointError(config_path, "model config does not exist")
    config = build_config(AasistConfig, yaml.safe_load(config_path.read_text()))
    model = Aasist(config)
    state = _read_state_dict(weights_path)
    problem = _shape_mismatch(model, state)
    if problem is not None:
        raise CheckpointError(weights_path, f"does not fit its config.yaml: {problem}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def build_aasist(**overrides: object) -> Aasist:
    """AASIST with the released hyper-parameters, optionally overridden (e.g. ``small=True``)."""
    return Aasist(dataclasses.replace(AASIST_CONFIG, **overrides))


def build_aasist_l(**overrides: object) -> Aasist:
    """AASIST-L (85,306 parameters) with the released hyper-parameters, optionally overridden."""
    return Aasist(dataclasses.replace(AASIST_L_CONFIG, **overrides))
