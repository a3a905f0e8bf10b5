"""Per-recording measurements on signals whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from audios.errors import EmptyAudioError, NonFiniteError, SilentAudioError
from audios.manifest.metadata import measure_recording
from tests.conftest import tone, write


def test_sine_levels_and_edge_silence(tmp_path):
    sr = 16000
    x = np.concatenate([np.zeros(sr // 2), tone(440, 1.0, sr, amplitude=0.5), np.zeros(sr // 4)]).astype(np.float32)
    m = measure_recording(write(tmp_path / "a.wav", x, sr))
    assert m["sample_rate"] == sr and m["channels"] == 1 and m["format"] == "wav"
    assert m["duration_s"] == pytest.approx(1.75, abs=1e-6)
    assert m["peak"] == pytest.approx(0.5, abs=1e-3)
    # RMS of the whole file: sine RMS 0.5/sqrt(2) over 1 s of 1.75 s.
    expected = 20 * np.log10(0.5 / np.sqrt(2) * np.sqrt(1 / 1.75))
    assert m["rms_dbfs"] == pytest.approx(expected, abs=0.05)
    assert m["lead_silence_s"] == pytest.approx(0.5, abs=0.011)
    assert m["trail_silence_s"] == pytest.approx(0.25, abs=0.011)
    assert m["clipped_fraction"] == 0.0


def test_clipped_fraction(tmp_path):
    x = np.clip(tone(100, 1.0, amplitude=2.0), -1, 1)
    m = measure_recording(write(tmp_path / "c.wav", x, subtype="FLOAT"))
    expected = np.mean(np.abs(x) >= 0.999)
    assert m["clipped_fraction"] == pytest.approx(expected, abs=1e-6)
    assert m["clipped_fraction"] > 0.5


def test_hash_is_stable_across_containers_and_differs_for_other_content(tmp_path):
    # Integer samples, so both containers hold exactly the same PCM (float->PCM rounding differs by writer).
    x = np.round(tone(440, 0.5) * 32767).astype(np.int16)
    a = measure_recording(write(tmp_path / "a.wav", x, subtype="PCM_16"))
    b = measure_recording(write(tmp_path / "b.flac", x, subtype="PCM_16"))
    c = measure_recording(write(tmp_path / "c.wav", tone(441, 0.5), subtype="PCM_16"))
    assert a["sha256"] == b["sha256"]
    assert a["sha256"] != c["sha256"]


def test_multichannel_long_file_streams(tmp_path):
    sr = 8000
    x = np.stack([tone(200, 25.0, sr), tone(300, 25.0, sr)], axis=1)  # longer than one 10 s block
    m = measure_recording(write(tmp_path / "st.flac", x, sr))
    assert m["channels"] == 2 and m["duration_s"] == pytest.approx(25.0, abs=1e-3)


def test_bad_inputs(tmp_path):
    with pytest.raises(SilentAudioError):
        measure_recording(write(tmp_path / "s.wav", np.zeros(1600, dtype=np.float32)))
    with pytest.raises(EmptyAudioError):
        measure_recording(write(tmp_path / "e.wav", np.zeros(0, dtype=np.float32)))
    x = tone()
    x[5] = np.inf
    with pytest.raises(NonFiniteError, match="n.wav"):
        measure_recording(write(tmp_path / "n.wav", x, subtype="FLOAT"))
