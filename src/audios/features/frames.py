"""Frame-level features: LFCC, MFCC and log-mel, each a (frames, dims) float32 matrix per recording.

All three share one short-time power spectrum (periodic Hann window of ``win_length`` centred in
``n_fft``, signal zero-padded by ``n_fft // 2`` at both ends so frame ``t`` is centred on sample
``t * hop_length``; a signal of N samples gives ``1 + N // hop_length`` frames) and differ in the
filterbank:

* LFCC: triangular filters equally spaced on a linear Hz axis, log, DCT-II; the ASVspoof 2019/2021
  baseline front end (Sahidullah et al., "A comparison of features for synthetic speech detection",
  Interspeech 2015): 20 ms window, 10 ms hop, 512-point FFT, 20 filters, 20 coefficients + deltas.
* MFCC: the same on a mel filterbank (librosa's Slaney mel filters).
* log-mel: the log mel energies themselves (no DCT), for spectrogram models.

Batches are computed together: every recording's spectrum frames are stacked so the filterbank, log
and DCT are one matrix product for the whole batch; deltas are then taken per recording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.fft

from audios.errors import ConfigError
from audios.features.base import check_batch, positive
from audios.portable import triangular_filters

DELTA_WIDTH = 2  # regression over t-2..t+2, the HTK default


def power_spectrogram(x: np.ndarray, n_fft: int, win_length: int, hop_length: int) -> np.ndarray:
    """|STFT|^2 of a mono signal: (1 + len(x) // hop_length, n_fft // 2 + 1) float64."""
    x = np.asarray(x, dtype=np.float64)
    pad = n_fft // 2
    padded = np.pad(x, (pad, pad))
    n_frames = 1 + x.shape[0] // hop_length
    # Periodic Hann window of win_length, zero-padded to n_fft and centred.
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left:left + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    need = (n_frames - 1) * hop_length + n_fft
    if padded.shape[0] < need:
        padded = np.pad(padded, (0, need - padded.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length][:n_frames]
    spec = np.fft.rfft(frames * window, axis=-1)
    return spec.real**2 + spec.imag**2


def linear_filterbank(sample_rate: int, n_fft: int, n_filters: int, f_min_hz: float, f_max_hz: float) -> np.ndarray:
    """Triangular filters with centres equally spaced in Hz: (n_filters, n_fft // 2 + 1), peak 1."""
    return triangular_filters(np.linspace(f_min_hz, f_max_hz, n_filters + 2), sample_rate, n_fft)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min_hz: float, f_max_hz: float) -> np.ndarray:
    """librosa's Slaney-normalised mel filters: (n_mels, n_fft // 2 + 1)."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min_hz, fmax=f_max_hz).astype(
        np.float64
    )


def deltas(features: np.ndarray, width: int = DELTA_WIDTH) -> np.ndarray:
    """Regression deltas along frames (axis 0), edges repeated: d_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum_n n^2)."""
    n_frames = features.shape[0]
    padded = np.pad(features, ((width, width), (0, 0)), mode="edge")
    out = np.zeros_like(features, dtype=np.float64)
    for n in range(1, width + 1):
        out += n * (padded[width + n:width + n + n_frames] - padded[width - n:width - n + n_frames])
    return out / (2 * sum(n * n for n in range(1, width + 1)))


def add_deltas(features: np.ndarray, order: int) -> np.ndarray:
    """Append deltas up to ``order`` (0: none, 1: delta, 2: delta and delta-delta) as extra columns."""
    parts = [features]
    for _ in range(order):
        parts.append(deltas(parts[-1]))
    return np.concatenate(parts, axis=1)


def filterbank_features(
    batch: list[np.ndarray], filters: np.ndarray, n_fft: int, win_length: int, hop_length: int,
    log_floor: float, n_coeffs: int | None,
) -> list[np.ndarray]:
    """log(filterbank energies + floor), then DCT-II (orthonormal) keeping ``n_coeffs`` if given; per recording."""
    spectra = [power_spectrogram(x, n_fft, win_length, hop_length) for x in batch]
    lengths = [s.shape[0] for s in spectra]
    stacked = np.log(np.concatenate(spectra) @ filters.T + log_floor)
    if n_coeffs is not None:
        stacked = scipy.fft.dct(stacked, type=2, norm="ortho", axis=-1)[:, :n_coeffs]
    return np.split(stacked, np.cumsum(lengths)[:-1])


@dataclass(frozen=True)
class StftConfig:
    """Short-time analysis shared by the frame extractors (samples at ``sample_rate``)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    f_min_hz: float = 0.0
    f_max_hz: float | None = None  # None: sample_rate / 2
    # Added before the log so silent frames give log(1e-10) ~ -23 instead of -inf.
    log_floor: float = 1e-10

    def __post_init__(self) -> None:
        owner = type(self).__name__
        positive(owner, sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.win_length,
                 hop_length=self.hop_length, log_floor=self.log_floor)
        if self.win_length > self.n_fft:
            raise ConfigError(f"{owner}.win_length={self.win_length} exceeds n_fft={self.n_fft}")
        if not 0 <= self.f_min_hz < self.top_hz <= self.sample_rate / 2:
            raise ConfigError(
                f"{owner}: need 0 <= f_min_hz ({self.f_min_hz}) < f_max_hz ({self.top_hz}) <= "
                f"sample_rate/2 ({self.sample_rate / 2})"
            )

    @property
    def top_hz(self) -> float:
        return float(self.f_max_hz) if self.f_max_hz is not None else self.sample_rate / 2


def _check_coeffs(owner: str, n_coeffs: int, n_bands: int, delta_order: int) -> None:
    positive(owner, n_coeffs=n_coeffs, n_bands=n_bands)
    if n_coeffs > n_bands:
        raise ConfigError(f"{owner}.n_coeffs={n_coeffs} exceeds the {n_bands} filters it is taken from")
    if delta_order not in (0, 1, 2):
        raise ConfigError(f"{owner}.delta_order={delta_order} must be 0, 1 or 2")


def _delta_columns(prefix: str, n: int, order: int) -> tuple[str, ...]:
    names = [f"{prefix}_{i}" for i in range(n)]
    for d in ("d", "dd")[:order]:
        names += [f"{d}{prefix}_{i}" for i in range(n)]
    return tuple(names)


class _CepstralExtractor:
    """Shared by LFCC and MFCC: filterbank ``self._filters``, log, DCT, deltas; columns named ``name_i``."""

    name: ClassVar[str]
    config: LfccConfig | MfccConfig
    _filters: np.ndarray

    @property
    def columns(self) -> tuple[str, ...]:
        return _delta_columns(self.name, self.config.n_coeffs, self.config.delta_order)

    def extract(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Mono float32 signals at ``config.sample_rate`` -> one (frames, dims) float32 matrix each."""
        c = self.config
        ceps = filterbank_features(check_batch(batch), self._filters, c.n_fft, c.win_length, c.hop_length,
                                   c.log_floor, c.n_coeffs)
        return [add_deltas(m, c.delta_order).astype(np.float32) for m in ceps]


@dataclass(frozen=True)
class LfccConfig(StftConfig):
    """LFCC: linear triangular filterbank, log, DCT; defaults are the ASVspoof LFCC-GMM baseline's."""

    win_length: int = 320  # 20 ms at 16 kHz
    n_filters: int = 20
    n_coeffs: int = 20
    delta_order: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_coeffs("LfccConfig", self.n_coeffs, self.n_filters, self.delta_order)
        # Each triangle must span at least one FFT bin or its energy is always zero.
        if (self.top_hz - self.f_min_hz) / (self.n_filters + 1) < self.sample_rate / self.n_fft:
            raise ConfigError(
                f"LfccConfig.n_filters={self.n_filters} is too many for n_fft={self.n_fft}: filters narrower than one "
                "FFT bin"
            )


class LfccExtractor(_CepstralExtractor):
    """Linear-frequency cepstral coefficients (+ deltas): (frames, n_coeffs * (1 + delta_order))."""

    name: ClassVar[str] = "lfcc"
    kind: ClassVar[str] = "frames"
    version: ClassVar[int] = 1
    Config = LfccConfig

    def __init__(self, config: LfccConfig = LfccConfig()) -> None:
        self.config = config
        c = config
        self._filters = linear_filterbank(c.sample_rate, c.n_fft, c.n_filters, c.f_min_hz, c.top_hz)



@dataclass(frozen=True)
class MfccConfig(StftConfig):
    """MFCC: mel filterbank, log, DCT."""

    n_mels: int = 40
    n_coeffs: int = 20
    delta_order: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_coeffs("MfccConfig", self.n_coeffs, self.n_mels, self.delta_order)


class MfccExtractor(_CepstralExtractor):
    """Mel-frequency cepstral coefficients (+ deltas): (frames, n_coeffs * (1 + delta_order))."""

    name: ClassVar[str] = "mfcc"
    kind: ClassVar[str] = "frames"
    version: ClassVar[int] = 1
    Config = MfccConfig

    def __init__(self, config: MfccConfig = MfccConfig()) -> None:
        self.config = config
        c = config
        self._filters = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.f_min_hz, c.top_hz)



@dataclass(frozen=True)
class LogmelConfig(StftConfig):
    """Log mel spectrogram (natural log of mel power)."""

    n_mels: int = 80

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("LogmelConfig", n_mels=self.n_mels)


class LogmelExtractor:
    """Log mel energies: (frames, n_mels)."""

    name: ClassVar[str] = "logmel"
    kind: ClassVar[str] = "frames"
    version: ClassVar[int] = 1
    Config = LogmelConfig

    def __init__(self, config: LogmelConfig = LogmelConfig()) -> None:
        self.config = config
        c = config
        self._filters = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.f_min_hz, c.top_hz)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f"logmel_{i}" for i in range(self.config.n_mels))

    def extract(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Mono float32 signals at ``config.sample_rate`` -> one (frames, n_mels) float32 matrix each."""
        c = self.config
        mels = filterbank_features(check_batch(batch), self._filters, c.n_fft, c.win_length, c.hop_length,
                                   c.log_floor, None)
        return [m.astype(np.float32) for m in mels]
