"""SIGKILL `audios run` during the features stage and during the train stage, rerun, and compare.

The rerun keeps the finished work (feature cache parts, training checkpoints), never reads a partly
written file as complete (stage records and outputs are written atomically; a killed stage has no
record) and ends with results equal to an uninterrupted run. ``prepare`` has its own SIGKILL test in
tests/test_prepare.py::test_sigkill_midway_then_rerun_matches_uninterrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from audios.pipeline import load_pipeline, run_pipeline
from audios.toy import ToyCorpusConfig, make_toy_corpus

# Runs a pipeline with one stage slowed down, so the parent can kill it midway.
SCRIPT = r"""
import sys, time
import audios.features.extract as fx
import audios.train.trainer as tr
slow = sys.argv[3]
if slow == "features":
    orig = fx.extract_batch
    def extract_batch(*a, **k):
        time.sleep(0.4)
        return orig(*a, **k)
    fx.extract_batch = extract_batch
else:
    orig_epoch = tr._Run.train_epoch
    def train_epoch(self, epoch):
        if epoch >= 2:
            time.sleep(30)
        return orig_epoch(self, epoch)
    tr._Run.train_epoch = train_epoch
from audios.pipeline import load_pipeline, run_pipeline
run_pipeline(load_pipeline(sys.argv[1]), sys.argv[2])
"""

TRAIN = {"model": "rawcnn", "model_config": {"channels": [8, 16, 16], "dense": [16, 16], "dropout": 0.1},
         "clip_samples": 8000, "batch_size": 8, "epochs": 3, "lr": 0.003, "cache_audio": True,
         "early_stopping_patience": 0, "eval_batch_size": 16, "augment": {"noise": True, "gain": True}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_toy_corpus(tmp_path_factory.mktemp("toy") / "toy", ToyCorpusConfig(
        n_speakers=4, utterances_per_speaker=4, min_duration_s=0.8, max_duration_s=1.0, griffin_lim_iters=4))


def pipeline_file(folder: Path, corpus: Path, last: list[dict]) -> Path:
    stages = [{"stage": "manifest"}, {"stage": "split", "group_by": ["speaker"], "ratios": [0.5, 0.25, 0.25]}] + last
    path = folder / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "kill", "seed": 0, "corpus": {"path": str(corpus)}, "stages": stages}))
    return path


def kill_when(path: Path, script_args: list[str], ready, timeout_s: float = 60) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, *script_args], env=env, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill: {proc.stderr.read().decode()[-800:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("the stage never reached the kill point")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=10)


def test_kill_during_features_then_rerun_keeps_the_cache_and_matches(corpus: Path, tmp_path: Path) -> None:
    path = pipeline_file(tmp_path, corpus, [{"stage": "features", "extractor": "spectral", "batch_size": 2,
                                             "part_size": 2}])
    killed = tmp_path / "killed"
    cache = killed / "features" / "cache"
    rc = kill_when(path, [str(path), str(killed), "features"],
                   lambda: len(list(cache.rglob("*.parquet"))) >= 3 if cache.exists() else False)
    assert rc == -signal.SIGKILL
    assert not (killed / ".stages" / "features.json").exists()  # no record: the stage is not complete
    assert not (killed / "features" / "spectral.parquet").exists()  # and no table under the final name
    parts_before = len(list(cache.rglob("*.parquet")))
    result = run_pipeline(load_pipeline(path), killed)
    assert result.skipped == ["manifest", "split"] and result.ran == ["features"]
    record = json.loads((killed / ".stages" / "features.json").read_text())
    n_cached = int(record["summary"].split(" from cache")[0].split(", ")[-1])
    assert n_cached >= parts_before * 2 - 2, record["summary"]  # finished parts were reused, not recomputed
    clean = run_pipeline(load_pipeline(path), tmp_path / "clean")
    assert clean.ran == ["manifest", "split", "features"]
    a = pd.read_parquet(killed / "features" / "spectral.parquet")
    b = pd.read_parquet(tmp_path / "clean" / "features" / "spectral.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_kill_during_train_then_rerun_resumes_and_matches(corpus: Path, tmp_path: Path) -> None:
    path = pipeline_file(tmp_path, corpus, [{"stage": "train", "settings": TRAIN}])
    killed = tmp_path / "killed"
    ckpt = killed / "train" / "checkpoints"
    rc = kill_when(path, [str(path), str(killed), "train"],
                   lambda: ckpt.exists() and any(ckpt.glob("epoch_01_*.pt")), timeout_s=120)
    assert rc == -signal.SIGKILL
    assert not (killed / ".stages" / "train.json").exists()
    assert not (killed / "train" / "metrics.json").exists()
    first = next(ckpt.glob("epoch_01_*.pt"))
    kept = first.stat().st_mtime_ns
    result = run_pipeline(load_pipeline(path), killed)
    assert result.ran == ["train"]
    assert first.stat().st_mtime_ns == kept  # epoch 1 was not trained again: the run resumed from it
    history = pd.read_csv(killed / "train" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    clean = run_pipeline(load_pipeline(path), tmp_path / "clean")
    assert clean.ran == ["manifest", "split", "train"]
    for name in ("scores.csv", "val_scores.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(killed / "train" / name), pd.read_csv(tmp_path / "clean" / "train" / name))
    m1 = json.loads((killed / "train" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "clean" / "train" / "metrics.json").read_text())
    assert m1 == m2
