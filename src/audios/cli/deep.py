"""CLI commands around trained deep models: compare-checkpoints, ablate and export (registered on import)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from audios.cli.app import app, console, friendly_errors


@app.command("compare-checkpoints")
@friendly_errors
def compare_checkpoints_command(
    run_or_files: list[Path] = typer.Argument(..., help="Run folders (every epoch checkpoint, or best.pt with "
                                              "--best-only) and/or checkpoint files (best.pt, epoch_*.pt)."),
    audio_dir: Optional[Path] = typer.Option(None, "--audio-dir", "-a", help="Folder of audio to score; labels come "
                                             "from class sub-folders (real/fake, human/ai, bonafide/spoof)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Score this manifest's rows instead "
                                            "(labels from its label column)."),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="Folder for the summary and CSVs."),
    best_only: bool = typer.Option(False, "--best-only", help="Take only best.pt from each run folder."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    progress: bool = typer.Option(True, help="Show a progress bar (on terminals)."),
) -> None:
    """Score every checkpoint on a folder: a summary per model (fake/real counts, mean confidence, EER and minDCF
    when labels are known) and a CSV of the files where the models disagree.

    Writes to --out: summary.csv, summary.md, scores.csv, disagreements.csv (and skipped.csv).

    Example: audios compare-checkpoints runs/rawcnn runs/aasist/best.pt --audio-dir data/holdout -o runs/cmp
    """
    from audios.train.compare import audio_set, compare_checkpoints, find_checkpoints

    checkpoints = find_checkpoints(list(run_or_files), best_only=best_only)
    result = compare_checkpoints(checkpoints, audio_set(audio_dir, manifest), out, device=device, progress=progress)
    console.print(result.summary(), soft_wrap=True)


@app.command("ablate")
@friendly_errors
def ablate_command(
    config: Path = typer.Argument(..., help="YAML with manifest, base (a TrainConfig) and grid (field path: values)."),
    out: Path = typer.Option(Path("runs/ablate"), "--out", "-o", help="Folder for the points' runs and the table."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Split manifest (overrides the config's)."),
    set_: list[str] = typer.Option([], "--set", help="Override a field, e.g. --set base.epochs=2, "
                                   "--set n_bootstrap=200."),
    progress: bool = typer.Option(True, help="Show progress bars (on terminals)."),
) -> None:
    """Train every point of a declared grid with the same seed and data; one table of EER/minDCF with 95 % CIs.

    Writes to --out: ablation.csv, ablation.md, ablate.yaml and points/NN (one run folder per point; a rerun
    reuses finished points and resumes paused ones).

    Example: audios ablate configs/ablate-example.yaml -o runs/ablate --set base.epochs=3
    """
    from audios.train.ablate import load_ablate_config, run_ablation

    result = run_ablation(load_ablate_config(config, list(set_)), out, manifest=manifest, progress=progress)
    console.print(result.summary(), soft_wrap=True)


@app.command("export")
@friendly_errors
def export_command(
    checkpoint: Path = typer.Argument(..., help="Exported model (a run's best.pt)."),
    out: Path = typer.Option(Path("runs/export"), "--out", "-o", help="Folder for the variants and the report."),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="ONNX with a dynamic batch axis, checked with "
                              "onnxruntime against PyTorch."),
    int8: bool = typer.Option(False, "--int8", help="Dynamic int8 quantisation of Linear/LSTM layers."),
    prune: float = typer.Option(0.0, "--prune", help="Global magnitude pruning: fraction of Conv/Linear weights to "
                                "zero (0: none)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Labelled split manifest: report each "
                                            "variant's EER and its change."),
    split: str = typer.Option("test", help="Manifest split for the EERs."),
    opset: int = typer.Option(17, help="ONNX opset (17 or later)."),
    tolerance: float = typer.Option(1e-4, help="Largest accepted ONNX-vs-PyTorch logit difference."),
    runs: int = typer.Option(20, help="Timed runs per variant for the latency median."),
) -> None:
    """Write ONNX, int8 and pruned variants of a trained model, each with size, latency per 4 s clip and EER change.

    Writes to --out: model.onnx, model_int8.pt, model_pruned.pt (those asked for), export.json and export.md.

    Example: audios export runs/rawcnn/best.pt --onnx --int8 --prune 0.5 -m runs/dev/split.csv -o runs/rawcnn/export
    """
    from audios.train.export import ExportConfig, export_variants

    config = ExportConfig(onnx=onnx, int8=int8, prune_amount=prune, opset=opset, tolerance=tolerance,
                          latency_runs=runs, split=split)
    result = export_variants(checkpoint, out, config, manifest=manifest)
    console.print(result.summary(), soft_wrap=True)
