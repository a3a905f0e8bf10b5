"""Data commands: manifest (and, as they land, stats, prepare, split)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from audios.cli.app import app, console, friendly_errors
from audios.manifest import build_manifest, write_table
from audios.manifest.layouts import LAYOUTS


@app.command()
@friendly_errors
def manifest(
    root: Path = typer.Argument(..., help="Corpus folder (or, for --layout csv, the table itself)."),
    layout: str = typer.Option("auto", help=f"Corpus layout: auto, {', '.join(sorted(LAYOUTS))}."),
    out: Path = typer.Option(Path("manifest.csv"), "-o", "--out", help="Output manifest (.csv or .parquet)."),
    workers: int = typer.Option(1, help="Worker processes for measuring files."),
    limit: int = typer.Option(None, help="Only the first N entries (quick looks)."),
    progress: bool = typer.Option(True, help="Show a progress bar (on terminals)."),
) -> None:
    """List every recording under ROOT with its label, generator, speaker, utterance and measured metadata.

    Unreadable files are skipped and listed in <out>.skipped.csv; protocol rows whose audio is absent in
    <out>.missing.csv.

    Example: audios manifest ../shared/corpus/dev -o runs/dev/manifest.csv
    """
    result = build_manifest(root, layout=layout, workers=workers, progress=progress, limit=limit)
    write_table(result.table, out)
    if result.skipped:
        write_table(pd.DataFrame(result.skipped, columns=["path", "reason"]), out.with_suffix(".skipped.csv"))
    if result.missing:
        write_table(pd.DataFrame(result.missing, columns=["path", "reason"]), out.with_suffix(".missing.csv"))
    console.print(result.summary())
    console.print(f"wrote {out}")
