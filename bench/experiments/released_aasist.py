"""Issue 7: the authors' released AASIST / AASIST-L checkpoints (trained on ASVspoof 2019 LA) scored as they are on
the dev corpus, plus the bundled default detector on the unlicensed spoofs it never trained on.

A model never trained on the dev corpus has seen none of its generators, so its per-generator EER (each
generator's spoofs against every bona fide clip) *is* its leave-one-generator-out result.

Two scoring protocols per checkpoint:

* ``first``: the authors' evaluation protocol (their ``data_utils.py``): decode at 16 kHz, take the first 64600
  samples (≈ 4.04 s; shorter clips tiled), one forward pass. Score = logit(bona fide) - logit(spoof), the score
  ``audios detect`` gives; the authors' own evaluation file holds logit(bona fide) alone, which ranks files a
  little differently, so EERs may differ slightly from theirs on the same inputs.
* ``windowed``: ``audios.detect.detect_path`` as ``audios detect --model aasist=PATH`` runs it: 4.04 s windows,
  2.02 s hop, file score = mean window score.

Scores are cached as CSV (``id,score,label,generator,speaker``) under ``$AUDIOS_EXP_CACHE/released_aasist``, one row
appended per scored file, so a rerun (or an interrupted run) only scores what is missing. Those CSVs are the input of
``audios evaluate --per generator``.

    python bench/experiments/released_aasist.py --runs aasist:first,aasist-l:first,aasist-l:windowed --default
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import common as C
from audios.detect import DetectConfig, detect_path, load_detector
from audios.models.aasist import AASIST_N_SAMPLES, load_released_checkpoint, prepare_waveform

MODELS = Path(os.environ.get("AUDIOS_AASIST_DIR", "/work/shared/models/aasist"))
CHECKPOINTS = {"aasist": MODELS / "AASIST.pth", "aasist-l": MODELS / "AASIST-L.pth"}
OUT = C.CACHE / "released_aasist"
FIELDS = ("id", "score", "label", "generator", "speaker")


def _cached(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    d = pd.read_csv(path)
    return dict(zip(d["id"], d["score"]))


def _append(path: Path, rows: list[dict[str, object]]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerows(rows)


def _row(r: pd.Series, score: float) -> dict[str, object]:
    return {"id": r["id"], "score": score, "label": r["label"], "generator": r["generator"], "speaker": r["speaker"]}


def score_first(df: pd.DataFrame, variant: str, out: Path, batch: int = 8) -> None:
    """Upstream protocol: first 64600 samples at 16 kHz, batches of ``batch`` files."""
    done = _cached(out)
    todo = df[~df["id"].isin(done)]
    if todo.empty:
        return
    model = load_released_checkpoint(CHECKPOINTS[variant])
    t0 = time.perf_counter()
    for start in range(0, len(todo), batch):
        part = todo.iloc[start:start + batch]
        x = np.stack([prepare_waveform(s, AASIST_N_SAMPLES) for s in C.decode(part)])
        with torch.inference_mode():
            _, logits = model(torch.from_numpy(x))
        s = (logits[:, 1] - logits[:, 0]).double().numpy()
        _append(out, [_row(r, float(v)) for (_, r), v in zip(part.iterrows(), s, strict=True)])
        C.log.info("%s first: %d/%d files, %.1f s", variant, start + len(part), len(todo), time.perf_counter() - t0)


def score_windowed(df: pd.DataFrame, spec: str, out: Path, every: int = 8) -> None:
    """``audios detect`` protocol: the detector's own windows, file score = mean window score."""
    done = _cached(out)
    todo = df[~df["id"].isin(done)]
    if todo.empty:
        return
    detector = load_detector(spec)
    cfg = DetectConfig(aggregate="mean", batch_windows=8)
    t0 = time.perf_counter()
    rows: list[dict[str, object]] = []
    for i, (_, r) in enumerate(todo.iterrows(), 1):
        res = detect_path(detector, Path(r["root"]) / r["path"], cfg)
        rows.append(_row(r, float(res["score"])))
        if len(rows) == every or i == len(todo):
            _append(out, rows)
            rows = []
            C.log.info("%s windowed: %d/%d files, %.1f s", spec.split("=")[0], i, len(todo), time.perf_counter() - t0)


def evaluate(scores: pd.DataFrame, test_ids: set[str], native_16k: set[str]) -> tuple[list[object], pd.DataFrame]:
    """Pooled EER (all 541, dev test split, files not natively 16 kHz) with CIs, AUC, per-generator EER vs all
    bona fide, and the share of bona fide scored <= 0 by native sample rate (16 kHz / other)."""
    y = C.labels(scores)
    s = scores["score"].to_numpy(float)
    t = scores["id"].isin(test_ids).to_numpy()
    e_all = C.eer_ci(s, y)
    e_test = C.eer_ci(s[t], y[t])
    # Every spoof is 22.05 kHz or more, so "natively 16 kHz" alone identifies 83 of the 224 bona fide clips:
    # the EER without them measures detection with that shortcut removed.
    n16 = scores["id"].isin(native_16k).to_numpy()
    e_hi = C.eer_ci(s[~n16], y[~n16])
    per = C.per_generator(s, y, scores["generator"].astype(str).tolist())
    per = per[per["group"] != "pooled"]
    pooled = [C.ci_text(*e_all), f"{C.auc(s, y):.3f}", C.ci_text(*e_test), f"{C.auc(s[t], y[t]):.3f}",
              f"{100 * per['eer'].mean():.1f}", f"{100 * per['eer'].median():.1f}",
              f"{100 * np.mean(s[y == 0] > 0):.0f} / {100 * np.mean(s[y == 1] <= 0):.0f}",
              f"{100 * np.mean(s[(y == 1) & n16] <= 0):.0f} / {100 * np.mean(s[(y == 1) & ~n16] <= 0):.0f}",
              C.ci_text(*e_hi), f"{C.auc(s[~n16], y[~n16]):.3f}"]
    return pooled, per.set_index("group")


def evaluate_test(scores: pd.DataFrame) -> tuple[list[object], pd.DataFrame]:
    """Pooled test-split row only (for a run scored on the test split alone)."""
    y = C.labels(scores)
    s = scores["score"].to_numpy(float)
    return ["-", "-", C.ci_text(*C.eer_ci(s, y)), f"{C.auc(s, y):.3f}", "-", "-",
            f"{100 * np.mean(s[y == 0] > 0):.0f} / {100 * np.mean(s[y == 1] <= 0):.0f}", "-", "-", "-"], pd.DataFrame()


def default_detector(df: pd.DataFrame, test_ids: set[str]) -> None:
    """The bundled detector on the 237 spoofs of unlicensed demo pages (never trained on) vs its test bona fide."""
    import json

    from audios.detect import BUNDLED_DIR

    info = json.loads((BUNDLED_DIR / "train_info.json").read_text())
    bona_test = set(info["test_ids"])
    trained = set(info["trained_generators"])
    sub = df[((df["label"] == "bonafide") & df["id"].isin(bona_test)) | ((df["label"] == "spoof") & ~df["licence_clear"])]
    out = OUT / "default-windowed.csv"
    _score_default(sub, out)
    sc = pd.read_csv(out).set_index("id").loc[sub["id"]].reset_index()
    y = C.labels(sc)
    s = sc["score"].to_numpy(float)
    e = C.eer_ci(s, y)
    print(f"\nBundled default detector: {int(y.sum())} test-split bona fide vs {int((y == 0).sum())} unlicensed spoofs: "
          f"EER {C.ci_text(*e)}, AUC {C.auc(s, y):.3f}")
    per = C.per_generator(s, y, sc["generator"].astype(str).tolist())
    per = per[per["group"] != "pooled"].sort_values("eer", ascending=False)
    print(C.md_table(["generator", "spoof files", "EER %", "AUC", "generator trained on"],
                     [[g.group, g.n_spoof, C.pct(g.eer), f"{g.roc_auc:.3f}", "yes" if g.group in trained else "no"]
                      for g in per.itertuples()]))


def _score_default(sub: pd.DataFrame, out: Path) -> None:
    done = _cached(out)
    todo = sub[~sub["id"].isin(done)]
    if todo.empty:
        return
    detector = load_detector(None)
    rows = [_row(r, float(detect_path(detector, Path(r["root"]) / r["path"])["score"])) for _, r in todo.iterrows()]
    _append(out, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="aasist:first,aasist-l:first,aasist-l:windowed",
                   help="comma list of VARIANT:PROTOCOL, VARIANT in aasist|aasist-l, PROTOCOL in first|windowed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--windowed-on", choices=("all", "test"), default="all",
                   help="windowed runs score all 541 files or only the dev test split (4x cheaper)")
    p.add_argument("--score-only", action="store_true", help="score and cache, print nothing")
    p.add_argument("--default", action="store_true", help="also the bundled detector on the unlicensed spoofs")
    a = p.parse_args()
    C.setup_logging()
    torch.set_num_threads(a.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    df = C.dev_manifest()
    # The dev test split of the other experiments (classic_backends.py: utterance-grouped 70/30, seed 0).
    test_ids = set(df.loc[C.grouped_split(df) == "test", "id"])
    native_16k = set(df.loc[df["sample_rate"] == C.SR, "id"])
    runs = [tuple(r.split(":")) for r in a.runs.split(",") if r]
    results = {}
    for variant, protocol in runs:
        out = OUT / f"{variant}-{protocol}.csv"
        if protocol == "first":
            score_first(df, variant, out)
        elif protocol == "windowed":
            sub = df if a.windowed_on == "all" else df[df["id"].isin(test_ids)]
            score_windowed(sub, f"{variant}={CHECKPOINTS[variant]}", out)
        else:
            raise SystemExit(f"unknown protocol {protocol!r} (first|windowed)")
        sc = pd.read_csv(out).set_index("id")
        if protocol == "windowed" and a.windowed_on == "test":
            sc = sc.loc[df.loc[df["id"].isin(test_ids), "id"]].reset_index()
            results[f"{variant} ({protocol}, test split only)"] = evaluate_test(sc)
        else:
            results[f"{variant} ({protocol})"] = evaluate(sc.loc[df["id"]].reset_index(), test_ids, native_16k)
        print(f"scores: {out}")
    if a.score_only:
        return
    if results:
        print_tables(results, len(test_ids))
    if a.default:
        default_detector(df, test_ids)


def print_tables(results: dict[str, tuple[list[object], pd.DataFrame]], n_test: int) -> None:
    print(f"\nPooled (all 541 files: 224 bona fide, 317 spoof; dev test split: {n_test} files)")
    print(C.md_table(["model (protocol)", "all-541 EER % [95 % CI]", "AUC", "test-split EER % [95 % CI]", "AUC",
                      "per-gen mean EER %", "median", "spoof passed / bona rejected at 0 (%)",
                      "bona rejected at 0: native 16 kHz / other (%)", "non-16 kHz files EER % [95 % CI]", "AUC"],
                     [[k, *v[0]] for k, v in results.items()]))
    names = [k for k, v in results.items() if not v[1].empty]
    per = pd.concat({k: results[k][1]["eer"] for k in names}, axis=1)
    n = results[names[0]][1]["n_spoof"]
    per = per.sort_values(names[0], ascending=False)
    print("\nPer generator (its spoofs vs all 224 bona fide), EER %")
    print(C.md_table(["generator", "spoofs", *names],
                     [[g, int(n[g]), *(C.pct(per.loc[g, k]) for k in names)] for g in per.index]))


if __name__ == "__main__":
    main()
