"""The ``audios`` command line: one Typer app; each stage's commands live in a sub-module.

The CLI only parses arguments, calls one library function and prints a summary. It is the only
place that configures logging or exits.
"""

from __future__ import annotations

import importlib
import logging

import typer

from audios.cli.app import app, console, err_console

# Each module registers its commands on `app` when imported. The light install (`pip install audios`) lacks the
# research stack, so a module whose imports fail is replaced by placeholders that say what to install; the
# table names each module's commands and the extra that brings what they need (tests check it stays true).
COMMAND_MODULES: dict[str, tuple[tuple[str, ...], str]] = {
    "data": (("manifest", "toy-corpus"), "data"),
    "stats": (("stats",), "data"),
    "prepare": (("prepare",), "data"),
    "split": (("split",), "data"),
    "synth": (("synth",), "synth"),
    "features": (("features",), "features"),
    "visualize": (("visualize",), "features"),
    "classic": (("train-classic", "hpo", "model-card"), "classic"),
    "train": (("train",), "train"),
    "deep": (("compare-checkpoints", "ablate", "export"), "train"),
    "models": (("aasist-score",), "train"),
    "evaluate": (("evaluate",), "data,plot"),
    "pipeline": (("run",), "all"),
    "detect": (("detect",), ""),
    "serve": (("serve",), ""),
    "web": (("export-web",), ""),
    "beyond": (("fuse", "localize-eval", "explain"), "all"),
}
MISSING: dict[str, str] = {}  # command -> why it is unavailable in this install


def _placeholder(command: str, extra: str, reason: str) -> None:
    hint = f"pip install 'audios[{extra}]'" if extra else "reinstall audios"
    shown = hint.replace("[", "\\[")  # rich markup would eat the brackets

    @app.command(command, help=f"(unavailable here: {shown}; {reason})",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def unavailable(ctx: typer.Context) -> None:
        err_console.print(f"[red]error:[/red] `audios {command}` needs packages this install leaves out "
                          f"({reason}). Install them with: {shown}")
        raise typer.Exit(2)


for _module, (_commands, _extra) in COMMAND_MODULES.items():
    try:
        importlib.import_module(f"audios.cli.{_module}")
    except ModuleNotFoundError as _exc:
        if _exc.name == f"audios.cli.{_module}":
            continue  # not part of this version
        for _command in _commands:
            MISSING[_command] = f"no module named {_exc.name!r}"
            _placeholder(_command, _extra, MISSING[_command])

from audios.tasks import TASKS  # noqa: E402


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
