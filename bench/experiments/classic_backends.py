"""Issue 6: classic back-ends on the dev corpus: test EER (95 % CI) and leave-one-generator-out (LOGO) EERs.

Run:  python bench/experiments/classic_backends.py [--quick]   (prints markdown; JSON to $AUDIOS_EXP_CACHE)

* Audio: every dev clip decoded to mono 16 kHz (``load_audio``), so the native sample rate is gone.
* Features: ``spectral`` with ``extended=true`` (68 dims), ``resemblyzer`` (256-d speaker embedding),
  ``lfcc`` frames (for the two-GMM back-end), one vector / matrix per whole clip.
* Back-ends: logreg, svm, rf, mlp (grid chosen by 5-fold CV grouped by utterance on train, ROC-AUC), gmm (64
  components, fixed).
* Splits (``audios.split``): 70/30 train/test grouped by utterance (a recording and all its synthetic versions
  stay on one side), stratified by label and generator, seed 0; and a speaker-disjoint variant that also groups
  by speaker.
* LOGO: for each spoof generator G, ``leave_one_generator_out`` grouped by utterance only (see BENCHMARKS.md for
  why not by speaker): G's spoofs and 30 % of bona fide groups in test, other generators' spoofs in train only,
  rows linked to G's utterances but of another generator dropped. Hyperparameters are those chosen on the main
  split (fixed across folds). Reported: EER per G, mean, median, and pooled (one EER over every fold's test
  scores together).
* Sample-rate check: the same with the 83 16 kHz bona fide sources (LibriSpeech, AMI) removed.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

import common as C

VECTOR_MODELS = ("logreg", "svm", "rf", "mlp")


def run_split(df: pd.DataFrame, split: pd.Series, X: dict[str, np.ndarray], frames: list[np.ndarray] | None,
              models: list[tuple[str, str]]) -> tuple[list[dict], dict]:
    y = C.labels(df)
    tr = (split == "train").to_numpy()
    te = (split == "test").to_numpy()
    groups = C.group_ids(df[tr])
    rows, fitted = [], {}
    for feat, model in models:
        t0 = time.perf_counter()
        if model == "gmm":
            Xtr = [frames[i] for i in np.flatnonzero(tr)]
            Xte = [frames[i] for i in np.flatnonzero(te)]
        else:
            Xtr, Xte = X[feat][tr], X[feat][te]
        est, params = C.fit(model, Xtr, y[tr], None if model != "gmm" else {"n_components": 64}, groups=groups)
        s = C.score(est, Xte)
        e, lo, hi = C.eer_ci(s, y[te])
        rows.append({"features": feat, "model": model, "params": params, "eer": e, "lo": lo, "hi": hi,
                     "auc": C.auc(s, y[te]), "n_train": int(tr.sum()), "n_test": int(te.sum()),
                     "test_bona": int(y[te].sum()), "test_spoof": int((1 - y[te]).sum()),
                     "seconds": time.perf_counter() - t0})
        fitted[(feat, model)] = params
        C.log.info("%s/%s: EER %.3f (%s) %.1fs", feat, model, e, params, rows[-1]["seconds"])
    return rows, fitted


def run_logo(df: pd.DataFrame, X: np.ndarray, model: str, params: dict, by_speaker: bool = False) -> dict:
    y = C.labels(df)
    splits = C.logo_splits(df, by_speaker=by_speaker)
    per, pooled_s, pooled_y = [], [], []
    for g, split in splits.items():
        tr = (split == "train").to_numpy()
        te = (split == "test").to_numpy()
        if y[te].sum() == 0 or y[tr].sum() == 0 or (1 - y[tr]).sum() == 0:
            per.append({"generator": g, "eer": float("nan"), "n_test_spoof": int((1 - y[te]).sum()),
                        "n_test_bona": int(y[te].sum()), "n_train_bona": int(y[tr].sum())})
            continue
        est, _ = C.fit(model, X[tr], y[tr], params)
        s = C.score(est, X[te])
        per.append({"generator": g, "eer": float(C.equal_error_rate(s, y[te].astype(bool)).eer),
                    "n_test_spoof": int((1 - y[te]).sum()), "n_test_bona": int(y[te].sum()),
                    "n_train_bona": int(y[tr].sum()),
                    "lj_bona_in_train": int(((df["speaker"] == "LJ") & (df["label"] == "bonafide")).to_numpy()[tr].sum())})
        pooled_s.append(s)
        pooled_y.append(y[te])
    eers = np.array([p["eer"] for p in per], dtype=float)
    ok = eers[np.isfinite(eers)]
    pooled = float(C.equal_error_rate(np.concatenate(pooled_s), np.concatenate(pooled_y).astype(bool)).eer)
    return {"model": model, "params": params, "per": per, "mean": float(ok.mean()), "median": float(np.median(ok)),
            "pooled": pooled, "n_folds": int(ok.size), "n_failed": int((~np.isfinite(eers)).sum())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer back-ends (smoke test)")
    args = ap.parse_args()
    C.setup_logging()
    df = C.dev_manifest()
    sig = C.decode(df)
    X = {"spectral": np.stack(C.features(df, "spectral", C.SPECTRAL_EXT, sig)),
         "resemblyzer": np.stack(C.features(df, "resemblyzer", None, sig))}
    models = [(f, m) for f in ("spectral", "resemblyzer") for m in (VECTOR_MODELS if not args.quick else ("logreg",))]
    frames = None
    if not args.quick:
        frames = C.features(df, "lfcc", None, sig)
        models.append(("lfcc", "gmm"))
    out: dict = {}

    split_u = C.grouped_split(df)
    rows_u, params_u = run_split(df, split_u, X, frames, models)
    out["test_utterance_grouped"] = rows_u
    split_s = C.grouped_split(df, by_speaker=True)
    rows_s, _ = run_split(df, split_s, X, frames, [m for m in models if m[1] != "gmm"])
    out["test_speaker_disjoint"] = rows_s

    vec = [r for r in rows_u if r["model"] != "gmm" and r["model"] != "logreg"]
    best = min(vec, key=lambda r: r["eer"]) if vec else rows_u[0]
    out["best"] = {"features": best["features"], "model": best["model"], "params": best["params"]}
    logo = {}
    for feat in ("spectral", "resemblyzer"):
        for model in dict.fromkeys(("logreg", best["model"])):
            logo[f"{feat}/{model}"] = run_logo(df, X[feat], model, params_u[(feat, model)])
            C.log.info("LOGO %s/%s mean %.3f", feat, model, logo[f"{feat}/{model}"]["mean"])
    out["logo"] = logo
    # Speaker-grouped LOGO for the record (confounded: LJ bona fide leaves training whenever G is an LJ voice).
    out["logo_speaker_grouped"] = {
        f"spectral/{best['model']}": run_logo(df, X["spectral"], best["model"], params_u[("spectral", best["model"])],
                                              by_speaker=True)}

    # Sample-rate shortcut check: no 16 kHz bona fide.
    keep = ~((df["label"] == "bonafide") & (df["sample_rate"] == 16000)).to_numpy()
    d2 = df[keep].reset_index(drop=True)
    X2 = {k: v[keep] for k, v in X.items()}
    split2 = C.grouped_split(d2)
    no16 = {}
    for feat in ("spectral", "resemblyzer"):
        for model in dict.fromkeys(("logreg", best["model"])):
            r, _ = run_split(d2, split2, X2, None, [(feat, model)])
            lg = run_logo(d2, X2[feat], model, params_u[(feat, model)])
            no16[f"{feat}/{model}"] = {"test": r[0], "logo_mean": lg["mean"], "logo_median": lg["median"],
                                       "logo_pooled": lg["pooled"]}
    out["no_16k"] = no16
    C.CACHE.mkdir(parents=True, exist_ok=True)
    (C.CACHE / "classic_backends.json").write_text(json.dumps(out, indent=2, default=str))
    print(render(out))


def render(out: dict) -> str:
    parts = []
    for key, title in (("test_utterance_grouped", "Test split grouped by utterance"),
                       ("test_speaker_disjoint", "Test split grouped by utterance and speaker (speaker-disjoint)")):
        rows = out[key]
        r0 = rows[0]
        parts.append(f"**{title}** ({r0['n_train']} train / {r0['n_test']} test clips: "
                     f"{r0['test_bona']} bona fide, {r0['test_spoof']} spoof)\n")
        parts.append(C.md_table(["features", "back-end", "params (CV)", "test EER % [95 % CI]", "AUC"],
                                [[r["features"], r["model"], json.dumps(r["params"], default=str),
                                  C.ci_text(r["eer"], r["lo"], r["hi"]), f"{r['auc']:.3f}"] for r in rows]))
        parts.append("")
    parts.append("**Leave-one-generator-out** (grouped by utterance; params fixed from the main split)\n")
    logo = out["logo"]
    keys = list(logo)
    parts.append(C.md_table(["", *keys], [
        ["mean EER %", *(C.pct(logo[k]["mean"]) for k in keys)],
        ["median EER %", *(C.pct(logo[k]["median"]) for k in keys)],
        ["pooled EER %", *(C.pct(logo[k]["pooled"]) for k in keys)],
        ["folds", *(str(logo[k]["n_folds"]) for k in keys)]]))
    parts.append("")
    gens = [p["generator"] for p in logo[keys[0]]["per"]]
    per = {k: {p["generator"]: p for p in logo[k]["per"]} for k in keys}
    parts.append("<details><summary>LOGO EER per held-out generator (%)</summary>\n")
    parts.append(C.md_table(["generator", "test spoof / bona", *keys], [
        [g, f"{per[keys[0]][g]['n_test_spoof']} / {per[keys[0]][g]['n_test_bona']}",
         *(C.pct(per[k][g]["eer"]) for k in keys)] for g in gens]))
    parts.append("\n</details>\n")
    for k, v in out["logo_speaker_grouped"].items():
        parts.append(f"Speaker-grouped LOGO ({k}, for comparison only): mean {C.pct(v['mean'])} %, median "
                     f"{C.pct(v['median'])} %, pooled {C.pct(v['pooled'])} % over {v['n_folds']} folds "
                     f"({v['n_failed']} folds without a usable train/test).\n")
    parts.append("**Without the 16 kHz bona fide sources** (83 LibriSpeech/AMI files removed)\n")
    parts.append(C.md_table(["features/back-end", "test EER % [95 % CI]", "AUC", "LOGO mean / median / pooled EER %"],
                            [[k, C.ci_text(v["test"]["eer"], v["test"]["lo"], v["test"]["hi"]),
                              f"{v['test']['auc']:.3f}",
                              f"{C.pct(v['logo_mean'])} / {C.pct(v['logo_median'])} / {C.pct(v['logo_pooled'])}"]
                             for k, v in out["no_16k"].items()]))
    return "\n".join(parts)


if __name__ == "__main__":
    main()
