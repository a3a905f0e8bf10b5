"""compare-checkpoints, ablate and export on tiny trained models and generated audio with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

import audios.cli.deep  # noqa: F401 - registers compare-checkpoints, ablate and export
from audios.audio import load_audio
from audios.cli.app import app
from audios.errors import ConfigError
from audios.evaluate import equal_error_rate, min_dcf
from audios.models.aasist import CheckpointError
from audios.train import TrainConfig, load_trained_model, train
from audios.train.ablate import AblateConfig, run_ablation
from audios.train.compare import audio_set, compare_checkpoints, find_checkpoints, load_checkpoint_model
from audios.train.export import (
    ExportConfig,
    OnnxModel,
    export_onnx,
    export_variants,
    load_int8_model,
    onnx_max_abs_diff,
    prune_magnitude,
    weight_sparsity,
)
from conftest import speechlike, tone, write

pytest.importorskip("onnxruntime")
torch.set_num_threads(2)

CLIP = 4000  # 0.25 s


def tiny(**fields) -> TrainConfig:
    base = dict(model="rawcnn", model_config={"channels": [8, 8, 8], "dense": [8], "dropout": 0.0}, clip_samples=CLIP,
                batch_size=8, epochs=2, lr=3e-3, cache_audio=True, early_stopping_patience=0, eval_batch_size=16)
    return TrainConfig(**(base | fields))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """24 clips of 0.3 s in real/ and fake/ folders (fake = speechlike + a 3 kHz tone) and a split manifest."""
    root = tmp_path_factory.mktemp("cmp")
    rows = []
    for i in range(24):
        bona = i % 2 == 0
        x = speechlike(0.3, f0_hz=95 + 5 * i, seed=i)
        if not bona:
            x = x + tone(3000.0, 0.3, amplitude=0.2)
        rel = f"{'real' if bona else 'fake'}/c{i:02d}.wav"
        write(root / rel, x)
        rows.append({"id": f"c{i:02d}", "path": rel, "label": "bonafide" if bona else "spoof",
                     "generator": "human" if bona else "tone", "speaker": f"s{i % 6}",
                     "split": "train" if i < 12 else ("val" if i < 18 else "test")})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.fixture(scope="module")
def runs(corpus: Path, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runs")
    train(corpus / "manifest.csv", tiny(seed=1), out / "a")
    train(corpus / "manifest.csv", tiny(seed=2, model_config={"channels": [4, 8, 8], "dense": [8]}), out / "b")
    return {"a": out / "a", "b": out / "b"}


# ------------------------------------------------------------------------------------------ compare


def test_checkpoints_are_found_and_epoch_checkpoints_score_like_best(runs: dict[str, Path]) -> None:
    found = find_checkpoints([runs["a"]])
    assert list(found) == ["a/epoch_01", "a/epoch_02"]
    assert list(find_checkpoints([runs["a"], runs["a"] / "best.pt"], best_only=True)) == ["a/best", "a/best#2"]
    best = load_trained_model(runs["a"] / "best.pt")
    epoch = load_checkpoint_model(found[f"a/epoch_{best.epoch:02d}"])
    assert epoch.threshold == pytest.approx(best.threshold) and epoch.name == "rawcnn"
    x = speechlike(0.5, seed=99)
    assert epoch.score(x) == pytest.approx(best.score(x), abs=1e-6)
    with pytest.raises(CheckpointError):
        find_checkpoints([runs["a"] / "nothing"])


def test_compare_writes_summary_and_exact_disagreements(corpus: Path, runs: dict[str, Path], tmp_path: Path) -> None:
    (corpus / "fake" / "broken.wav").write_bytes(b"RIFF not a wav")
    try:
        checkpoints = find_checkpoints([runs["a"], runs["b"]], best_only=True)
        audio = audio_set(corpus)
        assert audio.labelled and len(audio.paths) == 25
        result = compare_checkpoints(checkpoints, audio, tmp_path / "cmp")
    finally:
        (corpus / "fake" / "broken.wav").unlink()
    for f in ("summary.csv", "summary.md", "scores.csv", "disagreements.csv", "skipped.csv"):
        assert (tmp_path / "cmp" / f).is_file(), f
    assert pd.read_csv(tmp_path / "cmp" / "skipped.csv")["path"].str.endswith("broken.wav").tolist() == [True]
    scores = pd.read_csv(tmp_path / "cmp" / "scores.csv")
    summary = pd.read_csv(tmp_path / "cmp" / "summary.csv")
    assert len(scores) == 24 and summary["model"].tolist() == ["a/best", "b/best"]
    models = {name: load_trained_model(path) for name, path in checkpoints.items()}
    decisions = {}
    for name, m in models.items():
        # Scores are each model's own score of the file; decisions use its validation threshold.
        first = scores["path"].iloc[0]
        assert scores[f"score:{name}"].iloc[0] == pytest.approx(m.score(load_audio(first)), abs=1e-5)
        decisions[name] = np.where(scores[f"score:{name}"] >= m.threshold, "real", "fake")
        row = summary.set_index("model").loc[name]
        assert row["fake"] == (decisions[name] == "fake").sum() and row["fake"] + row["real"] == 24
        assert row["eer"] == pytest.approx(equal_error_rate(scores[f"score:{name}"], scores["label"]).eer, abs=1e-6)
        assert row["min_dcf"] == pytest.approx(min_dcf(scores[f"score:{name}"], scores["label"]).value, abs=1e-6)
        assert 0.5 <= row["mean_confidence"] <= 1.0
    differ = decisions["a/best"] != decisions["b/best"]
    disagreements = pd.read_csv(tmp_path / "cmp" / "disagreements.csv")
    assert sorted(disagreements["path"]) == sorted(scores["path"][differ])
    assert ((disagreements["n_fake"] == 1) & (disagreements["n_real"] == 1)).all()


def test_compare_unlabelled_folder_and_cli(corpus: Path, runs: dict[str, Path], tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for p in sorted((corpus / "real").glob("*.wav"))[:3]:
        write(flat / p.name, load_audio(p))
    audio = audio_set(flat)
    assert not audio.labelled and len(audio.paths) == 3
    result = CliRunner().invoke(app, ["compare-checkpoints", str(runs["a"]), str(runs["b"] / "best.pt"),
                                      "--audio-dir", str(flat), "-o", str(tmp_path / "cli"), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(tmp_path / "cli" / "summary.csv")
    assert len(summary) == 3 and summary["eer"].isna().all() and (summary["files"] == 3).all()
    bad = CliRunner().invoke(app, ["compare-checkpoints", str(tmp_path / "none.pt"), "--audio-dir", str(flat)])
    assert bad.exit_code == 2 and "none.pt" in bad.output


# -------------------------------------------------------------------------------------------- ablate


def test_ablation_grid_writes_one_table_and_reuses_finished_points(corpus: Path, tmp_path: Path) -> None:
    base = tiny(epochs=1)
    config = AblateConfig(manifest=str(corpus / "manifest.csv"), base=base, n_bootstrap=50,
                          grid={"model_config.channels": [[4, 4, 4], [8, 8, 8]]})
    result = run_ablation(config, tmp_path / "abl")
    table = pd.read_csv(tmp_path / "abl" / "ablation.csv")
    assert len(table) == 2 and table["model_config.channels"].tolist() == ["[4, 4, 4]", "[8, 8, 8]"]
    for row in table.itertuples():
        scores = pd.read_csv(Path(row.run_dir) / "scores.csv")
        assert row.eer == pytest.approx(equal_error_rate(scores["score"], scores["label"]).eer, abs=1e-6)
        assert row.eer_low <= row.eer <= row.eer_high and row.min_dcf_low <= row.min_dcf <= row.min_dcf_high
        saved = yaml.safe_load((Path(row.run_dir) / "config.yaml").read_text())
        assert saved["seed"] == base.seed  # same seed for every point
    assert "EER [95% CI]" in (tmp_path / "abl" / "ablation.md").read_text()
    stamp = (tmp_path / "abl" / "points" / "01" / "metrics.json").stat().st_mtime_ns
    again = run_ablation(config, tmp_path / "abl")
    assert (tmp_path / "abl" / "points" / "01" / "metrics.json").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again.table.drop(columns="run_dir"), result.table.drop(columns="run_dir"))


def test_ablation_config_checks_and_cli(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seed"):
        AblateConfig(base=tiny(), grid={"seed": [0, 1]})
    with pytest.raises(ConfigError, match="loss"):
        AblateConfig(base=tiny(), grid={"loss": ["ce", "hinge"]})
    with pytest.raises(ConfigError, match="non-empty list"):
        AblateConfig(base=tiny(), grid={"lr": 0.1})
    path = tmp_path / "abl.yaml"
    path.write_text(yaml.safe_dump({
        "manifest": str(corpus / "manifest.csv"), "n_bootstrap": 0,
        "base": {"model": "rawcnn", "model_config": {"channels": [4, 4, 4], "dense": [4]}, "clip_samples": CLIP,
                 "epochs": 1, "batch_size": 8, "cache_audio": True, "early_stopping_patience": 0},
        "grid": {"lr": [0.001, 0.003]}}))
    result = CliRunner().invoke(app, ["ablate", str(path), "-o", str(tmp_path / "out"), "--set", "split=val",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "ablation.csv")
    assert table["lr"].tolist() == [0.001, 0.003] and table["files"].tolist() == [6, 6]


# -------------------------------------------------------------------------------------------- export


def test_export_rawcnn_onnx_int8_and_pruning(corpus: Path, runs: dict[str, Path], tmp_path: Path) -> None:
    config = ExportConfig(onnx=True, int8=True, prune_amount=0.4, latency_runs=2)
    result = export_variants(runs["a"] / "best.pt", tmp_path / "exp", config, manifest=corpus / "manifest.csv")
    by = {r.variant: r for r in result.reports}
    assert list(by) == ["fp32", "onnx", "int8", "pruned"]
    assert result.onnx_max_abs_diff < 1e-4
    for r in by.values():
        assert r.size_bytes == r.path.stat().st_size and r.latency_ms > 0 and np.isfinite(r.eer)
    assert by["onnx"].eer_change == pytest.approx(0.0, abs=1e-9)  # same scores up to 1e-4 logits
    # Pruning zeroes the requested fraction of the Conv/Linear weights, and the file stays an ordinary model.
    pruned = load_trained_model(by["pruned"].path)
    assert weight_sparsity(pruned.model) == pytest.approx(0.4, abs=1e-3) == result.sparsity
    assert weight_sparsity(load_trained_model(runs["a"] / "best.pt").model) < 0.01
    q = load_int8_model(by["int8"].path)
    x = speechlike(0.5, seed=5)
    assert abs(q.score(x) - load_trained_model(runs["a"] / "best.pt").score(x)) < 0.5
    info = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert [v["variant"] for v in info["variants"]] == ["fp32", "onnx", "int8", "pruned"]


@pytest.mark.parametrize("name, model_config, clip", [
    ("rawcnn", {"channels": [8, 16, 16], "dense": [16]}, CLIP),
    ("aasist", {"small": True, "filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]]}, 8000),
])
def test_onnx_round_trip_with_a_dynamic_batch(name: str, model_config: dict, clip: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(model=name, model_config=model_config, clip_samples=clip)
    model = cfg.build_model().eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", clip)
    onnx_model = OnnxModel(path)
    assert onnx_max_abs_diff(model, onnx_model, clip, batch=3) < 1e-4  # traced with batch 2
    assert onnx_model(torch.zeros(5, clip)).shape == (5, 2)


def test_pruning_amounts_and_cli(runs: dict[str, Path], tmp_path: Path) -> None:
    model = load_trained_model(runs["b"] / "best.pt").model
    for amount in (0.2, 0.7):
        pruned, sparsity = prune_magnitude(model, amount)
        assert sparsity == pytest.approx(amount, abs=1e-3)
        # Global magnitude pruning: every zeroed weight was no larger than every kept one, across all layers.
        layers = [(a.weight.detach().flatten(), b.weight.detach().flatten())
                  for a, b in zip(model.modules(), pruned.modules(), strict=True)
                  if isinstance(a, (torch.nn.Conv1d, torch.nn.Linear))]
        original = torch.cat([a for a, _ in layers]).abs()
        zeroed = torch.cat([b for _, b in layers]) == 0
        assert original[zeroed].max() <= original[~zeroed].min()
    with pytest.raises(ConfigError):
        ExportConfig(prune_amount=1.0)
    result = CliRunner().invoke(app, ["export", str(runs["b"] / "best.pt"), "-o", str(tmp_path / "cli"),
                                      "--no-onnx", "--prune", "0.5", "--runs", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "model_pruned.pt").is_file() and not (tmp_path / "cli" / "model.onnx").exists()
    assert "pruned" in result.output
