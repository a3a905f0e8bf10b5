"""CLI command for the train stage (registered on import)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from audios.cli.app import app, console, friendly_errors
from audios.errors import ConfigError


@app.command("train")
@friendly_errors
def train_command(
    manifest: Optional[Path] = typer.Argument(None, help="Split manifest (CSV/Parquet with a `split` column)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML TrainConfig, e.g. configs/rawcnn.yaml."),
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="Run folder to create."),
    model: Optional[str] = typer.Option(None, help="Registered model name (overrides the config's)."),
    epochs: Optional[int] = typer.Option(None, help="Number of epochs (overrides the config)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N, mps or auto (default: the config's, cpu)."),
    seed: Optional[int] = typer.Option(None, help="Seed of weights, shuffling and augmentation."),
    resume_dir: Optional[Path] = typer.Option(None, "--resume", help="Continue this run folder from its last "
                                              "checkpoint (MANIFEST and settings come from the checkpoint)."),
    set_: list[str] = typer.Option([], "--set", help="Override a TrainConfig field, e.g. --set batch_size=16, "
                                   "--set model_config.channels=[16,32,64], --set augment.noise=true."),
    progress: bool = typer.Option(True, help="Show progress bars (on terminals)."),
) -> None:
    """Train a deep detector on MANIFEST's train split, validating on val, scoring test with the best epoch.

    Writes to --out: config.yaml, run.json, checkpoints/epoch_NN_valeer_X.pt every epoch, history.csv,
    steps.csv, training.png (loss/EER/accuracy), best.pt (for `audios detect`), val_scores.csv, scores.csv and metrics.json.

    Multi-GPU: torchrun --nproc_per_node=4 -m audios train MANIFEST -c configs/rawcnn.yaml --device cuda

    Example: audios train runs/dev/split.csv -c configs/rawcnn.yaml -o runs/rawcnn --set epochs=5
    """
    from audios.train import load_train_config, resume, train

    if resume_dir is not None:
        if manifest is not None or config is not None or set_ or model or epochs or seed is not None:
            raise ConfigError("--resume continues a run with its own manifest and settings; only --device may change")
        result = resume(resume_dir, device=device, progress=progress)
    else:
        if manifest is None:
            raise ConfigError("give a MANIFEST to train on (or --resume RUN_DIR)")
        cfg = load_train_config(config, list(set_), model=model, epochs=epochs, device=device, seed=seed)
        result = train(manifest, cfg, out, progress=progress)
    console.print(result.summary())
