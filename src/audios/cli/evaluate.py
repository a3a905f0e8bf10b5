"""CLI commands for the evaluate stage (registered on import)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from audios.cli.app import app, console, friendly_errors
from audios.evaluate import DcfCosts, evaluate_scores, read_scores, write_report
from audios.evaluate.report import BREAKDOWN_HEADER, breakdown_rows, calibration_rows, decision_rows, summary_rows


class ScoreFormat(str, Enum):
    auto = "auto"
    ours = "ours"
    asvspoof2019 = "asvspoof2019"
    asvspoof2021 = "asvspoof2021"
    asvspoof5 = "asvspoof5"


class Per(str, Enum):
    generator = "generator"
    source = "source"
    duration = "duration"


def _table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for h in header:
        table.add_column(h)
    for r in rows:
        table.add_row(*r)
    return table


@app.command()
@friendly_errors
def evaluate(
    scores: Path = typer.Argument(..., help="Score file (higher = more bona fide)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    per: Optional[list[Per]] = typer.Option(None, "--per", help="Add a breakdown table (repeatable)."),
    val: Optional[Path] = typer.Option(None, help="Validation scores: fit calibration and choose the threshold there."),
    report: Optional[Path] = typer.Option(None, help="Write report.md, report.html, PNGs and metrics.json here."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for 95 % intervals (0: none)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap's random generator."),
    format: ScoreFormat = typer.Option(ScoreFormat.auto, "--format", help="Score-file format."),
    key: Optional[Path] = typer.Option(None, help="Key/protocol/manifest giving labels (and attacks, speakers)."),
    val_format: ScoreFormat = typer.Option(ScoreFormat.auto, "--val-format", help="Format of --val."),
    val_key: Optional[Path] = typer.Option(None, help="Key for --val (default: --key)."),
    far: Optional[float] = typer.Option(None, help="Choose the threshold at this false-accept rate, not the EER."),
    c_miss: float = typer.Option(1.0, help="DCF cost of rejecting bona fide."),
    c_fa: float = typer.Option(10.0, help="DCF cost of accepting a spoof."),
    p_spoof: float = typer.Option(0.05, help="DCF prior of a spoof."),
) -> None:
    """EER, minDCF, actDCF, Cllr, AUC, AP and ECE of SCORES with bootstrap 95 % intervals.

    Example: audios evaluate runs/aasist/scores.csv --val runs/aasist/val_scores.csv --per generator --report out/
    """
    test = read_scores(scores, format=format.value, key=key)
    val_df = read_scores(val, format=val_format.value, key=val_key or key) if val is not None else None
    result = evaluate_scores(
        test, val=val_df, per=[p.value for p in per or []], n_bootstrap=bootstrap,
        rng=np.random.default_rng(seed), costs=DcfCosts(c_miss=c_miss, c_fa=c_fa, p_spoof=p_spoof), target_far=far,
    )
    if report is not None:
        write_report(result, report)
        from audios.runs import write_run_info

        write_run_info(report, "evaluate", {"scores": str(scores), "val": str(val) if val else None,
                                             "per": [str(getattr(p, "value", p)) for p in (per or [])], "bootstrap": bootstrap, "seed": seed}, seed=seed)
    if json_out:
        payload = result.to_dict()
        payload["bootstrap"]["seed"] = seed
        print(json.dumps(payload))
        return
    console.print(_table(f"{scores}", ["metric", "value", "95 % CI"], summary_rows(result)))
    console.print(_table("decisions (spoof = positive)", ["", "value"], decision_rows(result)))
    if result.calibration is not None:
        console.print(_table("calibration (fitted on --val)", ["", "before", "after"],
                             calibration_rows(result.calibration)))
    for name, rows in result.breakdowns.items():
        console.print(_table(f"per {name}", BREAKDOWN_HEADER, breakdown_rows(rows)))
    if report is not None:
        console.print(f"wrote {report / 'report.md'} and {report / 'report.html'}")
