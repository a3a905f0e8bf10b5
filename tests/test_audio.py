"""Audio I/O: every format decodes to mono float32 at the target rate; bad files raise typed errors."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from audios.audio import AudioConfig, audio_info, load_audio, stream_audio, write_audio_atomic
from audios.errors import (
    AudioReadError,
    ConfigError,
    EmptyAudioError,
    NonFiniteError,
    SilentAudioError,
    TooLongError,
    TooShortError,
)
from tests.conftest import tone, write


def write_aac(path: Path, x: np.ndarray, sample_rate: int, container: str = "mp4") -> Path:
    """Encode mono float audio as AAC in an mp4/m4a container with PyAV."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("aac", rate=sample_rate, layout="mono")
        frame_size = 1024
        pts = 0
        for start in range(0, len(x), frame_size):
            chunk = x[start:start + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = pts
            pts += len(chunk)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def dominant_freq(x: np.ndarray, sample_rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sample_rate / len(x))


@pytest.mark.parametrize(("suffix", "kwargs"), [
    (".wav", {}), (".flac", {}), (".ogg", {"format": "OGG", "subtype": "VORBIS"}),
    (".mp3", {"format": "MP3"}), (".opus", {"format": "OGG", "subtype": "OPUS"}),
])
def test_formats_decode_to_target_rate(tmp_path, suffix, kwargs):
    sr = 48000 if suffix == ".opus" else 44100
    path = write(tmp_path / f"a{suffix}", tone(1000, 1.0, sr), sr, **kwargs)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) < 0.06 * 16000  # lossy codecs add priming samples
    assert abs(dominant_freq(x, 16000) - 1000) < 5


def test_m4a_through_pyav(tmp_path):
    path = write_aac(tmp_path / "a.m4a", tone(500, 1.0, 22050), 22050)
    info = audio_info(path)
    assert info.sample_rate == 22050 and info.format == "m4a"
    x = load_audio(path, AudioConfig(sample_rate=8000))
    assert abs(len(x) - 8000) < 0.1 * 8000
    assert abs(dominant_freq(x, 8000) - 500) < 5


def test_channel_policy(tmp_path):
    left = tone(300, 0.5, 16000)
    right = np.zeros_like(left)
    path = write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000)
    first = load_audio(path, AudioConfig(channel_policy="first"))
    mean = load_audio(path, AudioConfig(channel_policy="mean"))
    np.testing.assert_allclose(first, left, atol=1e-4)
    np.testing.assert_allclose(mean, left / 2, atol=1e-4)


def test_stream_equals_whole_load(tmp_path):
    x = tone(700, 7.3, 44100, amplitude=0.3)
    path = write(tmp_path / "long.flac", x, 44100)
    whole = load_audio(path)
    streamed = np.concatenate(list(stream_audio(path, block_s=1.0)))
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(whole), len(streamed))
    # Streaming resampler and one-shot resampler agree away from the edges.
    np.testing.assert_allclose(streamed[1000:n - 1000], whole[1000:n - 1000], atol=2e-3)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="empty.wav"):
        load_audio(path)


def test_zero_frame_wav(tmp_path):
    path = write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(EmptyAudioError):
        load_audio(path)


def test_random_bytes_are_unreadable(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioReadError) as err:
        load_audio(path)
    assert str(path) in str(err.value) and err.value.reason


def test_truncated_flac(tmp_path):
    path = write(tmp_path / "t.flac", tone(440, 3.0) + 0.01 * np.random.default_rng(0).standard_normal(48000).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    # A truncated file either decodes to its readable prefix or raises a typed read error; never garbage.
    try:
        x = load_audio(path)
    except AudioReadError:
        return
    assert 0 < len(x) < 48000


def test_silent(tmp_path):
    path = write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32))
    with pytest.raises(SilentAudioError, match="silent"):
        load_audio(path)


def test_too_short(tmp_path):
    path = write(tmp_path / "one.wav", np.array([0.5], dtype=np.float32))
    with pytest.raises(TooShortError):
        load_audio(path)


def test_too_long(tmp_path):
    path = write(tmp_path / "long.wav", tone(440, 3.0))
    with pytest.raises(TooLongError):
        load_audio(path, AudioConfig(max_duration_s=2.0))


def test_non_finite(tmp_path):
    x = tone(440, 0.5)
    x[100] = np.nan
    path = write(tmp_path / "nan.wav", x, subtype="FLOAT")
    with pytest.raises(NonFiniteError):
        load_audio(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(AudioReadError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioReadError, match="directory"):
        load_audio(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_permissions(tmp_path):
    path = write(tmp_path / "locked.wav", tone())
    path.chmod(0)
    with pytest.raises(AudioReadError, match="permission"):
        load_audio(path)


def test_config_validation():
    with pytest.raises(ConfigError, match="channel_policy"):
        AudioConfig(channel_policy="left")
    with pytest.raises(ConfigError, match="sample_rate"):
        AudioConfig(sample_rate=0)


def test_atomic_write_leaves_no_temp(tmp_path):
    out = write_audio_atomic(tmp_path / "sub" / "x.flac", tone(), 16000)
    assert out.exists() and sf.info(str(out)).samplerate == 16000
    assert not list(tmp_path.rglob("*.part"))
