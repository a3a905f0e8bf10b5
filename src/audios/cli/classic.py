"""CLI commands for the classic back-ends: train-classic, hpo and model-card (registered on import)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from audios.cli.app import app, console, friendly_errors
from audios.errors import ConfigError


def _read_params(text: str | None) -> dict[str, Any] | None:
    """``--params``: a JSON object, or a JSON file (``best_params.json`` from hpo: its ``params`` entry)."""
    if not text:
        return None
    source = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"--params: {text!r} is neither a JSON object nor an existing file")
        source = path.read_text()
    try:
        data = json.loads(source)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--params: {text!r} is not valid JSON ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("params"), dict):
        data = data["params"]
    if not isinstance(data, dict):
        raise ConfigError(f"--params: {text!r} must hold a JSON object of hyperparameters")
    return data


@app.command("train-classic")
@friendly_errors
def train_classic_cmd(
    features: Path = typer.Argument(..., help="Feature table (.parquet) from `audios features`."),
    model: str = typer.Option("logreg", "--model", "-m", help="logreg, svm, rf, mlp or gmm (gmm: lfcc/mfcc frames)."),
    out: Path = typer.Option(Path("runs/classic"), "--out", "-o", help="Run folder to write."),
    seed: int = typer.Option(0, help="Seed of the models, CV folds and bootstrap."),
    reference_baseline: bool = typer.Option(
        False, "--reference-baseline",
        help="Exact reference: StandardScaler + LogisticRegression, GridSearchCV(C in 0.01,0.1,1.0; cv=5; roc_auc)."),
    select_on: str = typer.Option("cv", help="Choose hyperparameters by 'cv' (ROC-AUC, train folds) or 'val' (EER)."),
    cv_folds: int = typer.Option(5, help="Cross-validation folds."),
    cv_group_by: str = typer.Option("sha256,utterance,speaker",
                                    help="Columns whose shared values keep rows in one CV fold ('' = none)."),
    params: Optional[str] = typer.Option(None, help="Fixed hyperparameters: JSON object or best_params.json."),
    n_components: int = typer.Option(64, help="GMM components per class (gmm only)."),
    max_frames_per_class: int = typer.Option(200_000, help="Frames per class used to fit each GMM (gmm only)."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95 % intervals (0: none)."),
) -> None:
    """Train a classic back-end on FEATURES: choose, fit, calibrate, score val/test and evaluate into OUT.

    Example: audios train-classic runs/dev/spectral.parquet --model svm --out runs/dev/svm
    """
    from audios.classic.train import TrainConfig, train_classic

    config = TrainConfig(
        features=str(features), model=model, out=str(out), seed=seed, reference_baseline=reference_baseline,
        select_on=select_on, cv_folds=cv_folds, cv_group_by=tuple(c.strip() for c in cv_group_by.split(",")
                                                                  if c.strip()),
        params=_read_params(params), n_components=n_components, max_frames_per_class=max_frames_per_class,
        n_bootstrap=bootstrap,
    )
    result = train_classic(config)
    console.print(result.summary())
    console.print(f"report: {out / 'report.md'}; model: {out / 'model.joblib'}")


@app.command("hpo")
@friendly_errors
def hpo_cmd(
    features: Path = typer.Argument(..., help="Feature table (.parquet) with train/val splits."),
    model: str = typer.Option("logreg", "--model", "-m", help="logreg, svm, rf or mlp."),
    trials: int = typer.Option(20, "--trials", "-n", help="Trials to add to the study."),
    out: Path = typer.Option(Path("runs/hpo"), "--out", "-o", help="Folder of the study (study.db) and plots."),
    seed: int = typer.Option(0, help="Seed of the TPE sampler and the models."),
    timeout: Optional[float] = typer.Option(None, help="Stop starting new trials after this many seconds."),
    study_name: Optional[str] = typer.Option(None, help="Study name inside study.db (default: the model)."),
) -> None:
    """Optuna search of MODEL's hyperparameters on FEATURES, minimising validation EER; rerun to resume.

    Example: audios hpo runs/dev/spectral.parquet --model mlp --trials 50 --out runs/dev/hpo-mlp
    """
    from audios.classic.hpo import HpoConfig, run_hpo

    result = run_hpo(HpoConfig(features=str(features), model=model, out=str(out), n_trials=trials, seed=seed,
                               timeout_s=timeout, study_name=study_name))
    console.print(result.summary())
    console.print(json.dumps(result.best_params, indent=2))
    console.print(f"wrote {out / 'best_params.json'}, trials.csv and plots; train with: audios train-classic "
                  f"{features} --model {model} --params {out / 'best_params.json'}")


@app.command("model-card")
@friendly_errors
def model_card_cmd(run: Path = typer.Argument(..., help="Run folder (with run.json and metrics.json).")) -> None:
    """Write RUN/MODEL_CARD.md: intended use, training data, results with CIs, weak spots, limitations."""
    from audios.modelcard import write_model_card

    console.print(f"wrote {write_model_card(run)}")
