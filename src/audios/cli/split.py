"""CLI commands for the split stage (registered on import)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer
from rich.table import Table

from audios.cli.app import app, console, friendly_errors
from audios.config import config_to_dict
from audios.errors import ConfigError
from audios.manifest import read_manifest, write_table
from audios.runs import write_run_info, write_text_atomic
from audios.split import (
    BALANCE_METHODS, SplitConfig, SplitResult, balance_train, leave_one_generator_out, safe_name, split_manifest,
)


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise ConfigError(f"{name}: {text!r} is not a comma-separated list of numbers") from exc


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _print_result(result: SplitResult, title: str) -> None:
    table = Table(title=title)
    for col in ("split", "files", "hours", "bonafide", "spoof", "generators", "speakers"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for _, r in result.counts().iterrows():
        table.add_row(str(r["split"]), str(r["files"]), f"{r['hours']:.2f}", str(r["bonafide"]), str(r["spoof"]),
                      str(r["generators"]), str(r["speakers"]))
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]{note}[/dim]")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    leaks = Table(title="leak check: values shared between splits")
    frame = result.leak.table()
    for col in frame.columns:
        leaks.add_column(col, justify="left" if col == "pair" else "right")
    for _, r in frame.iterrows():
        leaks.add_row(*[str(r[c]) if c == "pair" else
                        (f"[red]{r[c]}[/red]" if r[c] and c in result.leak.strict_columns else str(r[c]))
                        for c in frame.columns])
    console.print(leaks)
    console.print("[green]no leaks[/green]" if result.leak.ok else "[red]leaks: " + "; ".join(result.leak.errors))


def _write_result(result: SplitResult, out: Path, balance: str | None, seed: int) -> SplitResult:
    table = balance_train(result.table, balance, seed) if balance else result.table
    write_table(table, out)
    write_text_atomic(out.with_suffix(".leakcheck.json"), json.dumps(
        {**result.leak.to_dict(), "warnings": result.warnings, "notes": result.notes, "mode": result.mode}, indent=2))
    return result


@app.command()
@friendly_errors
def split(
    manifest: Path = typer.Argument(..., help="Manifest to split (.csv or .parquet)."),
    out: Path = typer.Option(Path("split.csv"), "-o", "--out",
                             help="Output manifest with a split column (a folder with --leave-one-generator-out)."),
    ratios: str = typer.Option("0.8,0.1,0.1", help="Shares of the splits, summing to 1."),
    names: str = typer.Option("train,val,test", help="Split names (train, val, test, pretext, downstream)."),
    seed: int = typer.Option(0, help="Random seed."),
    group_by: str = typer.Option("", help="Extra columns that must not cross splits, e.g. 'speaker'."),
    keep_official: bool = typer.Option(None, "--keep-official/--ignore-official",
                                       help="Keep the manifest's subset column as the split (default: when filled)."),
    holdout_generators: str = typer.Option("", help="Comma-separated generators put in test only (unseen attacks)."),
    leave_one_generator_out_: bool = typer.Option(False, "--leave-one-generator-out",
                                                  help="Write one split per spoof generator, that generator in test."),
    balance: str = typer.Option(None, help=f"Balance the train rows: {', '.join(BALANCE_METHODS)}."),
    tolerance: float = typer.Option(0.05, help="Warn when a split misses its share by more than this."),
) -> None:
    """Split MANIFEST into train/val/test so that no content hash, utterance, parent recording (or speaker) leaks.

    Writes the manifest with a `split` column, <out>.leakcheck.json with the overlaps between splits,
    and config.yaml + run.json beside it.

    Example: audios split runs/dev/manifest.csv -o runs/dev/split.csv --group-by speaker
    """
    config = SplitConfig(
        ratios=_floats(ratios, "ratios"), names=_names(names), seed=seed, group_by=_names(group_by),
        keep_official=keep_official, holdout_generators=_names(holdout_generators), tolerance=tolerance,
    )
    if balance is not None and balance not in BALANCE_METHODS:
        raise ConfigError(f"balance: {balance!r} is not one of {list(BALANCE_METHODS)}")
    df = read_manifest(manifest)
    run_config = {"manifest": str(manifest), "out": str(out), "balance": balance,
                  "leave_one_generator_out": leave_one_generator_out_, "split": config_to_dict(config)}
    if not leave_one_generator_out_:
        result = _write_result(split_manifest(df, config), out, balance, seed)
        write_run_info(out.parent, "split", run_config, seed=seed)
        _print_result(result, f"{manifest} → {out}")
        console.print(f"wrote {out} and {out.with_suffix('.leakcheck.json')}")
        return
    results = leave_one_generator_out(df, config)
    rows = []
    for gen, result in results.items():
        path = out / f"split_{safe_name(gen)}.csv"
        _write_result(result, path, balance, seed)
        counts = result.counts().set_index("split")
        test = counts.loc["test"] if "test" in counts.index else None
        rows.append({"generator": gen, "file": path.name, "leak_ok": result.leak.ok, "dropped": result.dropped,
                     **{f"n_{s}": int(counts.loc[s, "files"]) if s in counts.index else 0 for s in config.names},
                     "test_bonafide": int(test["bonafide"]) if test is not None else 0,
                     "test_spoof": int(test["spoof"]) if test is not None else 0,
                     "warnings": " | ".join(result.warnings)})
    index = pd.DataFrame(rows)
    write_table(index, out / "index.csv")
    write_run_info(out, "split", run_config, seed=seed)
    table = Table(title=f"leave-one-generator-out: {len(rows)} splits in {out}")
    for col in ("generator", "n_train", "n_val", "test_bonafide", "test_spoof", "dropped", "leak_ok"):
        if col in index.columns:
            table.add_column(col, justify="left" if col == "generator" else "right")
    for _, r in index.iterrows():
        table.add_row(*[str(r[c]) for c in ("generator", "n_train", "n_val", "test_bonafide", "test_spoof", "dropped",
                                            "leak_ok") if c in index.columns])
    console.print(table)
    n_warn = sum(1 for r in rows if r["warnings"])
    if n_warn:
        console.print(f"[yellow]{n_warn} split(s) have warnings; see index.csv[/yellow]")
    console.print(f"wrote {len(rows)} split files and index.csv to {out}")
