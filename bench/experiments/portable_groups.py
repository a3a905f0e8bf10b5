"""Issue 12: which summaries of the portable front end the bundled detector should use, chosen on validation.

Reads the window table that ``default_detector.py --features portable --portable-groups measures,mfcc,dmfcc,lfcc``
writes (every summary, augmented train windows), fits the shipped back-end (StandardScaler + logistic regression,
C=0.1) on the train windows of each combination of summary groups, and scores the clean windows of the
licence-clear dev clips of the validation and test splits (clip score = mean window score). The group set with the
lowest validation EER is the one shipped; the test column is shown for the record, not used to choose.

    python bench/experiments/portable_groups.py [--windows $AUDIOS_EXP_CACHE/portable_all_windows.parquet]
"""

from __future__ import annotations

import argparse
import itertools

import pandas as pd

import common as C
from audios.portable import FEATURE_GROUPS, feature_group

META = ["id", "clip_id", "label", "generator", "speaker", "utterance", "parent_id", "split", "origin"]


def clip_eer(t: pd.DataFrame, cols: list[str], split: str) -> float:
    tr = t[t["split"] == "train"]
    te = t[(t["split"] == split) & (t["origin"] == "dev") & t["id"].str.endswith("#a0")]
    est, _ = C.fit("logreg", tr[cols].to_numpy(), C.labels(tr), {"C": 0.1})
    clip = pd.DataFrame({"clip": te["clip_id"].to_numpy(), "s": C.score(est, te[cols].to_numpy()),
                         "y": C.labels(te)}).groupby("clip").mean()
    return float(C.equal_error_rate(clip["s"].to_numpy(), clip["y"].to_numpy().astype(bool)).eer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", default=str(C.CACHE / "portable_all_windows.parquet"))
    args = ap.parse_args()
    t = pd.read_parquet(args.windows)
    cols = [c for c in t.columns if c not in META]
    rows = []
    for r in range(1, len(FEATURE_GROUPS) + 1):
        for combo in itertools.combinations(FEATURE_GROUPS, r):
            use = [c for c in cols if feature_group(c) in combo]
            rows.append((" + ".join(combo), len(use), clip_eer(t, use, "val"), clip_eer(t, use, "test")))
    rows.sort(key=lambda x: x[2])
    print("| summaries | values | val EER (clips) | test EER (clips) |\n|---|---:|---:|---:|")
    for name, n, v, te in rows:
        print(f"| {name} | {n} | {100 * v:.1f} % | {100 * te:.1f} % |")


if __name__ == "__main__":
    main()
