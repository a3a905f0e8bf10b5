"""Augmentations: each one's claimed effect measured on generated audio, lengths, dtypes and seeding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import signal

from audios.errors import ConfigError
from audios.train.augment import (
    AugmentConfig,
    add_noise,
    apply_gain,
    augment_waveform,
    change_speed,
    codec_round_trip,
    pitch_shift,
    random_notch_filter,
    rawboost_convolutive,
    rawboost_impulsive,
    reverberate,
    room_impulse_response,
    telephone,
    time_stretch,
)
from conftest import speechlike, tone

SR = 16000


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _peak_hz(x: np.ndarray, sample_rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sample_rate)[np.argmax(spectrum)])


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def _check(y: np.ndarray, n: int | None) -> None:
    assert y.dtype == np.float32 and y.ndim == 1 and np.isfinite(y).all()
    if n is not None:
        assert y.size == n


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_noise_reaches_the_requested_snr(snr_db: float) -> None:
    x = speechlike(1.0, seed=1)
    y = add_noise(x, snr_db, _rng())
    _check(y, x.size)
    measured = 10 * np.log10(_power(x) / _power(y.astype(np.float64) - x))
    assert abs(measured - snr_db) < 0.5


@pytest.mark.parametrize("gain_db", [-6.0, 0.0, 3.5])
def test_gain_is_exact_in_db(gain_db: float) -> None:
    x = speechlike(0.5)
    y = apply_gain(x, gain_db)
    _check(y, x.size)
    assert 10 * np.log10(_power(y) / _power(x)) == pytest.approx(gain_db, abs=1e-4)


def test_telephone_removes_energy_above_4_khz() -> None:
    x = _rng(3).standard_normal(SR).astype(np.float32) * 0.1  # white: half its energy lies above 4 kHz
    y = telephone(x, SR)
    _check(y, x.size)
    f, p_in = signal.welch(x, SR, nperseg=1024)
    _, p_out = signal.welch(y, SR, nperseg=1024)
    above, band = f > 4000, (f > 500) & (f < 3000)
    assert p_in[above].sum() / p_in.sum() > 0.4
    assert p_out[above].sum() / p_out.sum() < 1e-3
    assert np.mean(p_out[band]) > 0.5 * np.mean(p_in[band])  # the speech band passes


def test_speed_changes_length_and_pitch_together() -> None:
    x = tone(440.0, 1.0)
    y = change_speed(x, SR, 1.1)
    _check(y, None)
    assert abs(y.size - x.size / 1.1) <= 2
    assert _peak_hz(y) == pytest.approx(440 * 1.1, abs=3)


def test_time_stretch_changes_length_not_pitch() -> None:
    x = tone(440.0, 1.0)
    y = time_stretch(x, 1.25)
    _check(y, None)
    assert abs(y.size - x.size / 1.25) <= 0.01 * x.size
    assert _peak_hz(y) == pytest.approx(440, abs=5)


def test_pitch_shift_changes_pitch_not_length() -> None:
    x = tone(440.0, 1.0)
    y = pitch_shift(x, SR, 2.0)
    _check(y, x.size)
    assert _peak_hz(y) == pytest.approx(440 * 2 ** (2 / 12), abs=5)


@pytest.mark.parametrize("codec", ["mp3", "opus", "vorbis"])
def test_codec_round_trip_differs_but_correlates(codec: str) -> None:
    x = speechlike(1.0, seed=2)
    y = codec_round_trip(x, SR, codec)
    _check(y, x.size)
    assert np.max(np.abs(y - x)) > 1e-3  # lossy: not the input back
    assert np.corrcoef(x, y)[0, 1] > 0.9


def test_codec_round_trip_at_a_rate_opus_lacks() -> None:
    x = speechlike(0.5, sample_rate=22050, seed=2)
    y = codec_round_trip(x, 22050, "opus")
    _check(y, x.size)
    assert np.corrcoef(x, y)[0, 1] > 0.9


def test_room_impulse_response_decays_at_its_rt60() -> None:
    rt60 = 0.5
    rir = room_impulse_response(SR, rt60, _rng())
    assert rir[0] == 1.0 and rir.size == int(rt60 * SR)
    # Schroeder backward integration; the -5 to -25 dB slope extrapolated to 60 dB (T20) gives RT60.
    tail = rir[1:] ** 2
    edc = 10 * np.log10(np.cumsum(tail[::-1])[::-1] / tail.sum())
    t5, t25 = np.argmax(edc <= -5) / SR, np.argmax(edc <= -25) / SR
    assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.15)


def test_reverberation_lengthens_the_decay() -> None:
    burst = np.zeros(SR, dtype=np.float32)
    burst[:1600] = tone(300.0, 0.1)  # 100 ms tone, then silence
    dry_tail = _power(burst[2000:8000])
    short = reverberate(burst, SR, 0.2, _rng())
    long = reverberate(burst, SR, 0.8, _rng())
    _check(short, burst.size)
    assert np.max(np.abs(long)) == pytest.approx(np.max(np.abs(burst)), rel=1e-5)  # level kept
    assert dry_tail == 0.0
    assert _power(long[2000:8000]) > _power(short[2000:8000]) > 1e-6


def test_rawboost_impulsive_touches_only_the_chosen_fraction() -> None:
    x = speechlike(1.0, seed=4)
    y = rawboost_impulsive(x, _rng(), fraction=0.1)
    _check(y, x.size)
    changed = y != x
    assert 0.09 * x.size <= changed.sum() <= 0.1 * x.size
    assert np.all(np.abs(y - x) <= np.abs(x) + 1e-7)  # signal-dependent: never more than the sample itself


def test_random_notch_filter_passes_dc_and_notches_a_band() -> None:
    h = random_notch_filter(SR, _rng(5), n_bands=1, width_hz=(800.0, 1000.0), n_taps=(101, 101))
    f, response = signal.freqz(h, worN=2048, fs=SR)
    db = 20 * np.log10(np.abs(response) + 1e-12)
    assert abs(db[0]) < 0.5
    assert db.min() < -20


def test_rawboost_convolutive_keeps_peak_and_notches_white_noise() -> None:
    x = (_rng(6).standard_normal(SR) * 0.1).astype(np.float32)
    y = rawboost_convolutive(x, SR, _rng(7), n_orders=1, n_bands=3)
    _check(y, x.size)
    assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(x)), rel=1e-5)
    f, p = signal.welch(y, SR, nperseg=512)
    inside = (f > 50) & (f < 7000)
    assert 10 * np.log10(p[inside].min() / np.median(p[inside])) < -10  # a band was cut out
    # Non-linear orders add harmonics: a pure tone gains energy at other frequencies.
    t = tone(1000.0, 0.5)
    z = rawboost_convolutive(t, SR, _rng(8), n_orders=3, n_bands=1)
    f, p = signal.welch(z, SR, nperseg=1024)
    assert p[np.abs(f - 2000) < 30].max() > 1e-6 * p.max()


ALL_ON = AugmentConfig(**{name: True for name in ("noise", "reverb", "gain", "speed", "pitch", "stretch", "codec",
                                                   "telephone", "rawboost_convolutive", "rawboost_impulsive")},
                       **{f"{name}_p": 1.0 for name in ("noise", "reverb", "gain", "speed", "pitch", "stretch",
                                                        "codec", "telephone", "rawboost_convolutive",
                                                        "rawboost_impulsive")})


def test_augment_waveform_is_deterministic_given_a_seed() -> None:
    x = speechlike(0.6, seed=9)
    a = augment_waveform(x, SR, ALL_ON, _rng(11))
    b = augment_waveform(x, SR, ALL_ON, _rng(11))
    c = augment_waveform(x, SR, ALL_ON, _rng(12))
    _check(a, None)
    np.testing.assert_array_equal(a, b)
    assert a.size != c.size or not np.array_equal(a, c)


def test_augment_waveform_with_everything_off_is_identity() -> None:
    x = speechlike(0.3)
    np.testing.assert_array_equal(augment_waveform(x, SR, AugmentConfig(), _rng()), x)


def test_switching_one_augmentation_leaves_the_others_draws_alone() -> None:
    x = speechlike(0.3)
    gain_only = AugmentConfig(gain=True, gain_p=1.0)
    with_off_noise = dataclasses.replace(gain_only, noise_p=1.0)  # noise still switched off
    np.testing.assert_array_equal(augment_waveform(x, SR, gain_only, _rng(3)),
                                  augment_waveform(x, SR, with_off_noise, _rng(3)))


@pytest.mark.parametrize("bad", [{"noise_p": 1.5}, {"gain_db": (3.0, -3.0)}, {"codecs": ("flac",)},
                                 {"speed_factor": (0.1, 1.0)}, {"rawboost_impulsive_fraction": 0.0}])
def test_augment_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ConfigError):
        AugmentConfig(**bad)
