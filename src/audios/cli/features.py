"""Features command: one extractor over a manifest, cached and resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from audios.cli.app import app, console, friendly_errors
from audios.config import load_config
from audios.features import EXTRACTORS, describe_extractor, get_extractor
from audios.features.extract import default_cache_dir, extract_features
from audios.manifest import read_manifest
from audios.runs import write_run_info


@app.command()
@friendly_errors
def features(
    manifest: Path = typer.Argument(..., help="Manifest (.csv or .parquet) from `audios manifest`."),
    extractor: str = typer.Option("spectral", "-e", "--extractor", help=f"One of: {', '.join(sorted(EXTRACTORS))}."),
    out: Path = typer.Option(Path("features.parquet"), "-o", "--out", help="Output feature table (.parquet)."),
    cache: Path = typer.Option(None, help="Cache folder (default ~/.cache/audios/features)."),
    root: Path = typer.Option(None, help="Corpus root the manifest's paths start from (overrides its `root`)."),
    workers: int = typer.Option(1, help="Worker processes for decoding and extraction."),
    batch_size: int = typer.Option(16, help="Recordings per extraction batch."),
    part_size: int = typer.Option(256, help="Recordings per cache part (a kill loses at most one part)."),
    config: Path = typer.Option(None, help="YAML file with the extractor's settings."),
    set_: list[str] = typer.Option([], "--set", help="Override a setting, e.g. --set extended=true or n_mels=64."),
    progress: bool = typer.Option(True, help="Show a progress bar (on terminals)."),
) -> None:
    """Extract EXTRACTOR features for every row of MANIFEST into a Parquet table.

    Results are cached by content hash and extractor config: a rerun, or a run on a grown manifest,
    computes only new recordings, and a killed run resumes. Unusable files go to <out>.skipped.csv.

    Example: audios features runs/dev/manifest.csv -e spectral --set extended=true -o runs/dev/spectral.parquet
    """
    if extractor not in EXTRACTORS:
        get_extractor(extractor)  # raises, listing the known names
    ext = get_extractor(extractor, load_config(EXTRACTORS[extractor].Config, config, set_))
    cache_dir = cache or default_cache_dir()
    report = extract_features(
        read_manifest(manifest, root=root), ext, out, cache_dir=cache_dir, workers=workers,
        batch_size=batch_size, part_size=part_size, progress=progress,
    )
    write_run_info(out.with_suffix(".run"), "features", {
        "manifest": str(manifest), "out": str(out), "cache": str(cache_dir), "workers": workers,
        "batch_size": batch_size, "part_size": part_size, **describe_extractor(ext),
    })
    console.print(report.summary())
