"""Data commands: manifest (and, as they land, stats, prepare, split)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from audios.cli.app import app, console, friendly_errors
from audios.config import config_to_dict, load_config
from audios.manifest import build_manifest, write_table
from audios.manifest.metadata import MetadataConfig
from audios.runs import write_run_info
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
    config: Path = typer.Option(None, help="YAML file with measurement settings (MetadataConfig)."),
    set_: list[str] = typer.Option([], "--set", help="Override a setting, e.g. --set silence_threshold_dbfs=-45."),
) -> None:
    """List every recording under ROOT with its label, generator, speaker, utterance and measured metadata.

    Unreadable files are skipped and listed in <out>.skipped.csv; protocol rows whose audio is absent in
    <out>.missing.csv.

    Example: audios manifest ../shared/corpus/dev -o runs/dev/manifest.csv
    """
    cfg = load_config(MetadataConfig, config, set_)
    result = build_manifest(root, layout=layout, workers=workers, progress=progress, limit=limit, config=cfg)
    write_table(result.table, out)
    write_run_info(out.with_suffix(".run"), "manifest", {"root": str(root), "layout": result.layout,
                                                          "metadata": config_to_dict(cfg)})
    if result.skipped:
        write_table(pd.DataFrame(result.skipped, columns=["path", "reason"]), out.with_suffix(".skipped.csv"))
    if result.missing:
        write_table(pd.DataFrame(result.missing, columns=["path", "reason"]), out.with_suffix(".missing.csv"))
    console.print(result.summary())
    console.print(f"wrote {out}")


@app.command("toy-corpus")
@friendly_errors
def toy_corpus(
    out: Path = typer.Argument(Path("out/toy-corpus"), help="Folder to write the toy corpus into."),
    n_speakers: int = typer.Option(10, help="Number of synthetic 'speakers'."),
    utterances: int = typer.Option(4, help="Utterances per speaker (each gets a bona fide and a spoof version)."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Generate the embedded default corpus: synthetic, NOT speech. For trying the pipeline without data.

    Bona fide stand-ins are formant-synthesised vowel chains; spoofs are their Griffin-Lim copy-syntheses.
    """
    from audios.toy import ToyCorpusConfig, make_toy_corpus

    path = make_toy_corpus(out, ToyCorpusConfig(n_speakers=n_speakers, utterances_per_speaker=utterances, seed=seed))
    console.print(f"wrote a synthetic toy corpus (not real speech) to {path}")
