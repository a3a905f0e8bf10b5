"""CLI commands for the stats stage (registered on import)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from audios.cli.app import app, console, friendly_errors
from audios.manifest import read_manifest
from audios.stats import StatsConfig, compute_stats, write_stats


@app.command()
@friendly_errors
def stats(
    manifest: Path = typer.Argument(..., help="Manifest to describe (.csv or .parquet)."),
    out: Path = typer.Option(None, "-o", "--out", help="Folder for plots, stats.json and stats.md."),
    auc_threshold: float = typer.Option(0.75, help="Warn when one variable alone reaches this AUC."),
    top: int = typer.Option(10, help="Generators and speakers to list (plots show up to 20)."),
) -> None:
    """Hours per class/generator/speaker, per-class distributions, and variables that alone separate the classes.

    A variable that separates bona fide from spoof on its own (sample rate, silence, loudness, duration,
    format) is a shortcut a detector would learn instead of the synthesis artefacts.

    Example: audios stats runs/dev/manifest.csv --out runs/dev/stats
    """
    config = StatsConfig(auc_threshold=auc_threshold)
    df = read_manifest(manifest)
    result = compute_stats(df, config)
    console.print(f"{manifest}: {result.n_files} files, {result.hours:.2f} hours")
    for title, frame, key, n in (("per class", result.per_class, "label", None),
                                 (f"top {top} generators", result.per_generator, "generator", top),
                                 (f"top {top} speakers", result.per_speaker, "speaker", top)):
        table = Table(title=title)
        for col in (key, "files", "hours", "bonafide h", "spoof h", "share"):
            table.add_column(col, justify="left" if col == key else "right")
        for _, r in (frame.head(n) if n else frame).iterrows():
            table.add_row(str(r[key]), str(r["files"]), f"{r['hours']:.3f}", f"{r['bonafide_hours']:.3f}",
                          f"{r['spoof_hours']:.3f}", f"{r['share']:.1%}")
        console.print(table)
    table = Table(title=f"shortcut check: AUC of each variable alone (warn at ≥ {config.auc_threshold})")
    for col in ("variable", "AUC", "", "detail"):
        table.add_column(col, justify="right" if col == "AUC" else "left")
    for s in result.shortcuts.shortcuts:
        table.add_row(s.variable, f"{s.auc:.3f}", "[red]WARN[/red]" if s.warn else "", s.detail)
    console.print(table)
    for note in result.shortcuts.notes:
        console.print(f"[dim]{note}[/dim]")
    for s in result.shortcuts.warnings:
        console.print(f"[yellow]warning:[/yellow] possible shortcut {s.variable} (AUC alone {s.auc:.2f}): "
                      f"{s.detail}; a detector may learn this instead of the artefacts")
    if out is not None:
        paths = write_stats(df, result, out, config)
        from audios.config import config_to_dict
        from audios.runs import write_run_info

        write_run_info(out, "stats", {"manifest": str(manifest), **config_to_dict(config)})
        console.print(f"wrote {len(paths)} files to {out} (overview.png, stats.json, stats.md)")
