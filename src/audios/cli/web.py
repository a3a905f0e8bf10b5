"""CLI: export the in-browser detector as a static site."""

from __future__ import annotations

from pathlib import Path

import typer

from audios.cli.app import app, console, friendly_errors


@app.command("export-web")
@friendly_errors
def export_web(
    out_dir: Path = typer.Argument(..., help="Folder to write (absent or empty, or an earlier export with --force)."),
    model: Path = typer.Option(None, "--model", "-m", help="Portable detector folder (model.onnx + detector.json); "
                               "default: the bundled detector."),
    force: bool = typer.Option(False, "--force", help="Replace OUT_DIR when it holds an earlier export."),
) -> None:
    """Write a static web site that judges recordings inside the visitor's browser: nothing is uploaded.

    The folder holds the page, the detector (model.onnx, detector.json) and ONNX Runtime Web; any static host
    serves it (GitHub Pages, nginx, `python -m http.server`). The browser needs WebAssembly; no special
    headers are needed. The runtime is built from web/ with `npm --prefix web ci && npm --prefix web run build`.

    Examples:
      audios export-web site/
      audios export-web site/ --force && python -m http.server -d site 8080
    """
    from audios.webexport import export_web as run_export

    report = run_export(out_dir, model_dir=model, overwrite=force)
    console.print(report.summary(), highlight=False)
    console.print(f"serve it with e.g.: python -m http.server -d {report.out_dir} 8080")
