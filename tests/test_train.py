"""Deep models and the shared trainer: shapes, one step, tiny trainings that learn, exact resume, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import audios.cli.train  # noqa: F401 - registers `audios train`
from audios.cli.app import app
from audios.errors import ConfigError, ManifestError
from audios.evaluate import read_scores
from audios.evaluate.metrics import equal_error_rate
from audios.models import MODELS, get_model
from audios.models.aasist import CheckpointError
from audios.models.spectral import LogMel, LogMelConfig
from audios.train import (
    AugmentConfig,
    ClipDataset,
    TrainConfig,
    TrainError,
    checkpoint_name,
    eval_windows,
    load_trained_model,
    logits_of,
    random_crop,
    resume,
    train,
)
from conftest import speechlike, tone, write

torch.set_num_threads(2)

SR = 16000
CLIP = 8000  # 0.5 s keeps every test run a few seconds long
TINY = {
    "rawcnn": {"channels": [8, 16, 16], "dense": [16, 16], "dropout": 0.1},
    "speccnn": {"channels": [8, 16], "hidden": 16, "n_mels": 32, "dropout": 0.1},
    "specvit": {"dim": 32, "depth": 1, "heads": 2, "n_mels": 32, "patch": [16, 8], "dropout": 0.0},
    "aasist": {"small": True, "filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]]},
}


def tiny_config(model: str = "rawcnn", **fields) -> TrainConfig:
    base = dict(model=model, model_config=TINY[model], clip_samples=CLIP, batch_size=8, epochs=2, lr=3e-3,
                cache_audio=True, early_stopping_patience=0, eval_batch_size=16)
    return TrainConfig(**(base | fields))


@pytest.fixture(scope="module")
def toy_manifest(tmp_path_factory) -> Path:
    """40 clips of 0.6 s: bona fide = speechlike; spoof = speechlike + a 5 kHz tone (a known artefact)."""
    root = tmp_path_factory.mktemp("toy")
    rows = []
    for i in range(40):
        bona = i % 2 == 0
        x = speechlike(0.6, f0_hz=90 + 4 * i, seed=i)
        if not bona:
            x = x + tone(5000.0, 0.6, amplitude=0.05)
        write(root / f"c{i:02d}.wav", x)
        rows.append({"id": f"c{i:02d}", "path": f"c{i:02d}.wav", "label": "bonafide" if bona else "spoof",
                     "generator": "human" if bona else "tone",
                     "split": "train" if i < 24 else ("val" if i < 32 else "test")})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


# ------------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", ["rawcnn", "speccnn", "specvit", "aasist"])
def test_model_shape_and_one_training_step(name: str) -> None:
    torch.manual_seed(0)
    model = get_model(name)(**TINY[name])
    x, y = torch.randn(4, CLIP) * 0.1, torch.tensor([0, 1, 0, 1])
    logits = logits_of(model(x))
    assert logits.shape == (4, 2)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(logits, y)
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert changed >= len(before) // 2
    model.eval()
    assert logits_of(model(torch.randn(1, 2 * CLIP))).shape == (1, 2)  # other lengths work too


def test_registry_keeps_aasist_and_adds_the_new_models() -> None:
    assert {"aasist", "aasist-l", "rawcnn", "speccnn", "specvit"} <= set(MODELS)
    with pytest.raises(ConfigError, match="rawcnn"):
        get_model("nope")


@pytest.mark.parametrize("name, bad", [("rawcnn", {"channels": []}), ("rawcnn", {"dropout": 1.0}),
                                       ("speccnn", {"n_mels": 8}), ("specvit", {"dim": 30, "heads": 4}),
                                       ("specvit", {"patch": [80, 16]}), ("rawcnn", {"widths": [1]})])
def test_model_configs_reject_bad_values(name: str, bad: dict) -> None:
    with pytest.raises(ConfigError):
        get_model(name)(**bad)


def test_log_mel_matches_librosa() -> None:
    import librosa

    x = speechlike(0.5)
    ours = LogMel(LogMelConfig(n_mels=40))(torch.from_numpy(x)[None])[0].numpy()
    ref = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=512, hop_length=160, win_length=400, n_mels=40,
                                         fmin=20.0, power=2.0, center=True, pad_mode="reflect")
    np.testing.assert_allclose(ours, np.log(ref + 1e-6), atol=2e-3)


def test_too_short_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least"):
        get_model("rawcnn")()(torch.zeros(1, 10))


# --------------------------------------------------------------------------------------------------- data


def test_crops_and_windows() -> None:
    x = np.arange(100, dtype=np.float32)
    rng = np.random.default_rng(0)
    crop = random_crop(x, 30, rng)
    assert crop.shape == (30,) and np.all(np.diff(crop) == 1)  # one contiguous piece
    short = random_crop(x[:7], 30, rng)
    assert short.shape == (30,) and set(short) <= set(range(7))
    windows = eval_windows(x, 30, max_windows=5)
    assert windows.shape == (3, 30) and windows[1, 0] == 30  # the partial last window is dropped
    assert eval_windows(x, 30, max_windows=1).shape == (1, 30)
    tiled = eval_windows(x[:7], 30)
    np.testing.assert_array_equal(tiled[0, :14], np.r_[np.arange(7), np.arange(7)])


def test_dataset_examples_are_seeded_by_epoch_and_index(toy_manifest: Path) -> None:
    from audios.manifest import read_manifest

    table = read_manifest(toy_manifest)
    table = table[table["split"] == "train"].reset_index(drop=True)
    ds = ClipDataset(table, 4000, train=True, augment=AugmentConfig(noise=True, noise_p=1.0), seed=3)
    a = ds[5]["x"]
    assert a.shape == (1, 4000) and a.dtype == torch.float32
    assert torch.equal(a, ds[5]["x"])
    ds.set_epoch(1)
    assert not torch.equal(a, ds[5]["x"])


# ------------------------------------------------------------------------------------------------ trainer


def _mean_steps(run_dir: Path) -> tuple[float, float]:
    steps = pd.read_csv(run_dir / "steps.csv")
    k = max(2, len(steps) // 4)
    return float(steps["loss"].head(k).mean()), float(steps["loss"].tail(k).mean())


@pytest.mark.parametrize("name", ["rawcnn", "speccnn", "specvit"])
def test_tiny_training_learns_the_artefact(toy_manifest: Path, tmp_path: Path, name: str) -> None:
    result = train(toy_manifest, tiny_config(name, epochs=3), tmp_path / "run")
    first, last = _mean_steps(tmp_path / "run")
    assert last < first
    assert result.finished and result.best_val_eer < 0.5
    for f in ("config.yaml", "run.json", "history.csv", "steps.csv", "best.pt", "val_scores.csv", "scores.csv",
              "metrics.json", "training.png"):
        assert (tmp_path / "run" / f).is_file(), f
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert len(names) == 3 and all(re.fullmatch(r"epoch_0[1-3]_valeer_\d\.\d{4}\.pt", n) for n in names)
    # The exported model reproduces the val scores written with it, and the scores files are `evaluate`-ready.
    val = read_scores(tmp_path / "run" / "val_scores.csv")
    assert len(val) == 8 and set(val["label"]) == {"bonafide", "spoof"}
    best = load_trained_model(tmp_path / "run" / "best.pt")
    from audios.audio import load_audio

    first_id = val["id"].iloc[0]
    score = best.score(load_audio(toy_manifest.parent / f"{first_id}.wav"))
    assert score == pytest.approx(float(val["score"].iloc[0]), abs=1e-4)
    assert equal_error_rate(val["score"], val["label"]).eer == pytest.approx(best.val_eer, abs=1e-9)
    assert len(read_scores(tmp_path / "run" / "scores.csv")) == 8


def test_checkpoint_name_pattern() -> None:
    assert checkpoint_name(3, 0.04123) == "epoch_03_valeer_0.0412.pt"
    assert checkpoint_name(12, float("nan")) == "epoch_12_valeer_nan.pt"


def test_resume_reproduces_the_uninterrupted_run(toy_manifest: Path, tmp_path: Path) -> None:
    augment = AugmentConfig(noise=True, gain=True, rawboost_impulsive=True)
    cfg = tiny_config("rawcnn", epochs=2, augment=augment, balance="sampler")
    full = train(toy_manifest, cfg, tmp_path / "full")
    paused = train(toy_manifest, cfg, tmp_path / "paused", stop_after_epochs=1)
    assert not paused.finished and len(paused.history) == 1
    resumed = resume(tmp_path / "paused")
    assert resumed.finished
    drop = ["seconds"]
    pd.testing.assert_frame_equal(full.history.drop(columns=drop), resumed.history.drop(columns=drop))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "steps.csv"),
                                  pd.read_csv(tmp_path / "paused" / "steps.csv"))
    a = torch.load(tmp_path / "full" / "best.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "paused" / "best.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last = sorted((tmp_path / "full" / "checkpoints").iterdir())[-1].name
    a = torch.load(tmp_path / "full" / "checkpoints" / last, weights_only=True)
    b = torch.load(tmp_path / "paused" / "checkpoints" / last, weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "scores.csv"),
                                  pd.read_csv(tmp_path / "paused" / "scores.csv"))


def test_early_stopping_on_val_eer(toy_manifest: Path, tmp_path: Path) -> None:
    result = train(toy_manifest, tiny_config("rawcnn", epochs=8, early_stopping_patience=1), tmp_path / "run")
    assert result.stopped_early and result.finished
    assert len(result.history) == result.best_epoch + 1 < 8
    eers = result.history["val_eer"].to_numpy()
    assert eers[-1] >= eers[result.best_epoch - 1]


def test_unreadable_training_files_are_skipped_and_recorded(toy_manifest: Path, tmp_path: Path) -> None:
    table = pd.read_csv(toy_manifest)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    bad = {"id": "broken", "path": str(tmp_path / "broken.wav"), "label": "spoof", "generator": "x", "split": "train"}
    table["path"] = [str(toy_manifest.parent / p) for p in table["path"]]
    manifest = tmp_path / "manifest.csv"
    pd.concat([table, pd.DataFrame([bad])]).to_csv(manifest, index=False)
    result = train(manifest, tiny_config("rawcnn", epochs=1), tmp_path / "run")
    assert result.n_skipped == 1
    skipped = pd.read_csv(tmp_path / "run" / "skipped.csv")
    assert skipped["path"].tolist() == [str(tmp_path / "broken.wav")]


def test_training_refuses_unusable_input(toy_manifest: Path, tmp_path: Path) -> None:
    table = pd.read_csv(toy_manifest)
    table["path"] = [str(toy_manifest.parent / p) for p in table["path"]]
    no_split = tmp_path / "nosplit.csv"
    table.drop(columns="split").to_csv(no_split, index=False)
    with pytest.raises(ManifestError, match="split"):
        train(no_split, tiny_config(), tmp_path / "a")
    one_class = tmp_path / "oneclass.csv"
    table[(table["split"] != "val") | (table["label"] == "spoof")].to_csv(one_class, index=False)
    with pytest.raises(TrainError, match="both classes"):
        train(one_class, tiny_config(), tmp_path / "b")
    with pytest.raises(TrainError, match="no checkpoints"):
        resume(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="balance"):
        tiny_config(balance="maybe")
    (tmp_path / "c" / "checkpoints").mkdir(parents=True)
    (tmp_path / "c" / "checkpoints" / "epoch_01_valeer_0.1000.pt").write_bytes(b"junk")
    with pytest.raises(TrainError, match="already holds"):
        train(toy_manifest, tiny_config(), tmp_path / "c")
    with pytest.raises(CheckpointError):
        resume(tmp_path / "c")


def test_dev_corpus_training_loss_falls(dev_corpus: Path, tmp_path: Path) -> None:
    from audios.manifest import read_manifest

    table = read_manifest(dev_corpus / "manifest.csv")
    picked = pd.concat([table[table["label"] == label].sample(20, random_state=0) for label in ("bonafide", "spoof")])
    picked = picked.sample(frac=1.0, random_state=1).reset_index(drop=True)
    picked["split"] = ["train"] * 32 + ["val"] * 8
    manifest = tmp_path / "dev40.csv"
    picked.to_csv(manifest, index=False)
    # Real recordings are harder than the toy artefact: two short epochs, comparing mean training loss.
    wide = {"rawcnn": {"channels": [16, 32, 32], "dense": [32], "pool_size": 8, "dropout": 0.1}}
    for name in ("rawcnn", "speccnn", "specvit"):
        cfg = tiny_config(name, epochs=2, clip_samples=SR // 2, batch_size=4,
                          model_config=wide.get(name, TINY[name]))
        result = train(manifest, cfg, tmp_path / name)
        losses = result.history["train_loss"].to_numpy()
        assert losses[1] < losses[0], (name, losses)
        assert np.isfinite(result.history["val_loss"]).all() and result.finished


def test_cli_trains_and_resumes(toy_manifest: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    config = Path(__file__).resolve().parents[1] / "configs" / "rawcnn.yaml"
    args = ["train", str(toy_manifest), "-c", str(config), "-o", str(out), "--epochs", "1",
            "--set", f"clip_samples={CLIP}", "--set", "model_config.channels=[8,8,8]",
            "--set", "model_config.dense=[8]", "--set", "augment.codec=false", "--set", "eval_windows=1",
            "--set", "cache_audio=true", "--no-progress"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "best epoch: 1" in result.output
    saved = load_trained_model(out / "best.pt")
    assert saved.name == "rawcnn" and saved.model_config["channels"] == [8, 8, 8]
    again = runner.invoke(app, ["train", "--resume", str(out), "--no-progress"])
    assert again.exit_code == 0, again.output
    bad = runner.invoke(app, ["train", "--no-progress"])
    assert bad.exit_code == 2 and "MANIFEST" in bad.output
    bad = runner.invoke(app, ["train", str(toy_manifest), "--set", "model=nope", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown model" in bad.output


def test_gradient_accumulation_steps_once_per_group(toy_manifest: Path, tmp_path: Path) -> None:
    # 24 training clips in batches of 4 = 6 batches; accumulating 4 steps after batches 4 and 6 (the epoch's end).
    train(toy_manifest, tiny_config("rawcnn", epochs=1, batch_size=4, grad_accum=4), tmp_path / "run")
    checkpoint = torch.load(next((tmp_path / "run" / "checkpoints").iterdir()), weights_only=True)
    assert {float(s["step"]) for s in checkpoint["optimizer"]["state"].values()} == {2.0}
    assert len(pd.read_csv(tmp_path / "run" / "steps.csv")) == 6
