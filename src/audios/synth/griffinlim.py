"""Griffin-Lim phase reconstruction (Griffin & Lim, IEEE TASSP 32(2), 1984) from a magnitude STFT or mel spectrogram.

The phase is thrown away and re-estimated by ``n_iter`` iterations of the fast (momentum 0.99)
variant of Perraudin et al. (WASPAA 2013) as implemented by librosa, from a seeded random start. Mel
mode first maps an ``n_mels`` mel magnitude back to a linear magnitude by non-negative least squares,
which smears the fine harmonic structure, as a mel-based TTS front end would. Frames are set in
seconds so the analysis is the same at every sample rate: 64 ms windows with a 16 ms hop (1024/256
samples at 16 kHz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audios.errors import ConfigError
from audios.synth.base import Method, SynthContext, fit_length, register

REPRESENTATIONS = ("stft", "mel")


@dataclass(frozen=True)
class GriffinLimConfig:
    """Which magnitude is inverted, how finely, and how many iterations."""

    representation: str = "stft"
    n_iter: int = 32
    win_s: float = 0.064
    hop_s: float = 0.016
    n_mels: int = 80

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ConfigError(f"griffinlim.representation={self.representation!r} must be one of {REPRESENTATIONS}")
        if not 1 <= self.n_iter <= 1000:
            raise ConfigError(f"griffinlim.n_iter={self.n_iter} must be in [1, 1000]")
        if not 0.004 <= self.win_s <= 0.5:
            raise ConfigError(f"griffinlim.win_s={self.win_s} must be in [0.004, 0.5] s")
        if not 0 < self.hop_s <= self.win_s / 2:
            raise ConfigError(f"griffinlim.hop_s={self.hop_s} must be positive and at most half of win_s={self.win_s} "
                              "(less overlap cannot constrain the phase)")
        if not 8 <= self.n_mels <= 512:
            raise ConfigError(f"griffinlim.n_mels={self.n_mels} must be in [8, 512]")

    def generator(self) -> str:
        rep = "stft" if self.representation == "stft" else f"mel{self.n_mels}" if self.n_mels != 80 else "mel"
        return f"griffinlim-{rep}-{self.n_iter}it"

    def frames(self, sample_rate: int) -> tuple[int, int, int]:
        """(n_fft, win_length, hop_length) in samples at ``sample_rate``; n_fft is the next power of two."""
        win = max(16, int(round(self.win_s * sample_rate)))
        hop = max(1, int(round(self.hop_s * sample_rate)))
        return 1 << (win - 1).bit_length(), win, hop


class GriffinLimSynthesizer:
    level_mode = "rms"

    def __init__(self, config: GriffinLimConfig) -> None:
        self.config = config

    def __call__(self, x: np.ndarray, sample_rate: int, context: SynthContext) -> np.ndarray:
        import librosa

        cfg = self.config
        n_fft, win, hop = cfg.frames(sample_rate)
        mag = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", center=True))
        if cfg.representation == "mel":
            mel = librosa.feature.melspectrogram(S=mag, sr=sample_rate, n_fft=n_fft, n_mels=cfg.n_mels, power=1.0)
            mag = librosa.feature.inverse.mel_to_stft(mel, sr=sample_rate, n_fft=n_fft, power=1.0)
        rng = np.random.default_rng(context.seed)
        y = librosa.griffinlim(mag, n_iter=cfg.n_iter, hop_length=hop, win_length=win, n_fft=n_fft, window="hann",
                               center=True, length=x.size, momentum=0.99, init="random", random_state=rng)
        return fit_length(y.astype(np.float32), x.size)


METHOD = register(Method("griffinlim", GriffinLimConfig, GriffinLimSynthesizer,
                         "Griffin-Lim phase reconstruction from a magnitude STFT or mel spectrogram (librosa)"))
