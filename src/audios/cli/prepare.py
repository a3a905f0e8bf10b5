"""CLI commands for the prepare stage (registered on import)."""

from __future__ import annotations

from pathlib import Path

import typer

from audios.cli.app import app, console, friendly_errors
from audios.config import load_config
from audios.manifest import read_manifest
from audios.prepare import NOISE_KINDS, NORMALIZE_MODES, PrepareConfig, prepare


@app.command("prepare")
@friendly_errors
def prepare_command(
    manifest: Path = typer.Argument(..., help="Manifest (.csv or .parquet) from `audios manifest`."),
    out_dir: Path = typer.Argument(..., help="Output folder: audio, manifest.csv, skipped.csv, config.yaml, run.json."),
    root: Path = typer.Option(None, help="Corpus root the manifest's paths start from (overrides its `root`)."),
    sample_rate: int = typer.Option(None, help="Output sample rate in Hz (default 16000)."),
    format: str = typer.Option(None, "--format", help="Output format: flac or wav (default flac)."),
    normalize: str = typer.Option(None, help=f"Amplitude normalisation: {', '.join(NORMALIZE_MODES)} (default none)."),
    target_dbfs: float = typer.Option(None, help="Normalisation target in dBFS (default peak -1, rms -23)."),
    trim: bool = typer.Option(None, "--trim/--no-trim", help="Trim leading/trailing silence (default no)."),
    trim_threshold_dbfs: float = typer.Option(None, help="Frames quieter than this are silence (default -50)."),
    noise: str = typer.Option(None, help=f"Add noise: {', '.join(NOISE_KINDS)} (default none)."),
    snr_db: float = typer.Option(None, help="Signal-to-noise ratio of the added noise in dB (default 20)."),
    noise_dir: Path = typer.Option(None, help="Folder of noise recordings (for --noise folder)."),
    clip_s: float = typer.Option(None, help="Cut into clips of this many seconds (e.g. 2 or 4)."),
    overlap_s: float = typer.Option(None, help="Overlap between consecutive clips in seconds (default 0)."),
    remainder: str = typer.Option(None, help="Last partial clip: pad (with zeros) or drop (default pad)."),
    seed: int = typer.Option(None, help="Noise seed; each file's own seed derives from it and the file id (default 0)."),
    in_place: bool = typer.Option(False, "--in-place", help="Rewrite the source files themselves (wav/flac only)."),
    low_memory: bool = typer.Option(False, "--low-memory", help="Stream every file in blocks, twice, never whole."),
    workers: int = typer.Option(1, help="Worker processes."),
    limit: int = typer.Option(None, help="Only the first N recordings."),
    progress: bool = typer.Option(True, help="Show a progress bar (on terminals)."),
    config: Path = typer.Option(None, help="YAML file with PrepareConfig settings (options above override it)."),
    set_: list[str] = typer.Option([], "--set", help="Override any PrepareConfig field, e.g. --set trim_margin_s=0.1."),
) -> None:
    """Convert, resample, trim, normalise, add noise and cut clips; writes OUT_DIR/manifest.csv.

    Resumable: rerun the same command after an interruption and finished files are skipped.
    Unusable files are listed in OUT_DIR/skipped.csv and the run goes on.

    Example: audios prepare runs/dev/manifest.csv runs/dev16k --normalize rms --clip-s 4 --workers 2
    """
    options = {
        "sample_rate": sample_rate, "format": format, "normalize": normalize, "trim_silence": trim,
        "trim_threshold_dbfs": trim_threshold_dbfs, "noise": noise, "snr_db": snr_db,
        "noise_dir": noise_dir, "clip_s": clip_s, "overlap_s": overlap_s, "remainder": remainder, "seed": seed,
    }
    if in_place:
        options["in_place"] = True
    if low_memory:
        options["low_memory"] = True
    if target_dbfs is not None:
        # Only the active mode's target is used, so setting both is safe whatever the mode comes from.
        options["peak_target_dbfs"] = options["rms_target_dbfs"] = target_dbfs
    overrides = [f"{k}={v}" for k, v in options.items() if v is not None]
    cfg = load_config(PrepareConfig, config, overrides + list(set_))
    report = prepare(read_manifest(manifest, root=root), out_dir, cfg, workers=workers, limit=limit,
                     progress=progress)
    console.print(report.summary())
