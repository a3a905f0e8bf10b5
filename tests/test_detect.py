"""Detection: windows, aggregation, flagged regions, bad files, exit codes, JSON/CSV, released AASIST."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audios.cli import app
from audios.detect import DetectConfig, _windows, detect_path, detect_signal, expand_paths, load_detector
from audios.errors import ConfigError, EmptyAudioError, SilentAudioError
from tests.conftest import speechlike, tone, write


class ToneDetector:
    """Known answer: a window is 'fake' (score -3) when a 6 kHz tone dominates its top band, else 'real' (+3)."""

    name = "tone"
    sample_rate = 16000
    window_s = 1.0
    hop_s = 0.5
    threshold = 0.0

    def score_signals(self, signals):
        out = []
        for x in signals:
            spec = np.abs(np.fft.rfft(x))
            freqs = np.fft.rfftfreq(len(x), 1 / self.sample_rate)
            high = spec[(freqs > 5500) & (freqs < 6500)].sum()
            out.append(-3.0 if high > 0.2 * spec.sum() else 3.0)
        return np.array(out)

    def info(self):
        return {"name": self.name}


def test_window_bounds_cover_the_signal():
    assert _windows(10, 20, 5) == [(0, 10)]
    assert _windows(100, 40, 20) == [(0, 40), (20, 60), (40, 80), (60, 100)]
    assert _windows(105, 40, 20)[-1] == (65, 105)


def test_spliced_fake_region_is_flagged(tmp_path):
    sr = 16000
    real = speechlike(3.0, sr)
    fake = tone(6000, 2.0, sr, amplitude=0.5) + speechlike(2.0, sr, seed=1) * 0.2
    x = np.concatenate([real, fake, real]).astype(np.float32)
    path = write(tmp_path / "spliced.wav", x, sr)
    result = detect_path(ToneDetector(), path)
    assert result["duration_s"] == pytest.approx(8.0, abs=1e-3)
    assert len(result["windows"]) == 15
    (region,) = result["flagged_regions"]
    assert 2.0 <= region["start_s"] <= 3.0 and 5.0 <= region["end_s"] <= 6.0
    # Mean of window scores: most windows are real.
    assert result["decision"] == "real"
    assert detect_path(ToneDetector(), path, DetectConfig(aggregate="min"))["decision"] == "fake"


def test_streamed_windows_equal_in_memory_windows(tmp_path):
    x = np.concatenate([speechlike(2.3), tone(6000, 1.4, amplitude=0.4)]).astype(np.float32)
    path = write(tmp_path / "a.wav", x)
    a = detect_path(ToneDetector(), path)
    b = detect_signal(ToneDetector(), x, 16000, name=str(path))
    assert [w["start_s"] for w in a["windows"]] == [w["start_s"] for w in b["windows"]]
    assert [w["p_fake"] for w in a["windows"]] == pytest.approx([w["p_fake"] for w in b["windows"]])


def test_short_file_is_one_window_and_resampled(tmp_path):
    path = write(tmp_path / "short.wav", tone(6000, 0.4, 44100, amplitude=0.5), 44100)
    result = detect_path(ToneDetector(), path)
    assert len(result["windows"]) == 1 and result["decision"] == "fake"
    assert result["p_fake"] == pytest.approx(1 - 1 / (1 + np.exp(3.0)))


def test_bad_audio_raises_typed_errors(tmp_path):
    with pytest.raises(SilentAudioError):
        detect_path(ToneDetector(), write(tmp_path / "s.wav", np.zeros(16000, dtype=np.float32)))
    empty = tmp_path / "e.wav"
    empty.write_bytes(b"")
    with pytest.raises(EmptyAudioError):
        detect_path(ToneDetector(), empty)


def test_expand_paths(tmp_path):
    write(tmp_path / "d" / "a.wav", tone())
    write(tmp_path / "d" / "sub" / "b.flac", tone())
    (tmp_path / "d" / "notes.txt").write_text("x")
    found = expand_paths([str(tmp_path / "d"), str(tmp_path / "d" / "*.wav")])
    assert [p.name for p in found] == ["a.wav", "b.flac", "a.wav"]


def test_config_and_model_errors(tmp_path):
    with pytest.raises(ConfigError, match="aggregate"):
        DetectConfig(aggregate="max")
    with pytest.raises(ConfigError, match="no such file"):
        load_detector(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="unknown model kind"):
        load_detector("wav2vec=1")


@pytest.fixture
def classic_run(tmp_path) -> Path:
    """A real classic run trained on spectral features of generated audio (tones+speech vs speech)."""
    from audios.classic.train import TrainConfig, train_classic
    from audios.features.base import get_extractor
    from audios.features.extract import extract_features

    rows = []
    for i in range(24):
        for label in ("bonafide", "spoof"):
            x = speechlike(1.5, seed=i, f0_hz=100 + 5 * i)
            if label == "spoof":
                x = (x + tone(6000, 1.5, amplitude=0.2)).astype(np.float32)
            rel = f"{label}/{i}.wav"
            write(tmp_path / "data" / rel, x)
            rows.append({"id": f"{label}{i}", "path": rel, "label": label,
                         "generator": "tone" if label == "spoof" else "human", "speaker": f"s{i % 6}",
                         "utterance": f"u{i}_{label}", "root": str(tmp_path / "data"),
                         "split": "train" if i < 14 else ("val" if i < 19 else "test")})
    manifest = pd.DataFrame(rows)
    extract_features(manifest, get_extractor("spectral"), tmp_path / "f.parquet", cache_dir=tmp_path / "cache")
    train_classic(TrainConfig(features=str(tmp_path / "f.parquet"), model="logreg", out=str(tmp_path / "run"),
                              n_bootstrap=0))
    return tmp_path


def test_cli_json_csv_exit_codes(classic_run):
    runner = CliRunner()
    run = classic_run / "run"
    bad = classic_run / "junk.wav"
    bad.write_bytes(b"not audio at all")
    good_real = classic_run / "data" / "bonafide" / "20.wav"
    good_fake = classic_run / "data" / "spoof" / "20.wav"
    args = ["detect", str(good_real), str(good_fake), "--model", str(run), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["decision"] for r in out] == ["real", "fake"]
    for r in out:
        assert {"path", "p_fake", "decision", "score", "threshold", "duration_s", "latency_ms", "windows"} <= set(r)
    result = runner.invoke(app, [*args, "--fail-on-fake"])
    assert result.exit_code == 1
    csv = classic_run / "out.csv"
    result = runner.invoke(app, ["detect", str(good_real), str(bad), "--model", str(run), "--json", "--csv", str(csv)])
    assert result.exit_code == 3
    out = json.loads(result.stdout)
    assert "error" in out[1] and "junk.wav" in out[1]["path"] and "p_fake" in out[0]
    assert len(pd.read_csv(csv)) == 2
    result = runner.invoke(app, ["detect", str(good_fake), "--model", str(run), "--plot", str(classic_run / "plots")])
    assert result.exit_code == 0 and (classic_run / "plots" / "20.png").exists()


def test_released_aasist_detects_through_the_same_path(aasist_dir, tmp_path):
    detector = load_detector(f"aasist-l={aasist_dir / 'AASIST-L.pth'}")
    path = write(tmp_path / "a.wav", speechlike(5.0))
    result = detect_path(detector, path)
    assert detector.info()["n_params"] == 85306
    # 4.04 s windows over 5 s: one at 0, then the last one ending at the file's end.
    assert [w["end_s"] for w in result["windows"]] == [pytest.approx(4.0375, abs=1e-3), pytest.approx(5.0)]
    assert 0.0 <= result["p_fake"] <= 1.0 and np.isfinite(result["score"])


def test_decoded_length_is_capped_even_when_the_header_says_less(tmp_path):
    path = write(tmp_path / "long.wav", speechlike(3.0))
    with pytest.raises(Exception, match="limit"):
        detect_path(ToneDetector(), path, DetectConfig(max_duration_s=2.0))


def test_a_trained_deep_run_loads_as_a_detector(tmp_path):
    from audios.models import get_model
    from audios.train.trainer import TrainConfig, export_model

    config = TrainConfig(model="rawcnn", clip_samples=8000)
    model = get_model("rawcnn")()
    export_model(tmp_path / "run" / "best.pt", model, config, val_eer=0.25, threshold=0.1, epoch=1)
    detector = load_detector(str(tmp_path / "run"))
    assert detector.window_s == pytest.approx(0.5) and detector.threshold == pytest.approx(0.1)
    result = detect_path(detector, write(tmp_path / "a.wav", speechlike(1.2)))
    assert len(result["windows"]) == 4 and np.isfinite(result["score"])
    assert detector.info()["n_params"] > 0


def test_cli_segments_context_is_passed_and_checked(tmp_path):
    from audios.localize import SegmentConfig

    clip = tmp_path / "c.wav"
    write(clip, speechlike(3.0, f0_hz=140, seed=11))
    result = CliRunner().invoke(app, ["detect", str(clip), "--json", "--segments", "--context-s", "1.0"])
    assert result.exit_code == 0, result.output
    (got,) = json.loads(result.stdout)
    want = detect_path(load_detector(), clip, DetectConfig(segments=SegmentConfig(context_s=1.0)))
    assert [s["p_fake"] for s in got["segments"]] == pytest.approx([s["p_fake"] for s in want["segments"]])
    default = detect_path(load_detector(), clip, DetectConfig(segments=SegmentConfig()))
    assert [s["p_fake"] for s in got["segments"]] != pytest.approx([s["p_fake"] for s in default["segments"]])
    bad = CliRunner().invoke(app, ["detect", str(clip), "--segments", "--context-s", "0.01"])
    assert bad.exit_code == 2 and "context_s" in bad.output
