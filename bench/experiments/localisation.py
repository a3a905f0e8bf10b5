"""Issue 11: localisation of partly spoofed recordings: segment-level EER and boundary precision/recall.

Run:  python bench/experiments/localisation.py   (prints markdown; everything under $AUDIOS_EXP_CACHE/loc)

Steps, each an ordinary ``audios`` command (printed before it runs, so the numbers can be reproduced by hand):

1. Parents: the 45 bona fide recordings of the bundled default detector's *test* split (``train_info.json``
   ``test_ids``), so neither they nor their WORLD copies were seen in its training.
2. ``audios synth PARENTS --root DEV -m world --splice``: one WORLD copy-synthesis per parent, and a 0.8-1.6 s
   stretch of it spliced into the parent (10 ms crossfades, at least 0.5 s from the edges); ``spliced.csv`` lists
   the spliced recordings (one true spoofed range each) and the untouched parents (no range).
3. A classic run for comparison: extended spectral features of whole dev clips (``audios features``), every
   dev row except those sharing an utterance with a parent, split 70/15/15 by utterance; ``audios train-classic``
   RBF SVM (C=10, gamma=0.01, the classic_backends.py choice). It never saw a WORLD spoof.
4. Each detector (the bundled default detector, from a frozen copy of its classic folder in
   ``$AUDIOS_EXP_CACHE/loc/bundled_detector``; the classic run) scores every recording once per analysis
   context with ``audios.localize.score_segments_path`` at the default segment settings (160 ms segments every
   80 ms, 5-segment running median, threshold = the detector's own); the context is the segment itself (the
   default for classic detectors) or 1 s (``--context-s 1.0``). From those scores: the segment-level EER and
   boundary precision/recall at 0.2 s and 0.5 s exactly as ``audios localize-eval`` computes them (the same
   library functions; the default-context, 0.2 s numbers are checked against the CLI's own JSON), plus what
   ``localize-eval`` does not report:

   * IoU of flagged time vs true spoofed time per spliced recording (mean, and the share with IoU >= 0.5);
   * the flagged share of the untouched parents' duration (false-alarm time);
   * a 95 % interval for the segment EER from resampling *recordings* (segments of one file are not
     independent), 1000 resamples, seed 0.

5. ``--plot PNG``: the timeline of one spliced recording (spectrogram, true range, segment p_fake, flagged
   ranges) for the bundled detector at the default settings.

About 10 min on the shared 2-core machine (two scoring passes per detector over 88 recordings, ~5 min of audio).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import common as C
from audios.detect import load_detector
from audios.errors import AudioError
from audios.evaluate import equal_error_rate
from audios.localize import (SegmentConfig, SegmentScores, match_boundaries, parse_regions, region_boundaries,
                             score_segments_path, segment_labels)
from audios.manifest.io import audio_paths
from audios.split import SplitConfig, split_manifest

REPO = Path(__file__).resolve().parents[2]
LOC = C.CACHE / "loc"
SYNTH = LOC / "synth"
TOLERANCES = (0.2, 0.5)
CONTEXTS = (None, 1.0)


def sh(cmd: list[str]) -> None:
    C.log.info("$ %s", shlex.join(cmd))
    subprocess.run(cmd, check=True, stdout=sys.stderr)  # stdout is the markdown report


def bundled_copy() -> Path | None:
    """A frozen copy of the issue-9 bundled default detector (the classic ``model.joblib`` one), so later changes
    to the bundled detector do not silently change these numbers; scored as a classic run folder. None when
    neither the copy nor a classic bundled detector is at hand (it was replaced by the portable one)."""
    out = LOC / "bundled_detector"
    if not (out / "model.joblib").exists():
        src = REPO / "src/audios/data/default_detector"
        if not (src / "model.joblib").exists():
            C.log.warning("no classic bundled detector (%s/model.joblib) or frozen copy: skipping that row", src)
            return None
        shutil.copytree(src, out, dirs_exist_ok=True)
    return out


def portable_copy() -> Path | None:
    """A copy of the portable (ONNX) bundled detector of issue 12, frozen like the classic one."""
    out = LOC / "bundled_portable"
    if not (out / "detector.json").exists():
        src = REPO / "src/audios/data/default_detector"
        if not (src / "detector.json").exists():
            return None
        shutil.copytree(src, out, dirs_exist_ok=True)
    return out


def parents() -> Path:
    info = json.loads((REPO / "src/audios/data/default_detector/train_info.json").read_text())
    test_ids = set(info["test_ids"])
    m = pd.read_csv(C.DEV / "manifest.csv")
    ids = m["path"].astype(str).str.rsplit(".", n=1).str[0]
    sel = m[ids.isin(test_ids) & (m["label"] == "bonafide")]
    LOC.mkdir(parents=True, exist_ok=True)
    out = LOC / "parents.csv"
    sel.to_csv(out, index=False)
    return out


def classic_run(parent_csv: Path) -> Path:
    run = LOC / "classic_svm"
    if (run / "model.joblib").exists():
        return run
    df = C.dev_manifest()
    used = set(pd.read_csv(parent_csv)["utterance"].astype(str))
    df = df[~df["utterance"].astype(str).isin(used)].drop(columns=["id"]).reset_index(drop=True)
    res = split_manifest(df, SplitConfig(ratios=(0.7, 0.15, 0.15), names=("train", "val", "test"), seed=0))
    if not res.leak.ok:
        raise SystemExit(f"split leaks: {res.leak.errors}")
    man = LOC / "classic_manifest.csv"
    res.table.to_csv(man, index=False)
    feats = LOC / "classic_spectral.parquet"
    sh(["audios", "features", str(man), "-e", "spectral", "--set", "extended=true", "-o", str(feats),
        "--cache", str(LOC / "featcache")])
    sh(["audios", "train-classic", str(feats), "--model", "svm", "--params", '{"C": 10.0, "gamma": 0.01}',
        "--cv-group-by", "utterance", "--out", str(run), "--seed", "0"])
    return run


def covered_s(regions: list[tuple[float, float]]) -> float:
    """Total length of a union of time ranges (s)."""
    total, end = 0.0, -np.inf
    for a, b in sorted(regions):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def iou(pred: list[tuple[float, float]], truth: list[tuple[float, float]]) -> float:
    """Intersection over union of two sets of time ranges (nan when both are empty)."""
    inter = covered_s(pred) + covered_s(truth) - covered_s(pred + truth)
    union = covered_s(pred + truth)
    return inter / union if union > 0 else float("nan")


def score_all(detector: Any, table: pd.DataFrame, config: SegmentConfig) -> list[dict[str, Any]]:
    """One scoring pass: each recording's segments, segment labels, flagged and true ranges."""
    out = []
    for path, text in zip(audio_paths(table), table["spoof_regions"], strict=True):
        try:
            seg = score_segments_path(detector, path, config)
        except AudioError as exc:
            C.log.warning("%s: skipped (%s)", path, exc.reason)
            continue
        truth = parse_regions(text, f"{path}: spoof_regions")
        flagged = [(r["start_s"], r["end_s"]) for r in seg.flagged_regions()]
        out.append({"path": str(path), "seg": seg, "labels": segment_labels(seg, truth), "truth": truth,
                    "flagged": flagged})
    return out


def metrics(files: list[dict[str, Any]], tolerances: tuple[float, ...], resamples: int) -> dict[str, Any]:
    scores = [f["seg"].scores for f in files]
    labs = [f["labels"] for f in files]
    s, y = np.concatenate(scores), np.concatenate(labs)
    eer = equal_error_rate(s, y).eer
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(resamples):  # resample recordings, keep each one's segments together
        idx = rng.integers(0, len(files), len(files))
        ys = np.concatenate([labs[i] for i in idx])
        if ys.all() or not ys.any():
            continue
        boot.append(equal_error_rate(np.concatenate([scores[i] for i in idx]), ys).eer)
    spliced = [f for f in files if f["truth"]]
    parents_ = [f for f in files if not f["truth"]]
    ious = np.array([iou(f["flagged"], f["truth"]) for f in spliced])
    out: dict[str, Any] = {
        "segment_eer": float(eer), "segment_eer_lo": float(np.quantile(boot, 0.025)),
        "segment_eer_hi": float(np.quantile(boot, 0.975)), "n_files": len(files), "n_spliced": len(spliced),
        "n_parents": len(parents_), "n_segments": int(s.size), "n_spoof_segments": int((~y).sum()),
        "mean_iou": float(np.mean(ious)), "median_iou": float(np.median(ious)),
        "share_iou_ge_0.5": float(np.mean(ious >= 0.5)),
        "spliced_flagged_share": float(np.mean([covered_s(f["flagged"]) / f["seg"].duration_s for f in spliced])),
        "spliced_any_overlap": float(np.mean([covered_s(f["flagged"]) + covered_s(f["truth"])
                                              - covered_s(f["flagged"] + f["truth"]) > 0 for f in spliced])),
        "parent_flagged_share": float(np.mean([covered_s(f["flagged"]) / f["seg"].duration_s
                                               for f in parents_])),
        "parents_clean": float(np.mean([not f["flagged"] for f in parents_])),
        "boundaries": {}}
    for tol in tolerances:
        c = None
        for f in files:
            pred = region_boundaries([{"start_s": a, "end_s": b} for a, b in f["flagged"]], f["seg"].duration_s)
            one = match_boundaries(pred, region_boundaries(f["truth"], f["seg"].duration_s), tol)
            c = one if c is None else c + one
        out["boundaries"][str(tol)] = {"precision": c.precision, "recall": c.recall, "hits": c.hits,
                                       "predicted": c.n_predicted, "true": c.n_true}
    return out


def plot_timeline(x: np.ndarray, sr: int, seg: SegmentScores, truth: list[tuple[float, float]], title: str,
                  out_png: str) -> None:
    """Spectrogram with the true spliced range and the flagged ranges; segment p_fake below."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from scipy import signal
    from scipy.special import expit

    f, t, spec = signal.spectrogram(x, fs=sr, nperseg=512, noverlap=384)
    db = 10 * np.log10(spec + 1e-12)
    fig = Figure(figsize=(9, 4.6), dpi=85)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.4, 1.5]})
    ax1.pcolormesh(t, f / 1000, db, shading="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max())
    ax1.set_ylabel("kHz")
    ax1.set_title(title, fontsize=10)
    centres = (seg.starts_s + seg.ends_s) / 2
    ax2.plot(centres, 1 - expit(seg.raw), color="#999", linewidth=0.8, label="segment p_fake (raw)")
    ax2.plot(centres, 1 - expit(seg.scores), color="#0072B2", linewidth=1.5, label="smoothed (5-segment median)")
    ax2.axhline(1 - expit(seg.threshold), color="#333", linestyle=":", linewidth=1, label="threshold")
    for i, (a, b) in enumerate(truth):
        for ax in (ax1, ax2):
            ax.axvspan(a, b, color="#009E73", alpha=0.25, linewidth=0, label="true spliced range"
                       if ax is ax2 and i == 0 else None)
    for i, r in enumerate(seg.flagged_regions()):
        ax1.axvspan(r["start_s"], r["end_s"], facecolor="none", edgecolor="#D55E00", hatch="//", linewidth=1.0)
        ax2.axvspan(r["start_s"], r["end_s"], ymin=0, ymax=0.06, color="#D55E00",
                    label="flagged" if i == 0 else None)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlim(0, seg.duration_s)
    ax2.set_ylabel("p(fake)")
    ax2.set_xlabel("time (s)")
    ax2.legend(fontsize=7, loc="upper left", ncol=3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png)
    shrink_png(out_png)


def shrink_png(path: str) -> None:
    """Re-save a PNG with a 256-colour palette (no dithering): a spectrogram PNG drops from ~330 KB to < 200 KB."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--plot", default=None, help="timeline PNG of one spliced recording (bundled detector)")
    ap.add_argument("--plot-id", default=None, help="id (spliced.csv) of the recording to plot; default: the "
                    "spliced recording with the median IoU")
    args = ap.parse_args()
    C.setup_logging()
    t0 = time.perf_counter()
    parent_csv = parents()
    if not (SYNTH / "spliced.csv").exists():
        sh(["audios", "synth", str(parent_csv), "--root", str(C.DEV), "-m", "world", "-o", str(SYNTH),
            "--workers", "1", "--seed", "0", "--splice", "--no-progress"])
    spliced = SYNTH / "spliced.csv"
    table = pd.read_csv(spliced)
    run = classic_run(parent_csv)
    candidates = (("bundled", "bundled default of issue 9 (spectral logreg, WORLD-trained)", bundled_copy()),
                  ("portable", "bundled default now (portable ONNX, MFCC logreg, WORLD-trained)", portable_copy()),
                  ("classic", "classic run: spectral SVM on whole dev clips (no WORLD)", run))
    detectors = tuple((k, label, str(m)) for k, label, m in candidates if m is not None)
    # The CLI's own numbers at the defaults, as a cross-check of the in-script metrics.
    cli = {}
    for key, _, model in detectors:
        out = LOC / f"eval_{key}_ctxseg_tol0.2.json"
        cmd = ["audios", "localize-eval", str(spliced), "--tolerance-s", "0.2", "-o", str(out), "--no-progress",
               "--model", model]
        if not out.exists():
            sh(cmd)
        cli[key] = json.loads(out.read_text())
    results = []
    kept: dict[str, Any] = {}
    for key, label, model in detectors:
        detector = load_detector(model)
        for ctx in CONTEXTS:
            t1 = time.perf_counter()
            files = score_all(detector, table, SegmentConfig(context_s=ctx))
            m = metrics(files, TOLERANCES, args.resamples)
            C.log.info("%s ctx=%s: %.0f s, %s", key, ctx, time.perf_counter() - t1,
                       {k: v for k, v in m.items() if k != "boundaries"})
            if ctx is None:
                ref = cli[key]
                if not (abs(ref["segment_eer"] - m["segment_eer"]) < 1e-9
                        and ref["boundary_hits"] == m["boundaries"]["0.2"]["hits"]
                        and ref["n_predicted_boundaries"] == m["boundaries"]["0.2"]["predicted"]):
                    raise SystemExit(f"{key}: in-script metrics differ from `audios localize-eval`: {ref} vs {m}")
                if key in ("bundled", "portable") and not kept:
                    kept = {"files": files, "detector": detector}
            model_var = {"bundled": "$BUNDLED_ISSUE9", "portable": "$BUNDLED", "classic": "$CLASSIC_RUN"}[key]
            cmd = "audios localize-eval $SPLICED --model " + model_var + (
                "" if ctx is None else f" --context-s {ctx}") + " --tolerance-s {0.2|0.5}"
            results.append({"detector": label, "context_s": ctx, **m, "command": cmd})
    (LOC / "localisation.json").write_text(json.dumps({"results": results, "seconds": time.perf_counter() - t0},
                                                      indent=2))
    if args.plot and kept:
        files = [f for f in kept["files"] if f["truth"]]
        if args.plot_id:
            pick = next(f for f in files if f["path"].endswith(args.plot_id))
        else:
            ious = np.array([iou(f["flagged"], f["truth"]) for f in files])
            pick = files[int(np.argsort(ious)[len(ious) // 2])]
        from audios.audio import AudioConfig, load_audio

        det = kept["detector"]
        x = load_audio(pick["path"], AudioConfig(sample_rate=det.sample_rate))
        name = Path(pick["path"]).name
        plot_timeline(x, det.sample_rate, pick["seg"], pick["truth"],
                      f"{name}: WORLD copy spliced in; bundled detector, default segments "
                      f"(IoU {iou(pick['flagged'], pick['truth']):.2f})", args.plot)
        C.log.info("plot: %s (%s)", args.plot, pick["path"])
    print(render(results, table))


def render(results: list[dict[str, Any]], table: pd.DataFrame) -> str:
    lengths = _lengths(table)
    r0 = results[0]
    head = (f"{r0['n_spliced']} spliced + {r0['n_parents']} untouched parent recordings scored, "
            f"{r0['n_segments']} segments ({r0['n_spoof_segments']} spoof); spliced stretch "
            f"{min(lengths):.2f}-{max(lengths):.2f} s.\n")
    rows = []
    for r in results:
        b2, b5 = r["boundaries"]["0.2"], r["boundaries"]["0.5"]
        rows.append([r["detector"], "segment (0.16 s)" if r["context_s"] is None else f"{r['context_s']} s",
                     C.ci_text(r["segment_eer"], r["segment_eer_lo"], r["segment_eer_hi"]),
                     f"{r['mean_iou']:.2f} / {r['median_iou']:.2f}", C.pct(r["share_iou_ge_0.5"]),
                     C.pct(r["spliced_flagged_share"]), C.pct(r["parent_flagged_share"]),
                     f"{b2['precision']:.3f} / {b2['recall']:.3f}", f"{b5['precision']:.3f} / {b5['recall']:.3f}",
                     f"{b2['predicted']} / {b2['true']}"])
    return head + "\n" + C.md_table(
        ["detector", "context", "segment EER % [95 % CI, by recording]", "IoU mean / median",
         "spliced files IoU >= 0.5 %", "flagged share of spliced files %", "flagged share of untouched parents %",
         "boundary P / R at 0.2 s", "boundary P / R at 0.5 s", "predicted / true boundaries"], rows)


def _lengths(table: pd.DataFrame) -> list[float]:
    out = []
    for text in table["spoof_regions"]:
        for a, b in json.loads(text):
            out.append(round(b - a, 2))
    return out


if __name__ == "__main__":
    main()
