"""Utterance-level spectral summary: one fixed-length vector per recording.

The base table is exactly 15 columns, ``centroid, entropy, mfcc_0..mfcc_12``:

* ``centroid``: mean over frames of the magnitude-weighted mean frequency, in Hz.
* ``entropy``: mean over frames of the Shannon entropy, in bits, of the frame's mel power normalised to
  sum to 1 over the ``n_mels`` bins: 0 when all energy is in one bin, log2(n_mels) when spread evenly.
* ``mfcc_i``: mean over frames of the MFCCs (log mel energies, orthonormal DCT-II; same code as the
  ``mfcc`` extractor).

Frames that are digitally silent (no energy at all) are left out of every mean and std: their centroid
and entropy are undefined. ``extended=True`` appends MFCC stds, delta-MFCC means and stds, spectral
rolloff/flatness/bandwidth means and stds, spectral contrast band means and zero-crossing-rate mean and
std (librosa's definitions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.fft

from audios.errors import ConfigError
from audios.features.base import check_batch, positive
from audios.features.frames import deltas, mel_filterbank, power_spectrogram

# A frame whose total power is below this carries no signal (exact zeros, e.g. padding around a clip).
SILENT_FRAME_POWER = 1e-12


@dataclass(frozen=True)
class SpectralConfig:
    """Analysis settings of the spectral summary (samples at ``sample_rate``)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    n_mels: int = 40
    n_mfcc: int = 13
    log_floor: float = 1e-10
    extended: bool = False
    rolloff_percent: float = 0.85
    # Spectral contrast: octave bands from contrast_fmin_hz; the top band edge must stay below Nyquist.
    contrast_bands: int = 5
    contrast_fmin_hz: float = 200.0

    def __post_init__(self) -> None:
        positive("SpectralConfig", sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.win_length,
                 hop_length=self.hop_length, n_mels=self.n_mels, n_mfcc=self.n_mfcc, log_floor=self.log_floor,
                 contrast_bands=self.contrast_bands, contrast_fmin_hz=self.contrast_fmin_hz)
        if self.win_length > self.n_fft:
            raise ConfigError(f"SpectralConfig.win_length={self.win_length} exceeds n_fft={self.n_fft}")
        if self.n_mfcc > self.n_mels:
            raise ConfigError(f"SpectralConfig.n_mfcc={self.n_mfcc} exceeds n_mels={self.n_mels}")
        if not 0 < self.rolloff_percent < 1:
            raise ConfigError(f"SpectralConfig.rolloff_percent={self.rolloff_percent} must be in (0, 1)")
        if self.contrast_fmin_hz * 2**self.contrast_bands >= self.sample_rate / 2:
            raise ConfigError(
                f"SpectralConfig: contrast_fmin_hz * 2**contrast_bands = "
                f"{self.contrast_fmin_hz * 2 ** self.contrast_bands:.0f} Hz must stay below Nyquist "
                f"({self.sample_rate / 2:.0f} Hz)"
            )


class SpectralExtractor:
    """Spectral centroid, mel-bin entropy and MFCC means (and, extended, more summaries): one vector each."""

    name: ClassVar[str] = "spectral"
    kind: ClassVar[str] = "vector"
    version: ClassVar[int] = 1
    Config = SpectralConfig

    def __init__(self, config: SpectralConfig = SpectralConfig()) -> None:
        self.config = config
        c = config
        self._mel = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, 0.0, c.sample_rate / 2)
        self._freqs_hz = np.linspace(0.0, c.sample_rate / 2, c.n_fft // 2 + 1)

    @property
    def columns(self) -> tuple[str, ...]:
        n = self.config.n_mfcc
        cols = ["centroid", "entropy", *(f"mfcc_{i}" for i in range(n))]
        if self.config.extended:
            cols += [f"mfcc_std_{i}" for i in range(n)]
            cols += [f"dmfcc_mean_{i}" for i in range(n)]
            cols += [f"dmfcc_std_{i}" for i in range(n)]
            for measure in ("rolloff", "flatness", "bandwidth"):
                cols += [f"{measure}_mean", f"{measure}_std"]
            cols += [f"contrast_{i}" for i in range(self.config.contrast_bands + 1)]
            cols += ["zcr_mean", "zcr_std"]
        return tuple(cols)

    def extract(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Mono float32 signals at ``config.sample_rate`` -> one float64 vector of ``len(columns)`` each."""
        return [self._one(x) for x in check_batch(batch)]

    def _one(self, x: np.ndarray) -> np.ndarray:
        c = self.config
        power = power_spectrogram(x, c.n_fft, c.win_length, c.hop_length)  # (frames, bins)
        active = power.sum(axis=1) > SILENT_FRAME_POWER
        power = power[active]
        magnitude = np.sqrt(power)
        centroid = (magnitude @ self._freqs_hz) / magnitude.sum(axis=1)
        mel = power @ self._mel.T  # (frames, n_mels)
        p = mel / np.maximum(mel.sum(axis=1, keepdims=True), np.finfo(float).tiny)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.sum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)
        mfcc = scipy.fft.dct(np.log(mel + c.log_floor), type=2, norm="ortho", axis=1)[:, :c.n_mfcc]
        parts = [[centroid.mean(), entropy.mean()], mfcc.mean(axis=0)]
        if c.extended:
            parts += self._extended(x, magnitude, mfcc, active)
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])

    def _extended(self, x: np.ndarray, magnitude: np.ndarray, mfcc: np.ndarray, active: np.ndarray) -> list:
        import librosa

        c = self.config
        s = magnitude.T  # librosa wants (bins, frames)
        d = deltas(mfcc)
        rolloff = librosa.feature.spectral_rolloff(
            S=s, sr=c.sample_rate, n_fft=c.n_fft, roll_percent=c.rolloff_percent
        )[0]
        flatness = librosa.feature.spectral_flatness(S=s)[0]
        bandwidth = librosa.feature.spectral_bandwidth(S=s, sr=c.sample_rate, n_fft=c.n_fft)[0]
        contrast = librosa.feature.spectral_contrast(
            S=s, sr=c.sample_rate, n_fft=c.n_fft, n_bands=c.contrast_bands, fmin=c.contrast_fmin_hz
        )
        # Same framing as power_spectrogram (centred, zero padded), so the frame mask lines up.
        zcr = librosa.feature.zero_crossing_rate(x, frame_length=c.n_fft, hop_length=c.hop_length, center=True)[0]
        zcr = zcr[active]
        return [
            mfcc.std(axis=0), d.mean(axis=0), d.std(axis=0),
            [rolloff.mean(), rolloff.std()], [flatness.mean(), flatness.std()], [bandwidth.mean(), bandwidth.std()],
            contrast.mean(axis=1), [zcr.mean(), zcr.std()],
        ]
