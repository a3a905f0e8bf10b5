"""CLI: ``audios run PIPELINE.yaml`` (registered on import)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from audios.cli.app import app, console, friendly_errors


@app.command("run")
@friendly_errors
def run_command(
    pipeline_file: Path = typer.Argument(..., metavar="PIPELINE", help="Pipeline YAML, e.g. configs/pipelines/dev-demo.yaml."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Run folder (default runs/<pipeline name>)."),
    from_stage: Optional[str] = typer.Option(None, "--from", help="Rerun this stage and every later one."),
    until: Optional[str] = typer.Option(None, "--until", help="Stop after this stage."),
    force: bool = typer.Option(False, "--force", help="Rerun every stage, even unchanged ones."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus folder (overrides the pipeline's corpus.path)."),
    seed: Optional[int] = typer.Option(None, help="Seed of every stage (overrides the pipeline's)."),
    set_: list[str] = typer.Option([], "--set", help="Override a pipeline key, e.g. --set stages.3.extractor=lfcc."),
    workers: int = typer.Option(1, help="Worker processes for the stages that decode audio."),
    mlflow: bool = typer.Option(False, "--mlflow", help="Log params, metrics and reports to MLflow."),
    mlflow_uri: Optional[str] = typer.Option(None, help="Tracking URI (default $MLFLOW_TRACKING_URI, else "
                                             "sqlite:///<run folder's parent>/mlflow.db)."),
    progress: bool = typer.Option(True, help="Show progress bars (on terminals)."),
) -> None:
    """Run a pipeline's stages in order into one run folder, skipping stages whose inputs and config are unchanged.

    The run folder holds pipeline.resolved.yaml, run.json (versions, git commit, platform), inputs.json (hashes
    of every table read), summary.json and one folder per stage.

    Examples:
      audios run configs/pipelines/dev-demo.yaml
      audios run configs/pipelines/dev-demo.yaml --from features
      audios run configs/pipelines/asvspoof2019-la.yaml --corpus /data/LA --mlflow
    """
    from audios.errors import ConfigError
    from audios.pipeline import default_tracking_uri, load_pipeline, log_to_mlflow, run_pipeline

    overrides = list(set_) + ([f"seed={seed}"] if seed is not None else [])
    probe = load_pipeline(pipeline_file, overrides, corpus_path=corpus)
    run_dir = out or Path("runs") / probe.name
    pipe = load_pipeline(pipeline_file, overrides, corpus_path=corpus, run_dir=run_dir)
    if from_stage and force:
        raise ConfigError("--from and --force: choose one (--force reruns everything)")

    def show(o) -> None:
        colour = "green" if o.status == "ran" else "dim"
        console.print(f"[{colour}]{o.status:<7}[/{colour}] {o.name:<14} {o.seconds:6.1f} s  {o.summary}",
                      soft_wrap=True)

    result = run_pipeline(pipe, run_dir, from_stage=from_stage, force=force, until=until, workers=workers,
                          progress=progress, on_stage=show)
    console.print(f"run folder: {result.run_dir} ({len(result.ran)} ran, {len(result.skipped)} skipped)",
                  soft_wrap=True)
    if mlflow:
        uri = mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(result.run_dir)
        run_id = log_to_mlflow(result, pipe, uri)
        console.print(f"logged to MLflow {uri} (run {run_id})")
