"""CLI commands beyond single-model detection: ``fuse``, ``explain`` and ``localize-eval`` (registered on import)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from audios.cli.app import app, console, friendly_errors
from audios.errors import ConfigError


@app.command("fuse")
@friendly_errors
def fuse_command(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder: fusion.json, fused scores, MODEL_CARD.md."),
    val: list[Path] = typer.Option([], "--val", help="Validation score file of one member (repeat, in member order)."),
    test: list[Path] = typer.Option([], "--test", help="Test score file of one member (repeat, same order as --val)."),
    member: list[str] = typer.Option([], "--member", help="Detector spec of one member (run folder, aasist=PATH...; "
                                     "repeat). Needed for a fused model that scores audio."),
    manifest: Path = typer.Option(None, help="Score the manifest's val and test rows with the --member detectors "
                                  "instead of reading score files."),
    root: Path = typer.Option(None, help="Corpus root of --manifest (overrides its `root`)."),
    key: Path = typer.Option(None, help="Key/protocol/manifest giving labels to score files that lack them."),
    name: list[str] = typer.Option([], "--name", help="Member names (repeat; default: from the spec or file)."),
    prior: float = typer.Option(0.5, help="P(bona fide) the fusion objective weights the classes by."),
    l2: float = typer.Option(1e-3, help="Ridge on the standardised weights."),
    progress: bool = typer.Option(True, help="Progress bars while scoring a manifest (on terminals)."),
) -> None:
    """Fuse several detectors by logistic regression on validation scores; the fused score is a calibrated LLR.

    Either give one --val (and optionally --test) score file per member, joined by id, or give --member
    detectors and a --manifest with a `split` column (val rows fit the fusion, test rows are reported). With
    --member, the output folder is itself a detector (`audios detect --model OUT`, `audios serve --model OUT`);
    score files must then hold the members' detector scores (what `audios detect` reports), not raw back-end
    scores.

    Examples:
      audios fuse --member runs/lfcc --member runs/spectral --manifest split.csv -o runs/fused
      audios fuse --val a/scores_val.csv --val b/scores_val.csv --test a/scores_test.csv --test b/scores_test.csv -o f
    """
    from audios.evaluate.scores import read_scores
    from audios.fusion import FusionConfig, fuse_scores, member_name, score_members

    config = FusionConfig(prior=prior, l2=l2)
    if manifest is not None:
        from audios.manifest import read_manifest

        if not member or val or test:
            raise ConfigError("--manifest needs --member detectors and no --val/--test score files")
        table = read_manifest(manifest, root=root)
        if "split" not in table.columns:
            raise ConfigError(f"{manifest}: no `split` column (make one with `audios split`)")
        splits = table["split"].astype(str)
        if not (splits == "val").any():
            raise ConfigError(f"{manifest}: no rows with split=val to fit the fusion on")
        val_frames = score_members(member, table[splits == "val"], progress=progress)
        test_frames = score_members(member, table[splits == "test"], progress=progress) if (splits == "test").any() \
            else None
        sources = member
    else:
        if len(val) < 2:
            raise ConfigError("give at least two --val score files (one per member), or --member with --manifest")
        if test and len(test) != len(val):
            raise ConfigError(f"{len(test)} --test files for {len(val)} --val files")
        if member and len(member) != len(val):
            raise ConfigError(f"{len(member)} --member specs for {len(val)} --val files")
        val_frames = [read_scores(p, key=key) for p in val]
        test_frames = [read_scores(p, key=key) for p in test] or None
        sources = member or [str(p.parent if p.name.startswith("scores") else p) for p in val]
    if name and len(name) != len(sources):
        raise ConfigError(f"{len(name)} --name values for {len(sources)} members")
    taken: set[str] = set()
    names = list(name) or [member_name(s, taken) for s in sources]
    result = fuse_scores(val_frames, names, out_dir, test=test_frames, specs=list(member) or None, config=config)
    console.print(result.summary())


@app.command("explain")
@friendly_errors
def explain_command(
    paths: list[Path] = typer.Argument(..., help="Audio files to explain."),
    model: str = typer.Option(None, "--model", "-m", help="Detector spec (as for `audios detect`); default: bundled."),
    out_dir: Path = typer.Option(Path("explanations"), "--out", "-o", help="Folder for <stem>.explain.png/.json."),
    method: str = typer.Option("auto", help="auto (integrated gradients for PyTorch models, else occlusion), "
                               "occlusion or integrated-gradients."),
    bands: int = typer.Option(16, help="Frequency bands of the saliency grid."),
    times: int = typer.Option(8, help="Time patches of the saliency grid."),
    max_duration_s: float = typer.Option(6.0, help="Explain the first this many seconds."),
) -> None:
    """Explain each verdict: a saliency map over the spectrogram (and feature contributions for linear back-ends).

    Red cells are evidence for "fake", blue for "real". Writes OUT/<stem>.explain.png beside
    OUT/<stem>.explain.json (the verdict of `audios detect` plus the top bands and features).

    Example: audios explain clip.wav --model runs/spectral-logreg -o explanations/
    """
    from audios.detect import load_detector
    from audios.explain import ExplainConfig, explain_file

    config = ExplainConfig(method=method, n_bands=bands, n_times=times, max_duration_s=max_duration_s)
    detector = load_detector(model)
    for path in paths:
        out = explain_file(detector, path, out_dir, config)
        bands_text = ", ".join(f"{b['low_hz'] / 1000:.1f}-{b['high_hz'] / 1000:.1f} kHz"
                               for b in out["explanation"]["top_bands"])
        console.print(f"{path}: {out['decision']} (p_fake {out['p_fake']:.3f}); strongest evidence for fake: "
                      f"{bands_text or 'none'} -> {out['explanation']['png']}")


@app.command("localize-eval")
@friendly_errors
def localize_eval_command(
    spliced: Path = typer.Argument(..., help="A spliced manifest (`audios synth --splice`: spliced.csv)."),
    model: str = typer.Option(None, "--model", "-m", help="Detector spec (as for `audios detect`); default: bundled."),
    segment_s: float = typer.Option(0.16, help="Segment length in seconds."),
    hop_s: float = typer.Option(0.08, help="Hop between segments in seconds."),
    context_s: float = typer.Option(None, help="Window that scores a segment (default: the segment, or the "
                                    "model's window for fixed-input models)."),
    smooth: int = typer.Option(5, help="Running-median length in segments (1 = none)."),
    tolerance_s: float = typer.Option(0.2, help="Boundary tolerance in seconds."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the metrics as JSON (and per-file CSV beside it)."),
    progress: bool = typer.Option(True, help="Progress bar (on terminals)."),
) -> None:
    """Localisation metrics on spliced recordings: segment-level EER and boundary precision/recall.

    Example: audios localize-eval runs/synth/spliced.csv --model runs/spectral-logreg --tolerance-s 0.2
    """
    from audios.detect import load_detector
    from audios.localize import SegmentConfig, evaluate_localization
    from audios.manifest import read_manifest
    from audios.manifest.io import write_table
    from audios.runs import write_text_atomic

    config = SegmentConfig(segment_s=segment_s, hop_s=hop_s, context_s=context_s, smooth=smooth)
    report = evaluate_localization(load_detector(model), read_manifest(spliced), config, tolerance_s,
                                   progress=progress)
    if out is not None:
        write_text_atomic(out, json.dumps(report.as_dict(), indent=2) + "\n")
        write_table(report.per_file, out.with_suffix(".files.csv"))
    console.print(report.summary())
