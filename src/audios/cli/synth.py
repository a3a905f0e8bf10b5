"""CLI command for copy-synthesis (registered on import)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from audios.cli.app import app, console, friendly_errors
from audios.config import apply_overrides, build_config
from audios.errors import ConfigError
from audios.manifest import read_manifest
from audios.synth import METHODS, SynthConfig, get_method, synthesize_manifest


@app.command("synth")
@friendly_errors
def synth_command(
    manifest: Path = typer.Argument(..., help="Manifest (.csv or .parquet) whose bona fide rows are the sources."),
    method: str = typer.Option("world", "--method", "-m",
                               help=f"Comma-separated methods: {', '.join(sorted(METHODS))}."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder: audio, manifest.csv, paired.csv, skipped.csv."),
    root: Path = typer.Option(None, help="Corpus root the manifest's paths start from (overrides its `root`)."),
    f0_scale: float = typer.Option(None, help="world: multiply F0 by this [1.0]."),
    sp_warp: float = typer.Option(None, help="world: stretch the spectral envelope's frequency axis [1.0]."),
    representation: str = typer.Option(None, help="griffinlim: invert a 'stft' or 'mel' magnitude [stft]."),
    iterations: int = typer.Option(None, help="griffinlim: iterations [32]."),
    model: str = typer.Option(None, help="vocoder or codec: hub id or local folder (save_pretrained)."),
    bandwidth_kbps: float = typer.Option(None, help="codec: bit rate in kbit/s [6]."),
    voices: str = typer.Option(None, help="espeak: comma-separated espeak-ng voices to draw from."),
    seed: int = typer.Option(None, help="Seed of --limit's sample and of each file's random choices [0]."),
    workers: int = typer.Option(1, help="Worker processes (each loads its models once)."),
    limit: int = typer.Option(None, help="Only a seeded random sample of N bona fide recordings."),
    progress: bool = typer.Option(True, help="Show a progress bar (on terminals)."),
    config: Path = typer.Option(None, help="YAML with SynthConfig fields and per-method sections (world: {...})."),
    set_: list[str] = typer.Option([], "--set", help="Override a field, e.g. --set world.f0_method=harvest."),
    splice: bool = typer.Option(False, "--splice", help="Also build partly spoofed recordings: a stretch of each "
                                "spoof spliced into its bona fide parent (OUT/spliced/, OUT/spliced.csv with the "
                                "true spoof_regions)."),
    splice_min_s: float = typer.Option(0.8, help="--splice: shortest spliced stretch in seconds."),
    splice_max_s: float = typer.Option(1.6, help="--splice: longest spliced stretch in seconds."),
) -> None:
    """Make spoofs from bona fide speech by copy-synthesis, one per recording and method.

    Writes OUT/<generator>/... audio at each source's rate and loudness, OUT/manifest.csv (spoofs, each
    with parent_id) and OUT/paired.csv (parents + spoofs, ready for `audios split`). Resumable: rerun
    the same command after an interruption and finished files are skipped.

    With --splice, each spoof also yields a partly spoofed recording (a stretch of the spoof inside its
    parent, crossfaded; the true boundaries go into OUT/spliced.csv) for `audios localize-eval`.

    Example: audios synth runs/dev/manifest.csv --method world,griffinlim -o runs/synth --limit 20 --workers 2
    """
    methods = [m.strip() for m in method.split(",") if m.strip()]
    for name in methods:
        get_method(name)
    shortcuts = {
        "world": {"f0_scale": f0_scale, "sp_warp": sp_warp},
        "griffinlim": {"representation": representation, "n_iter": iterations},
        "vocoder": {"model": model},
        "codec": {"model": model, "bandwidth_kbps": bandwidth_kbps},
        "espeak": {"voices": [v.strip() for v in voices.split(",") if v.strip()] if voices else None},
    }
    if model is not None and {"vocoder", "codec"} <= set(methods):
        raise ConfigError("--model is ambiguous with both vocoder and codec; use --set vocoder.model=... "
                          "and --set codec.model=...")
    overrides = [f"methods={json.dumps(methods)}"] + ([f"seed={seed}"] if seed is not None else [])
    for name in methods:
        overrides += [f"{name}.{k}={json.dumps(v)}" for k, v in shortcuts.get(name, {}).items() if v is not None]
    data = apply_overrides(_yaml(config), overrides + list(set_))
    per_method = {name: data.pop(name, None) or {} for name in list(METHODS) if name in data or name in methods}
    stray = sorted(k for k, v in per_method.items() if v and k not in methods)
    if stray:
        raise ConfigError(f"settings for method(s) {stray} given, but --method is {methods}")
    run_cfg = build_config(SynthConfig, data)
    settings = {name: build_config(get_method(name).config_cls, per_method.get(name, {})) for name in run_cfg.methods}
    report = synthesize_manifest(read_manifest(manifest, root=root), out_dir, run_cfg, settings, workers=workers,
                                 limit=limit, progress=progress)
    console.print(report.summary())
    if splice:
        from audios.synth.splice import SpliceConfig, splice_pairs

        splice_config = SpliceConfig(min_s=splice_min_s, max_s=splice_max_s, seed=run_cfg.seed)
        console.print(splice_pairs(read_manifest(report.paired_path), out_dir, splice_config).summary())


def _yaml(path: Path | None) -> dict:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config must be a mapping")
    return data
