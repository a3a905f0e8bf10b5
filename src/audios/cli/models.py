"""CLI commands for the models stage (registered on import)."""

from __future__ import annotations

from pathlib import Path

import typer

from audios.cli.app import app, friendly_errors


@app.command("aasist-score")
@friendly_errors
def aasist_score(
    checkpoint: Path = typer.Argument(..., help="The authors' AASIST.pth or AASIST-L.pth (variant found from shapes)."),
    files: list[Path] = typer.Argument(..., help="Audio files to score."),
    batch_size: int = typer.Option(8, help="Files per forward pass."),
    progress: bool = typer.Option(True, help="Show a progress bar (on terminals)."),
) -> None:
    """Print each file's bona fide score (raw logit 1; higher = more likely bona fide), tab-separated.

    Uses the first 64600 samples (≈4.04 s at 16 kHz), tiling shorter files. Unreadable files are listed on stderr.

    Example: audios aasist-score ../shared/models/aasist/AASIST.pth clip1.wav clip2.flac
    """
    from audios.models.aasist import load_released_checkpoint, score_files

    model = load_released_checkpoint(checkpoint)
    result = score_files(model, list(files), batch_size=batch_size, progress=progress)
    for path, score in result.scores:
        typer.echo(f"{path}\t{score:.6f}")  # plain tab-separated lines (rich would expand the tab)
    for path, reason in result.skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    if not result.scores:
        raise typer.Exit(1)
