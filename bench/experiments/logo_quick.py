"""Issue 12: a quick leave-one-generator-out on a saved window table, to compare input subsets of one model.

For each licence-clear real generator g: train StandardScaler + logistic regression (C = 0.1) on the train+val
windows (augmented copies included) of every other generator and of bona fide, leaving out every window of an
utterance g speaks; test g's clean windows against the clean test-split bona fide windows, file score = mean window
score. Coarser than ``default_detector.py``'s LOGO (no re-split, no recalibration), but it reuses the window table
and takes seconds, so it can compare subsets of columns.

    python bench/experiments/logo_quick.py $AUDIOS_EXP_CACHE/default_detector_run_windows.parquet   # issue-9 table
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import common as C

META = ["id", "clip_id", "label", "generator", "speaker", "utterance", "parent_id", "split", "origin"]


def subsets(cols: list[str]) -> dict[str, list[str]]:
    mfcc = [c for c in cols if c.startswith("mfcc_")]
    contrast = [c for c in cols if c.startswith("contrast")]
    return {"mfcc": mfcc, "mfcc + contrast": mfcc + contrast, "contrast": contrast, "all": cols,
            "all but contrast": [c for c in cols if c not in contrast]}


def logo_mean(t: pd.DataFrame, cols: list[str]) -> float:
    eers = []
    for g in sorted(t.loc[(t["origin"] == "dev") & (t["label"] == "spoof"), "generator"].unique()):
        spoken = set(t.loc[t["generator"] == g, "utterance"])
        tr = t[t["split"].isin(["train", "val"]) & (t["generator"] != g) & ~t["utterance"].isin(spoken)]
        clean = t["id"].str.endswith("#a0")
        te = t[clean & ((t["generator"] == g) | ((t["label"] == "bonafide") & (t["split"] == "test")
                                                 & (t["origin"] == "dev")))]
        est, _ = C.fit("logreg", tr[cols].to_numpy(), C.labels(tr), {"C": 0.1})
        clip = pd.DataFrame({"clip": te["clip_id"].to_numpy(), "s": C.score(est, te[cols].to_numpy()),
                             "y": C.labels(te)}).groupby("clip").mean()
        eers.append(float(C.equal_error_rate(clip["s"].to_numpy(), clip["y"].to_numpy().astype(bool)).eer))
    return float(np.mean(eers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("windows")
    args = ap.parse_args()
    t = pd.read_parquet(args.windows)
    cols = [c for c in t.columns if c not in META]
    print("| inputs | values | quick LOGO mean EER |\n|---|---:|---:|")
    for name, use in subsets(cols).items():
        if use:
            print(f"| {name} | {len(use)} | {100 * logo_mean(t, use):.1f} % |")


if __name__ == "__main__":
    main()
