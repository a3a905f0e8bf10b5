"""Classic back-ends on synthetic feature tables with known answers, the detector end to end, and hpo."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audios.classic import ClassicDetector, ModelFileError, TrainConfig, train_classic
from audios.classic.data import load_feature_data
from audios.config import config_to_dict
from audios.errors import ConfigError, ManifestError
from audios.evaluate import read_scores
from audios.features import describe_extractor, get_extractor
from audios.features.extract import METADATA_KEY, extract_features
from audios.manifest.io import write_table
from tests.conftest import tone, write

RUN_FILES = ("config.yaml", "run.json", "model.joblib", "scores_val.csv", "scores_test.csv", "metrics.json",
             "report.md", "report.html", "cv_results.csv", "train.json")


def _write_table(path: Path, table: pd.DataFrame, extractor_name: str, columns: list[str]) -> Path:
    description = {"extractor": {"name": extractor_name, "kind": "vector", "version": 1, "columns": columns,
                                 "config": {}}, "audio": {"sample_rate": 16000}}
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({METADATA_KEY: json.dumps(description).encode()})
    pq.write_table(arrow, path)
    return path


def vector_table(path: Path, n: int = 120, shift: float = 6.0, split: bool = True, seed: int = 0) -> Path:
    """Two classes differing by ``shift`` in column f0 only (shift 0: identical distributions)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.standard_normal((n, 3))
    X[:, 0] += shift * y
    table = pd.DataFrame({
        "id": [f"c{i:03d}" for i in range(n)], "label": np.where(y == 1, "bonafide", "spoof"),
        "generator": np.where(y == 1, "human", np.where(np.arange(n) % 40 < 20, "g1", "g2")),
        "speaker": [f"s{i % 20}" for i in range(n)], "sha256": [f"{i:064x}" for i in range(n)],
        "f0": X[:, 0], "f1": X[:, 1], "f2": X[:, 2],
    })
    if split:
        # Speakers s0..s13 train, s14..s16 val, s17..s19 test: no speaker crosses splits.
        spk = np.arange(n) % 20
        table.insert(4, "split", np.where(spk < 14, "train", np.where(spk < 17, "val", "test")))
    return _write_table(path, table, "spectral", ["f0", "f1", "f2"])


def frames_table(path: Path, n: int = 40, seed: int = 0) -> Path:
    """Frame features: bona fide frames centred at +2, spoof at -2 in every dimension."""
    rng = np.random.default_rng(seed)
    folder = path.parent / "t.frames"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        bona = i % 2 == 1
        m = rng.standard_normal((30, 4)).astype(np.float32) + (2.0 if bona else -2.0)
        np.save(folder / f"{i}.npy", m)
        rows.append({"id": f"r{i}", "label": "bonafide" if bona else "spoof", "generator": "human" if bona else "g",
                     "speaker": f"s{i % 10}", "split": ["train", "train", "train", "val", "test"][i % 10 // 2],
                     "sha256": f"{i:064x}", "n_frames": 30, "features_path": f"t.frames/{i}.npy"})
    description = {"extractor": {"name": "lfcc", "kind": "frames", "version": 1, "columns": [], "config": {}},
                   "audio": {"sample_rate": 16000}}
    arrow = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    pq.write_table(arrow.replace_schema_metadata({METADATA_KEY: json.dumps(description).encode()}), path)
    return path


@pytest.mark.parametrize("model", ["logreg", "svm", "rf", "mlp"])
def test_each_vector_backend_separates_and_writes_the_run(tmp_path: Path, model: str) -> None:
    features = vector_table(tmp_path / "f.parquet")
    # The forest is slow to cross-validate, so it picks its grid point on val here (4 fits, not 21).
    result = train_classic(TrainConfig(features=str(features), model=model, out=str(tmp_path / "run"),
                                       n_bootstrap=20, select_on="val" if model == "rf" else "cv"))
    for name in RUN_FILES:
        assert (tmp_path / "run" / name).is_file(), name
    assert result.test_eer <= 0.05
    test = read_scores(tmp_path / "run" / "scores_test.csv")
    assert list(test.columns[:3]) == ["id", "score", "label"] and {"generator", "speaker"} <= set(test.columns)
    assert len(test) == 18  # speakers s17..s19 hold 18 of 120 rows
    # Higher = more bona fide.
    assert test[test.label == "bonafide"].score.mean() > test[test.label == "spoof"].score.mean()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "eer" in metrics["ci95"] and any(r["group"] == "g1" for r in metrics["per_generator"])


def test_identical_distributions_give_chance_eer(tmp_path: Path) -> None:
    features = vector_table(tmp_path / "f.parquet", n=600, shift=0.0)
    result = train_classic(TrainConfig(features=str(features), model="logreg", out=str(tmp_path / "run"),
                                       n_bootstrap=0))
    assert 0.3 <= result.test_eer <= 0.7


def test_grouped_cv_keeps_speakers_in_one_fold(tmp_path: Path) -> None:
    from audios.classic.data import cv_splitter, labels_of

    data = load_feature_data(vector_table(tmp_path / "f.parquet"))
    y = labels_of(data.train, "train")
    splitter, groups, text = cv_splitter(data.train, y, 5, ("sha256", "speaker"), seed=0)
    assert groups is not None and "StratifiedGroupKFold" in text
    for fit_idx, held_idx in splitter.split(np.zeros(y.size), y, groups):
        assert not set(data.train.speaker.iloc[fit_idx]) & set(data.train.speaker.iloc[held_idx])


def test_reference_baseline_is_deterministic_and_uses_the_reference_grid(tmp_path: Path) -> None:
    features = vector_table(tmp_path / "f.parquet", n=200, shift=1.0, split=False)
    runs = []
    for name in ("a", "b"):
        r = train_classic(TrainConfig(features=str(features), model="logreg", reference_baseline=True,
                                      out=str(tmp_path / name), n_bootstrap=0))
        runs.append(r)
    assert runs[0].params["C"] in (0.01, 0.1, 1.0)
    a = (tmp_path / "a" / "scores_test.csv").read_text()
    assert a == (tmp_path / "b" / "scores_test.csv").read_text()
    cv = pd.read_csv(tmp_path / "a" / "cv_results.csv")
    assert sorted(cv["C"]) == [0.01, 0.1, 1.0]
    # No split column: the shuffled 80/20 split with seed 10, so test has 40 of 200 rows and no val split.
    test = pd.read_csv(tmp_path / "a" / "scores_test.csv")
    assert len(test) == 40
    info = json.loads((tmp_path / "a" / "train.json").read_text())
    assert "random_state=10" in info["split_source"] and info["rows"]["val"] is None
    assert "out-of-fold" in info["calibration_source"]
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert "--reference-baseline" in run["command"]


def test_select_on_val_and_fixed_params(tmp_path: Path) -> None:
    features = vector_table(tmp_path / "f.parquet")
    r = train_classic(TrainConfig(features=str(features), model="logreg", select_on="val", out=str(tmp_path / "v"),
                                  n_bootstrap=0))
    assert "val_eer" in pd.read_csv(tmp_path / "v" / "cv_results.csv").columns and r.params["C"] in (0.01, 0.1, 1, 10)
    r = train_classic(TrainConfig(features=str(features), model="logreg", params={"C": 0.5}, out=str(tmp_path / "p"),
                                  n_bootstrap=0))
    assert r.params == {"C": 0.5}


def test_gmm_on_frames(tmp_path: Path) -> None:
    features = frames_table(tmp_path / "t.parquet")
    r = train_classic(TrainConfig(features=str(features), model="gmm", n_components=2, out=str(tmp_path / "g"),
                                  n_bootstrap=0))
    assert r.test_eer == 0.0
    assert (tmp_path / "g" / "model.joblib").is_file()
    with pytest.raises(ConfigError, match="needs vector features"):
        train_classic(TrainConfig(features=str(features), model="logreg", out=str(tmp_path / "x"), n_bootstrap=0))


def test_bad_inputs_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        TrainConfig(features="x.parquet", model="xgboost")
    with pytest.raises(ConfigError, match="reference_baseline"):
        TrainConfig(features="x.parquet", model="svm", reference_baseline=True)
    with pytest.raises(ManifestError, match="does not exist"):
        train_classic(TrainConfig(features=str(tmp_path / "none.parquet"), out=str(tmp_path / "r")))
    table = pd.DataFrame({"id": ["a", "b"], "label": ["bonafide", "fake"], "f0": [0.0, 1.0]})
    bad = _write_table(tmp_path / "bad.parquet", table, "spectral", ["f0"])
    with pytest.raises(ManifestError, match="'fake'"):
        load_feature_data(bad)
    with pytest.raises(ModelFileError, match="not found"):
        ClassicDetector.load(tmp_path)


def test_detector_scores_raw_audio_end_to_end(tmp_path: Path) -> None:
    """Spectral features of low tones (bona fide) vs white noise (spoof); the saved model scores new files."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        bona = i % 2 == 0
        x = tone(200 + 10 * i, 0.4) if bona else (0.3 * rng.standard_normal(6400)).astype(np.float32)
        p = write(tmp_path / "audio" / f"{i}.wav", x)
        rows.append({"id": f"a{i}", "path": str(p), "label": "bonafide" if bona else "spoof",
                     "generator": "human" if bona else "noise", "speaker": f"s{i}",
                     "split": ["train", "train", "val", "test"][i // 2 % 4] if i >= 8 else "train", "root": ""})
    manifest = pd.DataFrame(rows)
    ext = get_extractor("spectral")
    features = tmp_path / "spectral.parquet"
    extract_features(manifest, ext, features, cache_dir=tmp_path / "cache")
    train_classic(TrainConfig(features=str(features), model="logreg", out=str(tmp_path / "run"), n_bootstrap=0,
                              cv_folds=3))
    det = ClassicDetector.load(tmp_path / "run")
    assert det.extractor.config == ext.config
    new_tone = write(tmp_path / "new" / "tone.wav", tone(330, 0.5))
    new_noise = write(tmp_path / "new" / "noise.wav", (0.3 * rng.standard_normal(8000)).astype(np.float32))
    (s_tone, p_tone), (s_noise, p_noise) = det.score_files([new_tone, new_noise])
    assert s_tone > s_noise and p_tone < 0.5 < p_noise
    # Round trip: the detector's raw scores equal the training run's scores for the same test recordings.
    test = pd.read_csv(tmp_path / "run" / "scores_test.csv")
    paths = manifest.set_index("id").loc[test["id"], "path"].tolist()
    from audios.audio import load_audio

    raw = det.raw_scores([load_audio(p, det.audio_config) for p in paths])
    np.testing.assert_allclose(raw, test["score"].to_numpy(), rtol=1e-9, atol=1e-9)
    # A bad file is skipped and recorded, the rest are scored.
    broken = tmp_path / "new" / "broken.wav"
    broken.write_bytes(b"not audio")
    scored, skipped = det.score_batch([new_tone, broken])
    assert [s[0] for s in scored] == [str(new_tone)] and skipped[0][0] == str(broken)


def test_hpo_writes_a_resumable_study(tmp_path: Path) -> None:
    from audios.classic.hpo import HpoConfig, run_hpo

    features = vector_table(tmp_path / "f.parquet")
    out = tmp_path / "hpo"
    first = run_hpo(HpoConfig(features=str(features), model="logreg", out=str(out), n_trials=3))
    assert len(first.study.trials) == 3
    for name in ("study.db", "best_params.json", "trials.csv", "optimization_history.png", "config.yaml"):
        assert (out / name).is_file(), name
    second = run_hpo(HpoConfig(features=str(features), model="logreg", out=str(out), n_trials=2))
    assert len(second.study.trials) == 5
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("select count(*) from trials").fetchone()[0] == 5
    best = json.loads((out / "best_params.json").read_text())
    assert best["value"] <= 0.05 and "C" in best["params"]
    # The resumed sampler does not replay the first run's points.
    cs = [t.params["C"] for t in second.study.trials]
    assert len(set(cs)) == 5
    r = train_classic(TrainConfig(features=str(features), model="logreg", params=best["params"],
                                  out=str(tmp_path / "best"), n_bootstrap=0))
    assert r.params == best["params"]


def test_cli_train_and_model_card(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import audios.cli.classic  # noqa: F401  (registers the commands)
    from audios.cli import app

    features = vector_table(tmp_path / "f.parquet")
    runner = CliRunner()
    res = runner.invoke(app, ["train-classic", str(features), "--model", "logreg", "--out", str(tmp_path / "r"),
                              "--bootstrap", "0", "--params", '{"C": 0.3}'])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["model-card", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "MODEL_CARD.md").is_file()
    res = runner.invoke(app, ["train-classic", str(features), "--model", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown model" in res.output
