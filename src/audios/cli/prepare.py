"""CLI commands for the prepare stage (registered on import)."""

from __future__ import annotations

from audios.cli.app import app, console, friendly_errors  # noqa: F401
