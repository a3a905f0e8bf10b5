"""The Typer app and the consoles every command module shares."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import typer
from rich.console import Console

from audios.errors import AudiosError

app = typer.Typer(
    name="audios",
    help="Tell human speech from AI-generated speech: from a pile of recordings to a calibrated detector.\n\n"
    "Run `audios tasks` to see the pipeline's stages in order.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our typed errors into one red line and exit status 2, instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AudiosError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            sys.exit(2)
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.split(".")[0] == "audios":
                raise
            # The light install leaves the research stack out: name the missing package and the fix.
            err_console.print(f"[red]error:[/red] this command needs {exc.name.split('.')[0]!r}, which this install "
                              "lacks. Install the research extras with: pip install 'audios\\[all]'")
            sys.exit(2)

    return wrapper
