"""Choose the default detector's back-end by leave-one-generator-out EER on the augmented window table.

Run after default_detector.py (it reuses its window table):
    python bench/experiments/default_candidates.py [--models logreg,mlp,svm]
Prints mean / median LOGO EER per back-end (same folds as default_detector.logo) and the main-split test EER
of window scores averaged per file.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

import common as C
import default_detector as D
from audios.features.extract import read_feature_table
from audios.split import SplitConfig, split_manifest

PARAMS = {"logreg": {"C": 10.0}, "mlp": {"hidden_layer_sizes": (32,), "alpha": 1e-2},
          "svm": {"C": 1.0, "gamma": "scale"}, "rf": {"n_estimators": 100, "max_depth": 8, "min_samples_leaf": 5}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="logreg,mlp,svm")
    ap.add_argument("--table", default=str(C.CACHE / "default_detector_run_windows.parquet"))
    args = ap.parse_args()
    C.setup_logging()
    full = split_manifest(D.corpus(), SplitConfig(ratios=(0.6, 0.2, 0.2), names=("train", "val", "test"),
                                                  seed=0)).table
    win, desc = read_feature_table(args.table)
    cols = desc["extractor"]["columns"]
    y = C.labels(win)
    rows = []
    for m in args.models.split(","):
        lg = D.logo(full, win, cols, m, PARAMS[m])
        e = np.array([r["eer"] for r in lg], dtype=float)
        tr = win["split"].isin(["train", "val"]).to_numpy()
        te = ((win["split"] == "test") & win["id"].str.endswith("#a0")).to_numpy()
        est, _ = C.fit(m, win.loc[tr, cols].to_numpy(), y[tr], PARAMS[m])
        s = C.score(est, win.loc[te, cols].to_numpy())
        clip = pd.DataFrame({"c": win.loc[te, "clip_id"].to_numpy(), "s": s, "y": y[te]}).groupby("c").mean()
        t = C.eer_ci(clip["s"].to_numpy(), clip["y"].to_numpy())
        rows.append([m, json.dumps(PARAMS[m]), C.pct(np.nanmean(e)), C.pct(np.nanmedian(e)), C.ci_text(*t)])
    print(C.md_table(["back-end", "params", "LOGO mean EER %", "LOGO median EER %",
                      "test EER % (files, incl. synth test spoofs) [95 % CI]"], rows))


if __name__ == "__main__":
    main()
