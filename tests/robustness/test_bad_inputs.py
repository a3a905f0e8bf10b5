"""Bad audio inputs through manifest, prepare, features, detect and the service.

Every input must end in a typed, specific error (or a recorded skip in batch jobs), or in a normal
result; never in another exception, a hang or a crash of the batch. The table ``EXPECTED`` is what
RELIABILITY.md reports.
"""

from __future__ import annotations

import os
import resource
import struct
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from audios.audio import AudioConfig, load_audio
from audios.detect import DetectConfig, detect_path
from audios.errors import AudioError, AudiosError
from audios.features import get_extractor
from audios.features.extract import extract_features
from audios.manifest import build_manifest
from audios.manifest.metadata import measure_recording
from audios.prepare import PrepareConfig, prepare

RNG = np.random.default_rng(0)
SR = 16000


def speech(n: int, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * 150 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * RNG.standard_normal(n)
    x = x.astype(np.float32)
    return np.stack([x * (0.5 + 0.1 * c) for c in range(channels)], axis=1) if channels > 1 else x


def lying_wav(path: Path, claimed_frames: int, real_frames: int) -> Path:
    """16-bit mono wav whose RIFF/data sizes claim ``claimed_frames`` while ``real_frames`` follow."""
    pcm = (speech(real_frames) * 32767).astype("<i2").tobytes()
    data_bytes = claimed_frames * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, SR, SR * 2, 2, 16) + b"data" + struct.pack("<I", data_bytes)
    path.write_bytes(header + pcm)
    return path


# name -> what load_audio/detect must give: an AudioError kind, or "ok".
EXPECTED = {
    "zero-byte.wav": "empty",
    "random-bytes.wav": "unreadable",
    "random-bytes.flac": "unreadable",
    "random-bytes.mp3": "unreadable",
    "truncated.flac": "ok|unreadable",  # a cut FLAC frame: libsndfile either stops at the cut or reports it
    "truncated.mp3": "ok|unreadable",
    "header-claims-10s-holds-1s.wav": "ok",  # decoded length wins over the header
    "header-claims-0.1s-holds-1s.wav": "ok|unreadable",
    "nan.wav": "non-finite",
    "inf.wav": "non-finite",
    "all-zero.wav": "silent",
    "one-sample.wav": "too-short",
    "8khz.wav": "ok",
    "96khz.flac": "ok",
    "six-channels.wav": "ok",
    "ünï cödé 音声 with spaces.wav": "ok",
    "symlink-loop.wav": "unreadable",
    "unreadable-permissions.wav": "unreadable",
}


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad") / "corpus" / "spoof" / "mixed"
    d.mkdir(parents=True)
    (d / "zero-byte.wav").write_bytes(b"")
    for ext in ("wav", "flac", "mp3"):
        (d / f"random-bytes.{ext}").write_bytes(RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    sf.write(d / "full.flac", speech(2 * SR), SR)
    blob = (d / "full.flac").read_bytes()
    (d / "truncated.flac").write_bytes(blob[: len(blob) // 2])
    (d / "full.flac").unlink()
    try:
        sf.write(d / "full.mp3", speech(2 * SR), SR, format="MP3")
        blob = (d / "full.mp3").read_bytes()
        (d / "truncated.mp3").write_bytes(blob[: len(blob) // 2])
        (d / "full.mp3").unlink()
    except (sf.LibsndfileError, ValueError, TypeError):
        import av  # libsndfile without MP3: let FFmpeg write it

        with av.open(str(d / "truncated.mp3"), "w") as out:
            stream = out.add_stream("mp3", rate=SR)
            frame = av.AudioFrame.from_ndarray(speech(2 * SR)[None, :], format="flt", layout="mono")
            frame.sample_rate = SR
            for p in stream.encode(frame):
                out.mux(p)
            for p in stream.encode(None):
                out.mux(p)
        blob = (d / "truncated.mp3").read_bytes()
        (d / "truncated.mp3").write_bytes(blob[: len(blob) // 2])
    lying_wav(d / "header-claims-10s-holds-1s.wav", 10 * SR, SR)
    lying_wav(d / "header-claims-0.1s-holds-1s.wav", SR // 10, SR)
    x = speech(SR)
    x[100] = np.nan
    sf.write(d / "nan.wav", x, SR, subtype="FLOAT")
    x = speech(SR)
    x[100] = np.inf
    sf.write(d / "inf.wav", x, SR, subtype="FLOAT")
    sf.write(d / "all-zero.wav", np.zeros(SR, dtype=np.float32), SR)
    sf.write(d / "one-sample.wav", np.array([0.5], dtype=np.float32), SR)
    sf.write(d / "8khz.wav", speech(8000, 8000), 8000)
    sf.write(d / "96khz.flac", speech(96000, 96000), 96000)
    sf.write(d / "six-channels.wav", speech(SR, channels=6), SR)
    sf.write(d / "ünï cödé 音声 with spaces.wav", speech(SR), SR)
    os.symlink("symlink-loop.wav", d / "symlink-loop.wav")  # points at itself: ELOOP on open
    os.symlink(".", d / "loop-dir")  # a folder loop the corpus walk must not follow forever
    p = d / "unreadable-permissions.wav"
    sf.write(p, speech(SR), SR)
    p.chmod(0)
    # A good file, so batch jobs have something to finish.
    good = d.parent.parent / "bonafide" / "human"
    good.mkdir(parents=True)
    for i in range(3):
        sf.write(good / f"good{i}.wav", speech(SR + 800 * i), SR)
    return d


def _root() -> bool:
    return os.geteuid() == 0


def kind_of(fn) -> str:
    try:
        fn()
    except AudioError as exc:
        assert exc.reason and exc.path, "a typed error must name the file and say why"
        return exc.kind
    return "ok"


def allowed(name: str) -> set[str]:
    want = set(EXPECTED[name].split("|"))
    if name == "unreadable-permissions.wav" and _root():
        want.add("ok")  # root reads files whatever their mode; the check is only meaningful for other users
    return want


class FakeDetector:
    """Scores a window by its RMS; enough to exercise windowing, streaming and aggregation."""

    name = "fake"
    sample_rate = SR
    window_s = 1.0
    hop_s = 1.0
    threshold = 0.0

    def score_signals(self, signals: list[np.ndarray]) -> np.ndarray:
        return np.array([float(np.sqrt(np.mean(np.square(s, dtype=np.float64)))) - 0.1 for s in signals])

    def info(self) -> dict:
        return {"name": self.name, "version": "test", "threshold": self.threshold, "sample_rate": SR,
                "window_s": 1.0, "hop_s": 1.0}


def test_load_audio_and_detect_give_the_expected_typed_outcome(bad_dir: Path) -> None:
    detector = FakeDetector()
    for name in EXPECTED:
        path = bad_dir / name
        for label, fn in (("load_audio", lambda: load_audio(path)),
                          ("detect", lambda: detect_path(detector, path)),
                          ("measure", lambda: measure_recording(path))):
            got = kind_of(fn)
            want = allowed(name)
            if label == "measure" and name in ("all-zero.wav", "one-sample.wav"):
                want = want | {"ok"}  # the manifest records silent and 1-sample files with their measurements
            assert got in want, f"{label}({name}) gave {got}, expected {want}"


def test_manifest_skips_and_records_every_bad_file_and_keeps_the_good_ones(bad_dir: Path) -> None:
    result = build_manifest(bad_dir.parent.parent, layout="folders")
    skipped = {Path(p).name: reason for p, reason in result.skipped}
    kept = set(result.table["path"].map(lambda p: Path(p).name))
    assert {"good0.wav", "good1.wav", "good2.wav"} <= kept
    for name in EXPECTED:
        if name in kept:
            assert "ok" in allowed(name) or name in ("all-zero.wav", "one-sample.wav"), name
            continue
        if name == "symlink-loop.wav" and name not in skipped:
            continue  # the layout's listing may leave a dangling link out altogether
        assert name in skipped, f"{name} neither kept nor recorded as skipped"
        assert skipped[name].split(":")[0] in allowed(name), (name, skipped[name])
    assert not any("loop-dir" in p for p in result.table["path"])


def _manifest_of_everything(bad_dir: Path) -> pd.DataFrame:
    names = sorted(EXPECTED) + ["../../bonafide/human/good0.wav", "../../bonafide/human/good1.wav"]
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(names))], "path": names,
                         "label": ["spoof"] * len(EXPECTED) + ["bonafide"] * 2, "root": str(bad_dir)})


def test_prepare_finishes_the_batch_and_lists_each_bad_file(bad_dir: Path, tmp_path: Path) -> None:
    table = _manifest_of_everything(bad_dir)
    report = prepare(table, tmp_path / "out", PrepareConfig(normalize="rms"))
    done = set(report.table["parent_id"]) if "parent_id" in report.table else set(report.table["id"])
    reasons = dict(report.skipped)
    assert {"r18", "r19"} <= done  # the good files
    for i, name in enumerate(sorted(EXPECTED)):
        if name == "one-sample.wav":
            continue  # see test_prepare_refuses_a_one_sample_file (a known bug)
        if f"r{i}" in done:
            assert "ok" in allowed(name), f"prepare accepted {name}"
        else:
            assert name in reasons and reasons[name].strip(), f"prepare dropped {name} without a reason"
    skipped_csv = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert len(skipped_csv) == len(report.skipped)


def test_prepare_refuses_a_one_sample_file(bad_dir: Path, tmp_path: Path) -> None:
    table = pd.DataFrame({"id": ["one"], "path": ["one-sample.wav"], "label": ["spoof"], "root": [str(bad_dir)]})
    report = prepare(table, tmp_path / "out", PrepareConfig())
    assert report.table.empty and "too-short" in report.skipped[0][1]


def test_features_finish_the_batch_and_record_skips(bad_dir: Path, tmp_path: Path) -> None:
    table = _manifest_of_everything(bad_dir)
    out = tmp_path / "f.parquet"
    report = extract_features(table, get_extractor("spectral"), out, cache_dir=tmp_path / "cache")
    assert report.n_rows >= 2 + sum(1 for n in EXPECTED if EXPECTED[n] == "ok") - (1 if _root() else 0) - 1
    skipped = pd.read_csv(out.with_suffix(".skipped.csv"))
    assert len(skipped) == report.n_skipped and skipped["reason"].str.len().min() > 0
    frame = pd.read_parquet(out)
    values = frame.select_dtypes("number").to_numpy()
    assert np.isfinite(values).all()


def test_service_answers_422_or_200_never_500(bad_dir: Path) -> None:
    try:
        from fastapi.testclient import TestClient

        from audios.serve.app import create_app
    except ImportError as exc:
        pytest.skip(f"the service is not importable here ({exc})")
    client = TestClient(create_app(FakeDetector()))
    for name in EXPECTED:
        path = bad_dir / name
        try:
            body = path.read_bytes()
        except OSError:
            continue  # a symlink loop / unreadable file cannot be uploaded at all: nothing reaches the service
        r = client.post("/v1/detect", content=body, headers={"content-type": "application/octet-stream"})
        want = {200} if allowed(name) == {"ok"} else {200, 422}
        assert r.status_code in want, (name, r.status_code, r.text)
        if r.status_code == 422:
            assert r.json()["error"]


def _write_long_wav(path: Path, seconds: int, sr: int = 8000) -> Path:
    """A 16-bit mono wav written minute by minute: the file is never in memory whole."""
    block = (speech(60 * sr, sr) * 32767).astype(np.int16)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for _ in range(seconds // 60):
            f.write(block)
    return path


def test_three_hour_file_is_streamed_with_bounded_memory(tmp_path: Path) -> None:
    """A real 3-hour 8 kHz file (173 MB) through the manifest's measurement and detect; peak traced memory
    stays far below the 691 MB that 3 h of 16 kHz float32 would take if loaded whole."""
    path = _write_long_wav(tmp_path / "three hours.wav", 3 * 3600)
    assert path.stat().st_size > 170_000_000
    with pytest.raises(AudiosError, match="cap"):
        load_audio(path)  # whole-file loading refuses it (2 h cap) and says to stream
    tracemalloc.start()
    t0 = time.perf_counter()
    meta = measure_recording(path)
    _, peak_measure = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    result = detect_path(FakeDetector(), path, DetectConfig(window_s=30.0, hop_s=30.0, max_duration_s=4 * 3600))
    _, peak_detect = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    seconds = time.perf_counter() - t0
    assert meta["duration_s"] == pytest.approx(3 * 3600)
    assert result["duration_s"] == pytest.approx(3 * 3600, abs=1)
    assert len(result["windows"]) == 360
    assert peak_measure < 100e6 and peak_detect < 100e6, (peak_measure, peak_detect)
    sys.stderr.write(f"3-hour file: measure peak {peak_measure / 1e6:.1f} MB, detect peak {peak_detect / 1e6:.1f} MB, "
                     f"{seconds:.1f} s\n")
