"""On-the-fly waveform augmentation for training: each one switchable, seeded, numpy/scipy only.

Every function takes a mono float32 waveform ``(samples,)`` and returns float32; only the speed and
time-stretch changes alter the length. Randomness comes in as an explicit ``np.random.Generator``
(the dataset derives one per example from ``(seed, epoch, index)``), never from global state.

RawBoost-style noise follows the idea of Tak et al. 2022, "RawBoost: A Raw Data Boosting and Augmentation
Method applied to Automatic Speaker Verification Anti-Spoofing" (ICASSP): (1) linear and non-linear
convolutive noise from random multi-band notch filters applied to powers of the signal, and (2) impulsive
signal-dependent additive noise on a random fraction of samples. The code here is written from that
description, not from the authors' implementation.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import librosa
import numpy as np
import soundfile as sf
import soxr
from scipy import signal

from audios.errors import ConfigError

log = logging.getLogger(__name__)

CODECS = ("mp3", "opus", "vorbis")
# soundfile (libsndfile) names of each codec's container and subtype; all encode and decode in memory.
_CODEC_FORMATS = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"), "vorbis": ("OGG", "VORBIS")}
# Opus only runs at these rates; other rates go through 16 kHz and back.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# Narrow-band telephone channel (ITU-T G.712 pass band) and its sample rate.
TELEPHONE_BAND_HZ = (300.0, 3400.0)
TELEPHONE_RATE = 8000


def _range(value: tuple[float, ...], name: str, low: float | None = None, high: float | None = None) -> None:
    if len(value) != 2 or value[0] > value[1]:
        raise ConfigError(f"AugmentConfig.{name}: expected (min, max) with min <= max, got {list(value)}")
    if low is not None and value[0] < low:
        raise ConfigError(f"AugmentConfig.{name}: values must be >= {low}, got {list(value)}")
    if high is not None and value[1] > high:
        raise ConfigError(f"AugmentConfig.{name}: values must be <= {high}, got {list(value)}")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, how often (``*_p``, a probability per example) and over which ranges.

    All are off by default. Ranges are (min, max) drawn uniformly; ``codecs`` is drawn from uniformly.
    Order of application: speed, pitch, stretch, reverb, rawboost_convolutive, rawboost_impulsive,
    telephone, codec, noise, gain (channel effects after the source, level last).
    """

    noise: bool = False
    noise_p: float = 0.5
    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    reverb: bool = False
    reverb_p: float = 0.3
    reverb_rt60_s: tuple[float, float] = (0.15, 0.8)
    gain: bool = False
    gain_p: float = 0.5
    gain_db: tuple[float, float] = (-6.0, 6.0)
    speed: bool = False
    speed_p: float = 0.3
    speed_factor: tuple[float, float] = (0.9, 1.1)
    pitch: bool = False
    pitch_p: float = 0.3
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    stretch: bool = False
    stretch_p: float = 0.3
    stretch_rate: tuple[float, float] = (0.9, 1.1)
    codec: bool = False
    codec_p: float = 0.3
    codecs: tuple[str, ...] = ("mp3", "opus")
    telephone: bool = False
    telephone_p: float = 0.2
    rawboost_convolutive: bool = False
    rawboost_convolutive_p: float = 0.5
    rawboost_impulsive: bool = False
    rawboost_impulsive_p: float = 0.5
    rawboost_impulsive_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("noise_snr_db", "reverb_rt60_s", "gain_db", "speed_factor", "pitch_semitones", "stretch_rate",
                     "codecs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("noise", "reverb", "gain", "speed", "pitch", "stretch", "codec", "telephone",
                     "rawboost_convolutive", "rawboost_impulsive"):
            p = getattr(self, f"{name}_p")
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"AugmentConfig.{name}_p: a probability in [0, 1], got {p}")
        _range(self.noise_snr_db, "noise_snr_db")
        _range(self.reverb_rt60_s, "reverb_rt60_s", low=0.01, high=5.0)
        _range(self.gain_db, "gain_db")
        _range(self.speed_factor, "speed_factor", low=0.5, high=2.0)
        _range(self.pitch_semitones, "pitch_semitones", low=-12.0, high=12.0)
        _range(self.stretch_rate, "stretch_rate", low=0.5, high=2.0)
        bad = [c for c in self.codecs if c not in CODECS]
        if bad or not self.codecs:
            raise ConfigError(f"AugmentConfig.codecs: choose from {list(CODECS)}, got {list(self.codecs)}")
        if not 0.0 < self.rawboost_impulsive_fraction <= 1.0:
            raise ConfigError(f"AugmentConfig.rawboost_impulsive_fraction: must lie in (0, 1], got "
                              f"{self.rawboost_impulsive_fraction}")

    @property
    def any_enabled(self) -> bool:
        return any((self.noise, self.reverb, self.gain, self.speed, self.pitch, self.stretch, self.codec,
                    self.telephone, self.rawboost_convolutive, self.rawboost_impulsive))


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise scaled so that signal power / noise power is exactly ``snr_db``."""
    noise = rng.standard_normal(x.size)
    p_signal = float(np.mean(np.square(x, dtype=np.float64)))
    if p_signal == 0.0:
        return _f32(x)
    # Scale the drawn noise itself (not its expected power) so the realised SNR is the requested one.
    noise *= np.sqrt(p_signal / (10 ** (snr_db / 10)) / np.mean(noise**2))
    return _f32(x + noise)


def apply_gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    """Multiply by ``10 ** (gain_db / 20)``; no clipping (the models see floats)."""
    return _f32(x * np.float32(10 ** (gain_db / 20)))


def room_impulse_response(sample_rate: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: a unit direct path then exponentially decaying Gaussian noise.

    The envelope falls by 60 dB over ``rt60_s`` (amplitude ``exp(-6.91 t / rt60)``, since ln(1000) = 6.91);
    the tail starts 2.5 ms after the direct path (a first reflection) and lasts ``rt60_s``.
    """
    n = max(int(rt60_s * sample_rate), 2)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-np.log(1000.0) * t / rt60_s)
    tail[: int(0.0025 * sample_rate)] = 0.0
    # Tail energy a bit below the direct path's, as in a moderately damped room.
    tail *= 0.5 / np.sqrt(np.sum(tail**2) + 1e-12)
    tail[0] = 1.0
    return tail


def reverberate(x: np.ndarray, sample_rate: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with `room_impulse_response` and keep the input length (the tail past the end is cut)."""
    out = signal.fftconvolve(x.astype(np.float64), room_impulse_response(sample_rate, rt60_s, rng))[: x.size]
    # Keep the peak level: reverberation should not also act as a gain change.
    peak_in, peak_out = float(np.max(np.abs(x))), float(np.max(np.abs(out)))
    if peak_out > 0:
        out *= peak_in / peak_out
    return _f32(out)


def change_speed(x: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch together): length becomes ``len / factor``."""
    if factor <= 0:
        raise ConfigError(f"change_speed: factor must be positive, got {factor}")
    # Resampling to sr / factor and playing back at sr speeds up by `factor`.
    return _f32(soxr.resample(x, sample_rate * factor, sample_rate, quality="HQ"))


def time_stretch(x: np.ndarray, rate: float) -> np.ndarray:
    """Phase-vocoder tempo change keeping pitch: length becomes about ``len / rate``."""
    if rate <= 0:
        raise ConfigError(f"time_stretch: rate must be positive, got {rate}")
    return _f32(librosa.effects.time_stretch(x.astype(np.float32), rate=rate))


def pitch_shift(x: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping the length (librosa: time stretch, then resample)."""
    y = librosa.effects.pitch_shift(x.astype(np.float32), sr=sample_rate, n_steps=semitones, res_type="soxr_hq")
    return _f32(y)


def codec_round_trip(x: np.ndarray, sample_rate: int, codec: str) -> np.ndarray:
    """Encode with ``codec`` (mp3, opus, vorbis) in memory and decode again; same length and rate."""
    if codec not in _CODEC_FORMATS:
        raise ConfigError(f"codec_round_trip: unknown codec {codec!r}; known: {list(CODECS)}")
    fmt, subtype = _CODEC_FORMATS[codec]
    rate = sample_rate
    y = np.clip(x, -1.0, 1.0)  # lossy encoders take full-scale input
    if codec == "opus" and rate not in _OPUS_RATES:
        rate = 16000
        y = soxr.resample(y, sample_rate, rate, quality="HQ")
    buffer = io.BytesIO()
    sf.write(buffer, y, rate, format=fmt, subtype=subtype)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    if rate != sample_rate:
        decoded = soxr.resample(decoded, rate, sample_rate, quality="HQ")
    return _fit_length(decoded, x.size)


def telephone(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Narrow-band telephone channel: 300-3400 Hz band-pass, then down to 8 kHz and back up."""
    low, high = TELEPHONE_BAND_HZ
    high = min(high, 0.45 * sample_rate)
    sos = signal.butter(6, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    y = signal.sosfilt(sos, x.astype(np.float64))
    if sample_rate > TELEPHONE_RATE:
        y = soxr.resample(soxr.resample(y, sample_rate, TELEPHONE_RATE, quality="HQ"),
                          TELEPHONE_RATE, sample_rate, quality="HQ")
    return _fit_length(y, x.size)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to exactly ``n`` samples (codec and resampler edges differ by a few samples)."""
    if x.size >= n:
        return _f32(x[:n])
    return _f32(np.pad(x, (0, n - x.size)))


def random_notch_filter(sample_rate: int, rng: np.random.Generator, n_bands: int = 5,
                        width_hz: tuple[float, float] = (100.0, 1000.0),
                        n_taps: tuple[int, int] = (10, 100)) -> np.ndarray:
    """FIR taps that reject ``n_bands`` random bands (centres uniform over 20 Hz..0.45 sr, random widths)."""
    nyquist = sample_rate / 2
    edges: list[tuple[float, float]] = []
    for _ in range(n_bands):
        centre = rng.uniform(20.0, 0.9 * nyquist)
        width = rng.uniform(*width_hz)
        lo, hi = max(centre - width / 2, 1.0), min(centre + width / 2, nyquist - 1.0)
        if hi > lo:
            edges.append((lo, hi))
    taps = int(rng.integers(n_taps[0], n_taps[1] + 1)) | 1  # odd length: a type I band-stop design is allowed
    merged: list[tuple[float, float]] = []
    for lo, hi in sorted(edges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    if not merged:
        h = np.zeros(taps)
        h[taps // 2] = 1.0
        return h
    cutoffs = [f for band in merged for f in band]
    # pass_zero=True with cutoffs (lo1, hi1, lo2, hi2, ...) passes DC and stops inside each band.
    return signal.firwin(taps, cutoffs, pass_zero=True, fs=sample_rate)


def rawboost_convolutive(x: np.ndarray, sample_rate: int, rng: np.random.Generator, n_orders: int = 3,
                         n_bands: int = 5) -> np.ndarray:
    """RawBoost (1): sum over orders j of a random notch filter applied to ``x ** j``, peak-normalised.

    Order 1 is a linear convolutive channel; orders 2.. add non-linear distortion, each order a further
    10 dB below the previous one (our choice, keeping the linear term dominant). The output peak equals the
    input's.
    """
    peak = float(np.max(np.abs(x)))
    if peak == 0.0:
        return _f32(x)
    xn = x.astype(np.float64) / peak
    out = np.zeros_like(xn)
    for order in range(1, n_orders + 1):
        h = random_notch_filter(sample_rate, rng, n_bands=n_bands)
        gain = 10 ** (-10.0 * (order - 1) / 20)
        out += gain * signal.lfilter(h, [1.0], xn**order)
    out_peak = float(np.max(np.abs(out)))
    return _f32(out * (peak / out_peak)) if out_peak > 0 else _f32(x)


def rawboost_impulsive(x: np.ndarray, rng: np.random.Generator, fraction: float = 0.1,
                       strength: float = 1.0) -> np.ndarray:
    """RawBoost (2): on a random ``fraction`` of samples add ``x[n] * u[n]``, ``u`` uniform in ±``strength``.

    The noise is signal-dependent (zero where the signal is zero) and impulsive (isolated samples).
    """
    n_hit = int(round(fraction * x.size))
    idx = rng.choice(x.size, size=n_hit, replace=False)
    y = x.astype(np.float64).copy()
    y[idx] += x[idx] * rng.uniform(-strength, strength, size=n_hit)
    return _f32(y)


def augment_waveform(x: np.ndarray, sample_rate: int, config: AugmentConfig,
                     rng: np.random.Generator) -> np.ndarray:
    """Apply each enabled augmentation with its probability, in the order listed on `AugmentConfig`.

    (samples,) float32 -> (samples',) float32; the length changes only through speed and stretch.
    The same ``rng`` state always gives the same output.
    """
    y = _f32(x)
    c = config

    def hit(enabled: bool, p: float) -> bool:
        # Always draw, so switching one augmentation does not change the draws of the others.
        u = rng.random()
        return enabled and u < p

    if hit(c.speed, c.speed_p):
        y = change_speed(y, sample_rate, float(rng.uniform(*c.speed_factor)))
    if hit(c.pitch, c.pitch_p):
        y = pitch_shift(y, sample_rate, float(rng.uniform(*c.pitch_semitones)))
    if hit(c.stretch, c.stretch_p):
        y = time_stretch(y, float(rng.uniform(*c.stretch_rate)))
    if hit(c.reverb, c.reverb_p):
        y = reverberate(y, sample_rate, float(rng.uniform(*c.reverb_rt60_s)), rng)
    if hit(c.rawboost_convolutive, c.rawboost_convolutive_p):
        y = rawboost_convolutive(y, sample_rate, rng)
    if hit(c.rawboost_impulsive, c.rawboost_impulsive_p):
        y = rawboost_impulsive(y, rng, fraction=c.rawboost_impulsive_fraction)
    if hit(c.telephone, c.telephone_p):
        y = telephone(y, sample_rate)
    if hit(c.codec, c.codec_p):
        y = codec_round_trip(y, sample_rate, c.codecs[int(rng.integers(len(c.codecs)))])
    if hit(c.noise, c.noise_p):
        y = add_noise(y, float(rng.uniform(*c.noise_snr_db)), rng)
    if hit(c.gain, c.gain_p):
        y = apply_gain(y, float(rng.uniform(*c.gain_db)))
    return y
