"""The ``audios`` command line: one Typer app; each stage's commands live in a sub-module.

The CLI only parses arguments, calls one library function and prints a summary. It is the only
place that configures logging or exits.
"""

from __future__ import annotations

import logging

import typer

from audios.cli.app import app, console
# Importing each module registers its commands on `app`.
from audios.cli import (  # noqa: F401
    beyond,
    classic,
    data,
    deep,
    detect,
    evaluate,
    features,
    models,
    pipeline,
    prepare,
    serve,
    split,
    stats,
    synth,
    train,
    visualize,
)
from audios.tasks import TASKS


@app.command("tasks")
def tasks() -> None:
    """List every pipeline stage in order, one line each, marking which are implemented."""
    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    width = max(len(t.name) for t in TASKS)
    for t in TASKS:
        mark = "[green]✓[/green]" if t.name in registered else "[dim]·[/dim]"
        console.print(f"{mark} {t.name.ljust(width)}  [dim]{t.stage:<10}[/dim] {t.summary}", soft_wrap=True)
    console.print("\n[dim]✓ implemented   · planned[/dim]")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


__all__ = ["app", "main", "typer"]
