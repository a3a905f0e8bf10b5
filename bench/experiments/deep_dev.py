"""Issue 7: a deep model trained here with ``audios train`` on the dev corpus: test EER and leave-one-generator-out.

Splits (all grouped by utterance, so a sentence and every rendering of it stay on one side; seed 0):

* ``main``: the dev test split every other experiment uses (``common.grouped_split``: 70/30, stratified by label
  and generator); its 70 % is split again 80/20 the same way into ``train`` and ``val`` (val picks the best epoch
  and drives early stopping).
* ``logo-G``: ``common.logo_splits`` fold G: test = generator G's spoofs plus the bona fide groups drawn for test;
  spoofs of every other generator and the remaining bona fide are split 80/20 into train and val. G is never seen
  in training or validation.

Each split is written as a manifest CSV with a ``split`` column under ``$AUDIOS_EXP_CACHE/deep_dev/splits`` and
trained by the CLI itself, one process per run (the exact command is logged and printed)::

    OMP_NUM_THREADS=1 audios train SPLIT.csv -c configs/speccnn.yaml -o RUN --epochs N --set cache_audio=true

A run folder holding ``metrics.json`` is reused, so an interrupted job continues with the next run. The report
reads each run's ``scores.csv`` (``id,score,label,generator`` of its test split).

    nice -n 10 python bench/experiments/deep_dev.py --config configs/speccnn.yaml --epochs 8 --logo licence-clear
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import common as C

OUT = C.CACHE / "deep_dev"


def _with_val(df: pd.DataFrame, split: pd.Series, seed: int = 0) -> pd.DataFrame:
    """``df`` with ``split`` in train/val/test: the ``train`` part of ``split`` re-split 80/20 into train/val."""
    table = df.copy()
    table["split"] = split.to_numpy()
    part = table[table["split"] == "train"]
    inner = C.grouped_split(part, seed=seed, ratios=(0.8, 0.2))
    table.loc[part.index, "split"] = inner.map({"train": "train", "test": "val"}).to_numpy()
    return table[table["split"].isin(("train", "val", "test"))]


def make_splits(df: pd.DataFrame, logo: list[str]) -> dict[str, Path]:
    """Write the main split and the asked leave-one-generator-out folds; name -> CSV path."""
    folder = OUT / "splits"
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"main": _with_val(df, C.grouped_split(df))}
    if logo:
        folds = C.logo_splits(df)
        for g in logo:
            tables[f"logo-{g}"] = _with_val(df, folds[g])
    paths = {}
    for name, t in tables.items():
        path = folder / f"{name}.csv"
        t.to_csv(path, index=False)
        counts = t.groupby(["split", "label"]).size().to_dict()
        C.log.info("%s: %s", name, ", ".join(f"{s}/{lab} {n}" for (s, lab), n in sorted(counts.items())))
        paths[name] = path
    return paths


def train_run(split: Path, run: Path, config: Path, epochs: int, overrides: list[str], threads: int) -> float:
    """Train one run with the ``audios train`` CLI (skipped when ``run/metrics.json`` exists); wall seconds."""
    if (run / "metrics.json").exists():
        return float("nan")
    if run.exists():  # an interrupted run: start it again rather than mixing two partial histories
        shutil.rmtree(run)
    exe = Path(sys.executable).with_name("audios")
    cmd = [str(exe), "train", str(split), "-c", str(config), "-o", str(run), "--epochs", str(epochs),
           "--set", "cache_audio=true", "--no-progress"]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    C.log.info("running: OMP_NUM_THREADS=%d %s", threads, " ".join(cmd))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    wall = time.perf_counter() - t0
    (run / "wall_s.txt").write_text(f"{wall:.1f}\n")
    return wall


def split_of(run: Path) -> Path:
    """The split manifest a run trained on (the ``manifest`` line of its resolved config.yaml)."""
    for line in (run / "config.yaml").read_text().splitlines():
        if line.startswith("manifest:"):
            return Path(line.split(":", 1)[1].strip())
    raise SystemExit(f"{run}/config.yaml: no manifest line")


def report_main(run: Path) -> None:
    sc = pd.read_csv(run / "scores.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    hist = pd.read_csv(run / "history.csv")
    y = C.labels(sc)
    s = sc["score"].to_numpy(float)
    wall = (run / "wall_s.txt").read_text().strip() if (run / "wall_s.txt").exists() else "?"
    print(f"\nmain split ({run}): {len(sc)} test files ({int(y.sum())} bona fide), best epoch "
          f"{metrics['best_epoch']} of {len(hist)}, val EER {100 * metrics['val_eer']:.1f} %, wall {wall} s")
    # Every dev spoof is 22.05 kHz or more, so natively-16 kHz bona fide is a shortcut: also the EER without them.
    rate = pd.read_csv(split_of(run), usecols=["id", "sample_rate"]).set_index("id")["sample_rate"]
    hi = (rate.loc[sc["id"]] != C.SR).to_numpy()
    print(C.md_table(["test EER % [95 % CI]", "AUC", "acc at val threshold", "non-16 kHz test files EER % [95 % CI]",
                      "AUC"],
                     [[C.ci_text(*C.eer_ci(s, y)), f"{C.auc(s, y):.3f}",
                       f"{metrics.get('test_acc_at_val_threshold', float('nan')):.3f}",
                       C.ci_text(*C.eer_ci(s[hi], y[hi])), f"{C.auc(s[hi], y[hi]):.3f}"]]))
    per = C.per_generator(s, y, sc["generator"].astype(str).tolist())
    per = per[per["group"] != "pooled"].sort_values("eer", ascending=False)
    print(f"\nper generator on the test split (its test spoofs vs the {int(y.sum())} test bona fide), EER %: "
          f"mean {100 * per['eer'].mean():.1f}, median {100 * per['eer'].median():.1f}")
    print(C.md_table(["generator", "test spoofs", "EER %"],
                     [[g.group, g.n_spoof, C.pct(g.eer)] for g in per.itertuples()]))


def report_logo(runs: dict[str, Path]) -> None:
    rows = []
    pooled_s, pooled_y = [], []
    for g, run in runs.items():
        sc = pd.read_csv(run / "scores.csv")
        metrics = json.loads((run / "metrics.json").read_text())
        y = C.labels(sc)
        s = sc["score"].to_numpy(float)
        pooled_s.append(s)
        pooled_y.append(y)
        wall = (run / "wall_s.txt").read_text().strip() if (run / "wall_s.txt").exists() else "?"
        rows.append([g, int((y == 0).sum()), int(y.sum()), C.ci_text(*C.eer_ci(s, y)), f"{C.auc(s, y):.3f}",
                     f"{100 * metrics['val_eer']:.1f}", wall])
    eers = [float(r[3].split()[0]) for r in rows]
    print(f"\nleave-one-generator-out: {len(rows)} folds, mean EER {np.mean(eers):.1f} %, median "
          f"{np.median(eers):.1f} %")
    print(C.md_table(["held-out generator", "test spoofs", "test bona fide", "EER % [95 % CI]", "AUC",
                      "val EER % (seen generators)", "wall s"], rows))
    s, y = np.concatenate(pooled_s), np.concatenate(pooled_y)
    print(f"pooled over folds (bona fide repeat across folds): EER {C.ci_text(*C.eer_ci(s, y))}, "
          f"AUC {C.auc(s, y):.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path("configs/speccnn.yaml"))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--logo-epochs", type=int, default=None, help="epochs per fold (default: --epochs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="TrainConfig override KEY=VALUE")
    p.add_argument("--logo", default="none",
                   help="none, licence-clear (generators with licence-clear spoofs), all, or a comma list")
    p.add_argument("--tag", default=None, help="run-name prefix (default: the config's stem)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args()
    C.setup_logging()
    df = C.dev_manifest()
    spoof = df[df["label"] == "spoof"]
    if a.logo == "none":
        logo: list[str] = []
    elif a.logo == "licence-clear":
        logo = sorted(spoof.loc[spoof["licence_clear"], "generator"].astype(str).unique())
    elif a.logo == "all":
        logo = sorted(spoof["generator"].astype(str).unique())
    else:
        logo = [g for g in a.logo.split(",") if g]
        unknown = sorted(set(logo) - set(spoof["generator"].astype(str)))
        if unknown:
            raise SystemExit(f"--logo: unknown generator(s) {unknown}")
    tag = a.tag or a.config.stem
    splits = make_splits(df, logo)
    runs = {name: OUT / "runs" / f"{tag}-{name}" for name in splits}
    if not a.report_only:
        for name, split in splits.items():
            epochs = a.epochs if name == "main" or a.logo_epochs is None else a.logo_epochs
            wall = train_run(split, runs[name], a.config, epochs, a.overrides, a.threads)
            C.log.info("%s: done (%.0f s)", name, wall)
    if (runs["main"] / "metrics.json").exists():
        report_main(runs["main"])
    done = {n.removeprefix("logo-"): r for n, r in runs.items() if n != "main" and (r / "metrics.json").exists()}
    if done:
        report_logo(done)


if __name__ == "__main__":
    main()
