"""Fuzz the loader and the service's upload path with hypothesis (bounded: max_examples and deadlines).

Every input must give a typed AudiosError or finite float32 audio: no other exception, no hang. The
counts of inputs tried are written to stderr and reported in RELIABILITY.md.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audios.audio import load_audio
from audios.errors import AudiosError

TRIED = {"random": 0, "mutated-wav": 0, "mutated-flac": 0, "service": 0}


def _valid(fmt: str) -> bytes:
    t = np.arange(8000) / 16000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000, format=fmt, subtype="PCM_16")
    return buf.getvalue()


WAV, FLAC = _valid("WAV"), _valid("FLAC")


def _check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        x = load_audio(path)
    except AudiosError:
        return
    assert x.dtype == np.float32 and x.ndim == 1 and np.isfinite(x).all()


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=4096), st.sampled_from([".wav", ".flac", ".mp3", ".ogg", ".m4a"]))
def test_random_bytes_with_an_audio_extension(tmp_path, data, ext) -> None:
    TRIED["random"] += 1
    _check(tmp_path / f"fuzz{ext}", data)


def _mutate(blob: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(blob)
    for pos, val in edits:
        b[pos % 64] = val  # the header and first frames, where parsers make their decisions
    return bytes(b[:cut] if cut else b)


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(1, len(WAV))))
def test_mutated_wav_headers(tmp_path, edits, cut) -> None:
    TRIED["mutated-wav"] += 1
    _check(tmp_path / "m.wav", _mutate(WAV, edits, cut))


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(1, len(FLAC))))
def test_mutated_flac_headers(tmp_path, edits, cut) -> None:
    TRIED["mutated-flac"] += 1
    _check(tmp_path / "m.flac", _mutate(FLAC, edits, cut))


class _Detector:
    name, sample_rate, window_s, hop_s, threshold = "fake", 16000, 1.0, 1.0, 0.0

    def score_signals(self, signals):
        return np.array([float(np.mean(np.abs(s))) for s in signals])

    def info(self):
        return {"name": self.name, "version": "test", "threshold": 0.0, "sample_rate": 16000}


@pytest.fixture(scope="module")
def client():
    try:
        from fastapi.testclient import TestClient

        from audios.serve.app import create_app
    except ImportError as exc:
        pytest.skip(f"the service is not importable here ({exc})")
    return TestClient(create_app(_Detector()))


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=2048),
                 st.builds(_mutate, st.just(WAV), st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)),
                                                           max_size=6), st.none())),
       st.sampled_from(["application/octet-stream", "audio/wav", "audio/flac", "text/plain", "multipart/form-data"]))
def test_service_upload_path(client, body, media) -> None:
    TRIED["service"] += 1
    r = client.post("/v1/detect", content=body, headers={"content-type": media})
    assert r.status_code in (200, 400, 413, 415, 422), (r.status_code, r.text)
    if r.status_code != 200:
        assert r.json().get("error")


def teardown_module(_module) -> None:
    sys.stderr.write(f"fuzz inputs tried: {TRIED} (total {sum(TRIED.values())})\n")
