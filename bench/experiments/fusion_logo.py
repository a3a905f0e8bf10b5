"""Issue 11: does logistic-regression score fusion beat its best member on held-out generators?

Run:  python bench/experiments/fusion_logo.py [--resamples 1000] [--plot docs/fusion.png]
      (prints markdown; JSON to $AUDIOS_EXP_CACHE/fusion_logo.json; about 10 s once the features are cached)

Reuses the classic back-end set-up of ``classic_backends.py`` (cached 16 kHz features under ``$AUDIOS_EXP_CACHE``,
hyperparameters fixed at the values chosen there on the main split, so no grid search per fold):

* members: ``spectral`` (extended, 68-d) SVM (C=10, gamma=0.01) and logistic regression (C=1), ``resemblyzer``
  logistic regression (C=0.01). The LFCC two-GMM is left out: one fit of even 32 components on 30,000 frames
  per class took 130 s on the shared 2-core machine, x34 folds;
* folds: ``leave_one_generator_out`` grouped by utterance (``common.logo_splits``, seed 0): held-out generator G's
  spoofs + 30 % of bona fide groups are the fold's test part;
* inside each fold the train part is split again, 75/25 grouped by utterance and stratified by label and generator
  (``common.grouped_split``, seed 0), into member-train and val. Members are fitted on member-train only; the
  fusion (``audios.fusion.LogisticFusion``, prior 0.5, l2 1e-3) is fitted on the members' val scores (seen
  generators only) and applied to the held-out generator's test scores;
* each member is also put through a one-column ``LogisticFusion`` fitted on the same val scores (an affine
  calibration: per-fold EER unchanged, but the pooled scores share one scale), which is the fair baseline for
  the pooled EER;
* reported: per-fold EER, mean over folds, pooled EER (all folds' test scores together) with a 95 % stratified
  bootstrap interval (``audios.evaluate.bootstrap_ci``, clips resampled within class, paired: one resample
  scores every system, so the fusion - best member difference gets its own interval).

Bona fide test clips recur in several folds' test parts, so the pooled bootstrap treats repeats as independent
clips and its intervals are somewhat too narrow.

Some dev generators share every utterance with another (``bigvgan`` / ``bigvgan-base``, ``fastspeech2-pwg`` /
``fastspeech2s``, ...): utterance grouping then gives both folds the same test part, so the fold means are also
given over *distinct* test parts, and the mean difference fusion - best member gets a 95 % interval from
resampling those distinct folds (seed 0).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

import common as C
from audios.evaluate import bootstrap_ci, equal_error_rate
from audios.fusion import LogisticFusion

#: name -> (features, back-end, params) with params from the classic_backends.py main-split CV.
MEMBERS = {
    "spectral/svm": ("spectral", "svm", {"C": 10.0, "gamma": 0.01}),
    "spectral/logreg": ("spectral", "logreg", {"C": 1.0}),
    "resemblyzer/logreg": ("resemblyzer", "logreg", {"C": 0.01}),
}
#: fusion name -> members fused.
FUSIONS = {
    "fuse: spectral/svm + resemblyzer/logreg": ("spectral/svm", "resemblyzer/logreg"),
    "fuse: spectral/logreg + resemblyzer/logreg": ("spectral/logreg", "resemblyzer/logreg"),
    "fuse: all three": tuple(MEMBERS),
}


def _rows(X: np.ndarray | list, mask: np.ndarray) -> np.ndarray | list:
    return [X[i] for i in np.flatnonzero(mask)] if isinstance(X, list) else X[mask]


def run_fold(df: pd.DataFrame, split: pd.Series, feats: dict, y: np.ndarray) -> dict | None:
    tr_all = (split == "train").to_numpy()
    te = (split == "test").to_numpy()
    if y[te].sum() == 0 or y[te].all():
        return None
    sub = df[tr_all].reset_index(drop=True)
    inner = C.grouped_split(sub, ratios=(0.75, 0.25)).to_numpy()
    idx_tr = np.flatnonzero(tr_all)
    tr = np.zeros(len(df), bool)
    va = np.zeros(len(df), bool)
    tr[idx_tr[inner == "train"]] = True
    va[idx_tr[inner == "test"]] = True
    val_s, test_s = {}, {}
    for name, (feat, model, params) in MEMBERS.items():
        est, _ = C.fit(model, _rows(feats[feat], tr), y[tr], params)
        val_s[name] = np.asarray(C.score(est, _rows(feats[feat], va)), dtype=np.float64)
        test_s[name] = np.asarray(C.score(est, _rows(feats[feat], te)), dtype=np.float64)
    out = {"raw": test_s, "cal": {}, "fused": {}, "weights": {}}
    for name in MEMBERS:
        cal = LogisticFusion().fit(val_s[name][:, None], y[va])
        out["cal"][name] = cal.transform(test_s[name][:, None])
    for fname, members in FUSIONS.items():
        fus = LogisticFusion().fit(np.column_stack([val_s[m] for m in members]), y[va])
        out["fused"][fname] = fus.transform(np.column_stack([test_s[m] for m in members]))
        out["weights"][fname] = [float(w) for w in fus.weights_]
    out["val_eer"] = {m: float(equal_error_rate(val_s[m], y[va].astype(bool)).eer) for m in MEMBERS}
    out["y"] = y[te]
    out["test_key"] = hash(tuple(np.flatnonzero(te)))
    out["utterance"] = df["utterance"].astype(str).to_numpy()[te]
    out["n"] = {"train": int(tr.sum()), "val": int(va.sum()), "test_spoof": int((1 - y[te]).sum()),
                "test_bona": int(y[te].sum())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--limit-folds", type=int, default=0, help="only the first N folds (smoke test)")
    ap.add_argument("--plot", default=None, help="write a per-generator EER scatter PNG here")
    args = ap.parse_args()
    C.setup_logging()
    t0 = time.perf_counter()
    df = C.dev_manifest()
    y = C.labels(df)
    feats = {"spectral": np.stack(C.features(df, "spectral", C.SPECTRAL_EXT)),
             "resemblyzer": np.stack(C.features(df, "resemblyzer", None))}
    splits = C.logo_splits(df)
    folds = {}
    for i, (g, split) in enumerate(splits.items()):
        if args.limit_folds and i >= args.limit_folds:
            break
        res = run_fold(df, split, feats, y)
        if res is None:
            C.log.warning("fold %s: no usable test part", g)
            continue
        folds[g] = res
        C.log.info("fold %s: %s", g, {k: round(float(equal_error_rate(v, res["y"].astype(bool)).eer), 3)
                                      for k, v in {**res["raw"], **res["fused"]}.items()})
    systems = [*MEMBERS, *FUSIONS]
    per = []
    for g, r in folds.items():
        yt = r["y"].astype(bool)
        row = {"generator": g, **r["n"]}
        for m in MEMBERS:
            row[m] = float(equal_error_rate(r["raw"][m], yt).eer)
        for f in FUSIONS:
            row[f] = float(equal_error_rate(r["fused"][f], yt).eer)
        row["weights"] = r["weights"]
        row["test_key"] = r["test_key"]
        per.append(row)
    per_df = pd.DataFrame(per)
    distinct = per_df.drop_duplicates("test_key")
    mean_best = min(MEMBERS, key=lambda m: per_df[m].mean())
    # Mean over distinct folds of (system - best member), with an interval from resampling those folds.
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(distinct), size=(args.resamples, len(distinct)))
    fold_diff = {}
    for f in FUSIONS:
        d = (distinct[f] - distinct[mean_best]).to_numpy()
        means = d[draws].mean(axis=1)
        fold_diff[f] = {"mean": float(d.mean()), "lo": float(np.quantile(means, 0.025)),
                        "hi": float(np.quantile(means, 0.975))}
    # Pooled: members on their val-calibrated scale (and raw), fusions as they are.
    yp = np.concatenate([r["y"] for r in folds.values()]).astype(bool)
    pooled = {m: np.concatenate([r["cal"][m] for r in folds.values()]) for m in MEMBERS}
    pooled_raw = {m: np.concatenate([r["raw"][m] for r in folds.values()]) for m in MEMBERS}
    pooled.update({f: np.concatenate([r["fused"][f] for r in folds.values()]) for f in FUSIONS})
    S = np.column_stack([pooled[k] for k in systems])
    best_member = min(MEMBERS, key=lambda m: equal_error_rate(pooled[m], yp).eer)
    bi = systems.index(best_member)

    def stat(idx: np.ndarray, lab: np.ndarray) -> dict[str, float]:
        rows = S[idx.astype(int)]
        e = {k: equal_error_rate(rows[:, j], lab).eer for j, k in enumerate(systems)}
        e.update({f"diff {f}": e[f] - e[best_member] for f in FUSIONS})
        return e

    # The "scores" are row indices so that one stratified resample re-scores every system (paired intervals).
    boot = bootstrap_ci(np.arange(yp.size, dtype=np.float64), yp, stat, np.random.default_rng(0),
                        n_resamples=args.resamples)
    out = {"folds": per, "best_member": best_member, "n_pooled": int(yp.size), "n_pooled_bona": int(yp.sum()),
           "pooled": {k: {"eer": v.estimate, "lo": v.low, "hi": v.high} for k, v in boot.intervals.items()},
           "pooled_raw_members": {m: float(equal_error_rate(pooled_raw[m], yp).eer) for m in MEMBERS},
           "mean": {k: float(per_df[k].mean()) for k in systems},
           "median": {k: float(per_df[k].median()) for k in systems},
           "n_distinct_folds": int(len(distinct)),
           "mean_distinct": {k: float(distinct[k].mean()) for k in systems},
           "mean_best_member": mean_best,
           "fold_mean_diff_vs_best": fold_diff,
           "folds_fusion_beats_best_mean_member": {
               f: int((per_df[f] < per_df[min(MEMBERS, key=lambda m: per_df[m].mean())]).sum()) for f in FUSIONS},
           "folds_fusion_ties_best_mean_member": {
               f: int((per_df[f] == per_df[min(MEMBERS, key=lambda m: per_df[m].mean())]).sum()) for f in FUSIONS},
           "mean_weights": {f: np.mean([r["weights"][f] for r in folds.values()], axis=0).tolist() for f in FUSIONS},
           "seconds": time.perf_counter() - t0}
    C.CACHE.mkdir(parents=True, exist_ok=True)
    (C.CACHE / "fusion_logo.json").write_text(json.dumps(out, indent=2, default=str))
    if args.plot:
        plot(per_df.drop_duplicates("test_key"), mean_best, args.plot)
    print(render(out))


def plot(per_df: pd.DataFrame, best: str, out_png: str) -> None:
    """Per held-out generator EER: best member (x) against each fusion (y); below the diagonal = fusion helps."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.2), dpi=90)
    ax = fig.subplots()
    ax.plot([0, 60], [0, 60], color="#888", linewidth=0.8, linestyle="--")
    markers = dict(zip(FUSIONS, ("o", "s", "^")))
    for f in FUSIONS:
        ax.scatter(100 * per_df[best], 100 * per_df[f], marker=markers[f], s=28, alpha=0.7,
                   label=f"{f.removeprefix('fuse: ')} (mean {100 * per_df[f].mean():.1f} %)")
    ax.set_xlabel(f"best member {best}: EER % (mean {100 * per_df[best].mean():.1f} %)")
    ax.set_ylabel("fused EER %")
    ax.set_title(f"Leave-one-generator-out, {len(per_df)} distinct held-out folds (dev corpus)", fontsize=10)
    ax.set_xlim(-1, 45)
    ax.set_ylim(-1, 45)
    ax.legend(fontsize=8, loc="upper left")
    ax.text(30, 3, "below the line:\nfusion helps", fontsize=8, color="#555")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png)


def render(out: dict) -> str:
    systems = [*MEMBERS, *FUSIONS]
    P = out["pooled"]
    best = out["best_member"]
    mean_best = min(MEMBERS, key=lambda m: out["mean"][m])
    lines = [f"Pooled over {len(out['folds'])} folds: {out['n_pooled']} test scores ({out['n_pooled_bona']} bona "
             f"fide, repeated across folds). Best member by pooled EER: {best}; by mean fold EER: {mean_best}.\n",
             C.md_table(["system", "pooled EER % [95 % CI]", "mean fold EER %", "median fold EER %",
                         "pooled - best member, points [95 % CI]", f"folds better / tied vs {mean_best}"],
                        [[k, C.ci_text(P[k]["eer"], P[k]["lo"], P[k]["hi"]), C.pct(out["mean"][k]),
                          C.pct(out["median"][k]),
                          (C.ci_text(P[f"diff {k}"]["eer"], P[f"diff {k}"]["lo"], P[f"diff {k}"]["hi"])
                           if k in FUSIONS else ""),
                          (f"{out['folds_fusion_beats_best_mean_member'][k]} / "
                           f"{out['folds_fusion_ties_best_mean_member'][k]}" if k in FUSIONS else "")]
                         for k in systems]),
             "",
             f"Over the {out['n_distinct_folds']} distinct test parts: mean fold EER % " + ", ".join(
                 f"{k.removeprefix('fuse: ')} {C.pct(v)}" for k, v in out["mean_distinct"].items()) + "; mean "
             f"difference fusion - {out['mean_best_member']}, points [95 % CI over folds]: " + "; ".join(
                 f"{f.removeprefix('fuse: ')} {C.ci_text(d['mean'], d['lo'], d['hi'])}"
                 for f, d in out["fold_mean_diff_vs_best"].items()) + ".",
             "",
             "Members' pooled EER on raw (uncalibrated) scores: " + ", ".join(
                 f"{m} {C.pct(v)} %" for m, v in out["pooled_raw_members"].items()) + ".",
             "",
             "Mean fusion weights over folds (on raw member scores): " + "; ".join(
                 f"{f.removeprefix('fuse: ')}: " + ", ".join(f"{w:+.3g}" for w in ws)
                 for f, ws in out["mean_weights"].items()) + ".",
             "",
             "<details><summary>EER per held-out generator (%)</summary>\n",
             C.md_table(["generator", "test spoof / bona", *[s.removeprefix("fuse: ") for s in systems]],
                        [[r["generator"], f"{r['test_spoof']} / {r['test_bona']}",
                          *(C.pct(r[s]) for s in systems)] for r in out["folds"]]),
             "\n</details>"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
