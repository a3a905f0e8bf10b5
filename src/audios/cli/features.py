"""Features command: one extractor over a manifest, cached and resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from audios.cli.app import app, console, friendly_errors
from audios.config import load_config
from audios.errors import ConfigError
from audios.features import EXTRACTORS, describe_extractor, get_extractor
from audios.features.extract import default_cache_dir, extract_features
from audios.manifest import read_manifest
from audios.runs import write_run_info

ENGINES = ("local", "ray")


@app.command()
@friendly_errors
def features(
    manifest: Path = typer.Argument(..., help="Manifest (.csv or .parquet) from `audios manifest`."),
    extractor: str = typer.Option("spectral", "-e", "--extractor", help=f"One of: {', '.join(sorted(EXTRACTORS))}, or neural (ssl with --model, else resemblyzer)."),
    out: Path = typer.Option(Path("features.parquet"), "-o", "--out", help="Output feature table (.parquet)."),
    cache: Path = typer.Option(None, help="Cache folder (default ~/.cache/audios/features)."),
    root: Path = typer.Option(None, help="Corpus root the manifest's paths start from (overrides its `root`)."),
    workers: int = typer.Option(1, help="Worker processes for decoding and extraction (ray: extractor actors)."),
    engine: str = typer.Option("local", "--engine", help="local (process pool) or ray (Ray Data pipeline; attaches "
                               "to the cluster at RAY_ADDRESS when set, else starts a local Ray)."),
    batch_size: int = typer.Option(16, help="Recordings per extraction batch."),
    part_size: int = typer.Option(256, help="Recordings per cache part (a kill loses at most one part)."),
    config: Path = typer.Option(None, help="YAML file with the extractor's settings."),
    set_: list[str] = typer.Option([], "--set", help="Override a setting, e.g. --set extended=true or n_mels=64."),
    model: str = typer.Option(None, "--model", help="ssl: a wav2vec 2.0 / HuBERT / WavLM hub id or local folder."),
    layer: str = typer.Option(None, "--layer", help="ssl: last, a layer index, a list like [4,8], or all."),
    pool: str = typer.Option(None, "--pool", help="ssl: mean or mean+std."),
    quantize: str = typer.Option(None, "--quantize", help="ssl: none, int8 (int8 Linear layers and CNN; prints its cosine to fp32) or bf16 (bfloat16 autocast: fast on "
                                "CPUs with AVX512-BF16/AMX and on GPUs)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="aasist: a released AASIST or AASIST-L .pth file."),
    progress: bool = typer.Option(True, help="Show a progress bar (on terminals)."),
) -> None:
    """Extract EXTRACTOR features for every row of MANIFEST into a Parquet table.

    Results are cached by content hash and extractor config: a rerun, or a run on a grown manifest,
    computes only new recordings, and a killed run resumes. Unusable files go to <out>.skipped.csv.

    Extractors: spectral (the 15-column table centroid, entropy, mfcc_0..12; --set extended=true for 68),
    lfcc / mfcc / logmel (frame matrices for GMMs and deep models), ssl (wav2vec 2.0, HuBERT, WavLM through
    transformers), resemblyzer (a pretrained 256-d speaker encoder that works offline) and aasist (the 160-d
    hidden embedding of a released AASIST/AASIST-L checkpoint).

    Examples:
      audios features runs/dev/manifest.csv -e spectral --set extended=true -o runs/dev/spectral.parquet
      audios features runs/dev/manifest.csv -e ssl --model facebook/wav2vec2-base --layer last --quantize int8
      audios features runs/dev/manifest.csv -e resemblyzer -o runs/dev/resemblyzer.parquet
      audios features runs/dev/manifest.csv -e aasist --checkpoint ../shared/models/aasist/AASIST-L.pth
      RAY_ADDRESS=auto audios features runs/dev/manifest.csv -e ssl --engine ray --workers 8
    """
    if extractor == "neural":
        # The default neural extractor: an SSL model when a checkpoint is given, else the speaker encoder that
        # ships inside the resemblyzer package (works offline).
        extractor = "ssl" if model else "resemblyzer"
        console.print(f"neural features: using {extractor}" + (f" ({model})" if model else
                      " (no --model given; pass a wav2vec 2.0 / HuBERT / WavLM checkpoint for ssl)"))
    if extractor not in EXTRACTORS:
        get_extractor(extractor)  # raises, listing the known names
    ssl_options = {"model": model, "layer": layer, "pool": pool, "quantize": quantize}
    given = {k: v for k, v in ssl_options.items() if v is not None}
    if given and extractor != "ssl":
        raise ConfigError(f"--{', --'.join(given)} only apply to the ssl extractor, not {extractor!r}")
    overrides = [*set_, *(f"{k}={v}" for k, v in given.items())]
    if checkpoint is not None:
        if extractor != "aasist":
            raise ConfigError(f"--checkpoint only applies to the aasist extractor, not {extractor!r}")
        overrides.append(f"checkpoint={checkpoint}")
    ext = get_extractor(extractor, load_config(EXTRACTORS[extractor].Config, config, overrides))
    if engine not in ENGINES:
        raise ConfigError(f"--engine={engine!r} must be one of {', '.join(ENGINES)}")
    cache_dir = cache or default_cache_dir()
    run = extract_features
    if engine == "ray":
        from audios.features.ray_engine import extract_features_ray as run
    report = run(
        read_manifest(manifest, root=root), ext, out, cache_dir=cache_dir, workers=workers,
        batch_size=batch_size, part_size=part_size, progress=progress,
    )
    write_run_info(out.with_suffix(".run"), "features", {
        "manifest": str(manifest), "out": str(out), "cache": str(cache_dir), "engine": engine, "workers": workers,
        "batch_size": batch_size, "part_size": part_size, **describe_extractor(ext),
    })
    console.print(report.summary())
    if extractor == "ssl" and getattr(ext.config, "quantize", "none") != "none":
        _report_quantization_cosine(ext, read_manifest(manifest, root=root))


def _report_quantization_cosine(ext, table) -> None:
    """How close int8 / bf16 embeddings are to fp32 ones, on up to 4 recordings of the manifest."""
    from dataclasses import replace

    from audios.audio import load_audio
    from audios.features.ssl import quantization_cosine
    from audios.manifest import audio_paths

    signals = [load_audio(p) for p in audio_paths(table.head(4))]
    mode = ext.config.quantize
    cos = quantization_cosine(replace(ext.config, quantize="none"), signals, mode)
    console.print(f"{mode} vs fp32 embedding cosine similarity on {len(signals)} recordings: "
                  f"min {min(cos):.4f}, mean {sum(cos) / len(cos):.4f}")
