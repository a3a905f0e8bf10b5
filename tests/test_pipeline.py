"""audios run: stage skipping by content key, --from/--force, seeding, run records, missing corpora, MLflow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import audios.cli.pipeline  # noqa: F401  (registers `run` on the app)
from audios.cli import app
from audios.errors import ConfigError
from audios.pipeline import (
    CorpusNotFoundError,
    PipelineError,
    check_pipeline,
    load_pipeline,
    run_pipeline,
    stage_key,
)
from audios.toy import ToyCorpusConfig, make_toy_corpus

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "configs" / "pipelines"

STAGES = [
    {"stage": "manifest", "layout": "auto"},
    {"stage": "prepare", "normalize": "rms"},
    {"stage": "split", "group_by": ["speaker"], "ratios": [0.5, 0.25, 0.25]},
    {"stage": "features", "extractor": "spectral"},
    {"stage": "train-classic", "model": "logreg", "cv_folds": 2, "n_bootstrap": 20},
    {"stage": "evaluate", "bootstrap": 20},
    {"stage": "model-card"},
    {"stage": "detect", "limit": 3},
]
NAMES = [s["stage"] for s in STAGES]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    return make_toy_corpus(root / "toy", ToyCorpusConfig(n_speakers=4, utterances_per_speaker=3, min_duration_s=1.0,
                                                         max_duration_s=1.4, griffin_lim_iters=8))


def write_pipeline(folder: Path, corpus: Path, stages=STAGES, seed: int = 0) -> Path:
    path = folder / "pipe.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "seed": seed, "corpus": {
        "name": "toy corpus", "path": str(corpus), "published": "audios toy-corpus"}, "stages": stages}))
    return path


@pytest.fixture(scope="module")
def base_run(corpus: Path, tmp_path_factory):
    """One finished run of the tiny pipeline; tests that change it work on a copy."""
    folder = tmp_path_factory.mktemp("base")
    pipe = load_pipeline(write_pipeline(folder, corpus))
    return pipe, run_pipeline(pipe, folder / "run")


def copy_run(base_run, tmp_path: Path) -> Path:
    shutil.copytree(base_run[1].run_dir, tmp_path / "run")
    return tmp_path / "run"


def metrics(run: Path) -> dict:
    return json.loads((run / "train-classic" / "metrics.json").read_text())


def test_second_run_skips_everything_and_records_the_run(base_run) -> None:
    pipe, first = base_run
    run = first.run_dir
    assert first.ran == NAMES and first.skipped == []
    second = run_pipeline(pipe, run)
    assert second.ran == [] and second.skipped == NAMES
    assert metrics(run)["eer"] == first.metrics["test_eer"]
    # The run folder: resolved pipeline, versions/commit/platform, input hashes, per-stage records.
    resolved = yaml.safe_load((run / "pipeline.resolved.yaml").read_text())
    assert resolved["seed"] == 0 and [s["stage"] for s in resolved["stages"]] == NAMES
    info = json.loads((run / "run.json").read_text())
    assert {"git_commit", "versions", "platform"} <= set(info) and "numpy" in info["versions"]
    inputs = json.loads((run / "inputs.json").read_text())
    assert inputs["corpus"]["files"] >= 24
    assert len(inputs["features"]["manifest"]["sha256"]) == 64
    record = json.loads((run / ".stages" / "features.json").read_text())
    assert record["inputs"]["manifest"]["sha256"] == inputs["features"]["manifest"]["sha256"]
    assert (run / "train-classic" / "MODEL_CARD.md").is_file()
    detections = (run / "detect" / "detections.csv").read_text().splitlines()
    assert len(detections) == 4  # header + 3 test files


def test_changed_config_reruns_that_stage_and_what_depends_on_it(corpus: Path, base_run, tmp_path: Path) -> None:
    run = copy_run(base_run, tmp_path)
    changed = [dict(s) for s in STAGES]
    changed[3] = {"stage": "features", "extractor": "spectral", "extended": True}
    result = run_pipeline(load_pipeline(write_pipeline(tmp_path, corpus, changed)), run)
    assert result.skipped == ["manifest", "prepare", "split"]
    assert result.ran == NAMES[3:]
    # A change that leaves a stage's output bytes identical does not ripple on: evaluate's only input is
    # train-classic's scores, so changing the model's bootstrap count reruns train-classic and, as its scores
    # are the same, skips evaluate.
    changed[4] = {**changed[4], "n_bootstrap": 10}
    result = run_pipeline(load_pipeline(write_pipeline(tmp_path, corpus, changed)), run)
    assert "train-classic" in result.ran and "evaluate" in result.skipped


def test_from_and_force_rerun_and_give_identical_metrics(base_run, tmp_path: Path) -> None:
    pipe, first = base_run
    run = copy_run(base_run, tmp_path)
    before = metrics(run)
    again = run_pipeline(pipe, run, from_stage="features")
    assert again.skipped == NAMES[:3] and again.ran == NAMES[3:]
    forced = run_pipeline(pipe, run, force=True)
    assert forced.ran == NAMES
    assert metrics(run) == before
    assert forced.metrics == first.metrics
    # Keys are content addresses: the same options and inputs give the same key, so the forced run's
    # outputs reproduce every key and a plain run afterwards skips everything.
    assert forced.outcomes[0].key == first.outcomes[0].key
    assert run_pipeline(pipe, run).skipped == NAMES


def test_a_different_seed_reaches_every_seeded_stage(corpus: Path, base_run, tmp_path: Path) -> None:
    run = copy_run(base_run, tmp_path)
    result = run_pipeline(load_pipeline(write_pipeline(tmp_path, corpus, STAGES[:3], seed=3)), run)
    assert result.ran == ["manifest", "prepare", "split"]  # the seed is part of every stage's key
    assert json.loads((run / "run.json").read_text())["seed"] == 3
    assert yaml.safe_load((run / "prepare" / "config.yaml").read_text())["prepare"]["seed"] == 3


def test_tampered_output_is_redone(base_run, tmp_path: Path) -> None:
    pipe, _ = base_run
    run = copy_run(base_run, tmp_path)
    (run / "features" / "spectral.parquet").write_bytes(b"half a file")
    result = run_pipeline(pipe, run)
    assert result.ran[0] == "features" and "split" in result.skipped


def test_missing_corpus_names_the_path_and_where_it_is_published(tmp_path: Path) -> None:
    for path in sorted(PIPELINES.glob("*.yaml")):
        pipe = load_pipeline(path, corpus_path=tmp_path / "nowhere")
        with pytest.raises(CorpusNotFoundError) as err:
            run_pipeline(pipe, tmp_path / "run")
        assert str(tmp_path / "nowhere") in str(err.value)
        assert pipe.corpus.published and pipe.corpus.published in str(err.value)
    asv = load_pipeline(PIPELINES / "asvspoof2019-la.yaml", corpus_path=tmp_path)
    with pytest.raises(CorpusNotFoundError, match="ASVspoof2019_LA_train is missing.*datashare.ed.ac.uk"):
        run_pipeline(asv, tmp_path / "run")


def test_every_ready_pipeline_is_valid() -> None:
    names = {p.stem for p in PIPELINES.glob("*.yaml")}
    assert {"dev-demo", "asvspoof2019-la", "asvspoof5-lowmem", "fakeorreal-2sec-rawcnn", "in-the-wild",
            "folders-mp3-cnn", "green-ai-baseline"} <= names
    for path in sorted(PIPELINES.glob("*.yaml")):
        check_pipeline(load_pipeline(path))
    low = load_pipeline(PIPELINES / "asvspoof5-lowmem.yaml")
    assert low.stages[0].options["limit"] == 500
    train = next(s for s in low.stages if s.stage == "train")
    assert yaml.safe_load(Path(train.options["config"]).read_text())["model_config"]["small"] is True


def test_bad_pipelines_fail_before_any_work(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        check_pipeline(load_pipeline(write_pipeline(tmp_path, corpus, [{"stage": "manifest", "colour": "red"}])))
    with pytest.raises(ConfigError, match="needs a features"):
        check_pipeline(load_pipeline(write_pipeline(tmp_path, corpus, [{"stage": "train-classic"}])))
    with pytest.raises(ConfigError, match="not one of"):
        load_pipeline(write_pipeline(tmp_path, corpus, [{"stage": "fly"}]))
    with pytest.raises(ConfigError, match="repeat"):
        load_pipeline(write_pipeline(tmp_path, corpus, [{"stage": "manifest"}, {"stage": "manifest"}]))
    bad = tmp_path / "vars.yaml"
    bad.write_text("name: x\nstages:\n  - {stage: manifest, root: '${nope}'}\n")
    with pytest.raises(ConfigError, match=r"unknown variable \$\{nope\}"):
        load_pipeline(bad)
    with pytest.raises(PipelineError, match="needs a model"):
        from audios.pipeline import StageContext, STAGE_FUNCTIONS
        STAGE_FUNCTIONS["model-card"](StageContext(tmp_path, tmp_path, 0, {}, None), {})


def test_stage_key_depends_on_options_inputs_and_seed() -> None:
    from audios.pipeline import StageSpec

    a = StageSpec("features", "features", {"extractor": "spectral"})
    b = StageSpec("features", "features", {"extractor": "lfcc"})
    k = stage_key(a, 0, {"manifest": "0" * 64})
    assert k == stage_key(a, 0, {"manifest": "0" * 64})
    assert len({k, stage_key(b, 0, {"manifest": "0" * 64}), stage_key(a, 1, {"manifest": "0" * 64}),
                stage_key(a, 0, {"manifest": "1" * 64})}) == 4


def test_cli_run_reports_and_exits_2_on_missing_corpus(corpus: Path, tmp_path: Path) -> None:
    stages = STAGES[:2]  # manifest, prepare
    path = write_pipeline(tmp_path, corpus, stages)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(path), "-o", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "2 ran, 0 skipped" in res.output
    res = CliRunner().invoke(app, ["run", str(path), "-o", str(out), "--no-progress"])
    assert "0 ran, 2 skipped" in res.output
    res = CliRunner().invoke(app, ["run", str(path), "-o", str(out), "--corpus", str(tmp_path / "gone")])
    assert res.exit_code == 2 and "gone does not exist" in "".join(res.output.split("\n"))


def test_mlflow_logs_params_metrics_and_artifacts_to_a_local_sqlite_store(base_run, tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow", reason="MLflow is optional (pip install mlflow-skinny)")
    from audios.pipeline import log_to_mlflow

    pipe, result = base_run
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_to_mlflow(result, pipe, uri)
    mlflow.set_tracking_uri(uri)
    logged = mlflow.get_run(run_id)
    assert logged.data.params["seed"] == "0"
    assert logged.data.params["stages.3.extractor"] == "spectral"
    assert logged.data.metrics["test_eer"] == pytest.approx(result.metrics["test_eer"])
    assert logged.data.metrics["eval_roc_auc"] == pytest.approx(result.metrics["eval_roc_auc"])
    client = mlflow.tracking.MlflowClient()
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"pipeline.resolved.yaml", "run.json", "inputs.json", "train-classic"} <= top
    assert any(a.path.endswith("metrics.json") for a in client.list_artifacts(run_id, "train-classic"))
