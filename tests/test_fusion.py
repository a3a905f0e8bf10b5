"""Score fusion: known-answer weights, score-file fusion through the CLI, a fused folder as a detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import audios.cli.beyond  # noqa: F401  (registers fuse)
from audios.cli import app
from audios.detect import detect_path, load_detector
from audios.evaluate.metrics import equal_error_rate
from audios.evaluate.scores import write_scores
from audios.fusion import FusedDetector, FusionError, LogisticFusion, join_scores
from tests.conftest import speechlike, tone, write


def gaussian_scores(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bona fide ~ N(1, 1), spoof ~ N(-1, 1): the true LLR of x is 2x."""
    y = np.repeat([True, False], n)
    return np.where(y, 1.0, -1.0) + rng.standard_normal(2 * n), y


def test_fusion_recovers_the_true_llr_and_ignores_noise():
    rng = np.random.default_rng(0)
    x, y = gaussian_scores(4000, rng)
    noise = rng.standard_normal(x.size)
    fusion = LogisticFusion(l2=0.0).fit(np.c_[x, noise], y)
    assert fusion.weights_[0] == pytest.approx(2.0, abs=0.15)
    assert abs(fusion.weights_[1]) < 0.1 and fusion.offset_ == pytest.approx(0.0, abs=0.1)
    # Class balance does not move the LLR: fit on 4x more spoof than bona fide.
    keep = y | (rng.random(y.size) < 1.0)
    keep[np.flatnonzero(y)[1000:]] = False
    fusion_unbalanced = LogisticFusion(l2=0.0).fit(np.c_[x, noise][keep], y[keep])
    assert fusion_unbalanced.offset_ == pytest.approx(0.0, abs=0.2)


def test_fusion_of_two_complementary_members_beats_each():
    rng = np.random.default_rng(1)
    y = np.repeat([True, False], 500)
    truth = np.where(y, 1.0, -1.0)
    a, b = truth + rng.standard_normal(y.size), truth + rng.standard_normal(y.size)
    fused = LogisticFusion().fit(np.c_[a, b], y).transform(np.c_[a, b])
    assert equal_error_rate(fused, y).eer < min(equal_error_rate(a, y).eer, equal_error_rate(b, y).eer)


def test_join_scores_checks_labels():
    a = pd.DataFrame({"id": ["1", "2", "3"], "score": [1.0, 2.0, 3.0], "label": ["bonafide", "spoof", "spoof"]})
    b = pd.DataFrame({"id": ["3", "1"], "score": [0.5, 0.1], "label": ["spoof", "bonafide"]})
    joined = join_scores([a, b], ["a", "b"])
    assert joined["id"].tolist() == ["1", "3"] and joined["b"].tolist() == [0.1, 0.5]
    b.loc[0, "label"] = "bonafide"
    with pytest.raises(FusionError, match="disagrees"):
        join_scores([a, b], ["a", "b"])


def test_fuse_cli_from_score_files(tmp_path):
    rng = np.random.default_rng(2)
    y = np.repeat(["bonafide", "spoof"], 100)
    truth = np.where(y == "bonafide", 1.0, -1.0)
    files = {}
    for split in ("val", "test"):
        ids = [f"{split}{i}" for i in range(y.size)]
        for m in ("a", "b"):
            df = pd.DataFrame({"id": ids, "score": truth + rng.standard_normal(y.size), "label": y})
            files[split, m] = write_scores(df, tmp_path / m / f"scores_{split}.csv")
    result = CliRunner().invoke(app, ["fuse", "--val", str(files["val", "a"]), "--val", str(files["val", "b"]),
                                      "--test", str(files["test", "a"]), "--test", str(files["test", "b"]),
                                      "-o", str(tmp_path / "fused")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "fused" / "fusion.json").read_text())
    assert [m["name"] for m in data["members"]] == ["a", "b"] and all(m["weight"] > 0.5 for m in data["members"])
    metrics = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    assert metrics["test"]["fused"] <= max(metrics["test"]["a"], metrics["test"]["b"])
    card = (tmp_path / "fused" / "MODEL_CARD.md").read_text()
    assert "| a |" in card and "| b |" in card
    # Without member detectors the folder is analysis only, and says so.
    with pytest.raises(FusionError, match="no detector spec"):
        load_detector(str(tmp_path / "fused"))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """Two classic back-ends (logreg, rf) on spectral features; spoof = speech + a 6 kHz tone."""
    from audios.classic.train import TrainConfig, train_classic
    from audios.features.base import get_extractor
    from audios.features.extract import extract_features
    from audios.manifest.io import write_table

    root = tmp_path_factory.mktemp("two_runs")
    rows = []
    for i in range(16):
        for label in ("bonafide", "spoof"):
            x = speechlike(1.5, seed=i, f0_hz=100 + 6 * i)
            if label == "spoof":
                x = (x + tone(6000, 1.5, amplitude=0.05 + 0.01 * (i % 3))).astype(np.float32)
            rel = f"{label}/{i}.wav"
            write(root / "data" / rel, x)
            rows.append({"id": f"{label}{i}", "path": rel, "label": label,
                         "generator": "tone" if label == "spoof" else "human", "speaker": f"s{i % 4}",
                         "utterance": f"u{i}_{label}", "root": str(root / "data"),
                         "split": "train" if i < 10 else ("val" if i < 13 else "test")})
    manifest = pd.DataFrame(rows)
    write_table(manifest, root / "manifest.csv")
    extract_features(manifest, get_extractor("spectral"), root / "f.parquet", cache_dir=root / "cache")
    for model in ("logreg", "rf"):
        train_classic(TrainConfig(features=str(root / "f.parquet"), model=model, out=str(root / model),
                                  n_bootstrap=0))
    return root


def test_fused_folder_is_a_detector(two_runs, tmp_path):
    out = tmp_path / "fused"
    result = CliRunner().invoke(app, ["fuse", "--member", str(two_runs / "logreg"), "--member",
                                      str(two_runs / "rf"), "--manifest", str(two_runs / "manifest.csv"), "-o",
                                      str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    detector = load_detector(str(out))
    assert isinstance(detector, FusedDetector)
    info = detector.info()
    assert [m["name"] for m in info["members"]] == ["logreg", "rf"] and "weight" in info["card"]
    bona, spoof = two_runs / "data" / "bonafide" / "15.wav", two_runs / "data" / "spoof" / "15.wav"
    assert detect_path(detector, bona)["decision"] == "real"
    assert detect_path(detector, spoof)["decision"] == "fake"
    # The fused score is the weighted sum of the members' scores (same windows) plus the offset.
    members = [detect_path(load_detector(str(two_runs / m)), spoof)["score"] for m in ("logreg", "rf")]
    expected = detector.offset + float(np.dot(detector.weights, members))
    assert detect_path(detector, spoof)["score"] == pytest.approx(expected, rel=1e-6)
    # detect --segments --plot accepts the fused model.
    result = CliRunner().invoke(app, ["detect", str(spoof), "--model", str(out), "--json", "--segments",
                                      "--plot", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    (r,) = json.loads(result.stdout)
    assert r["segments"] and (tmp_path / "plots" / "15.png").exists()
