"""Issue 8: does a detector trained on `audios synth` spoofs catch real TTS/vocoder spoofs?

Run:  python bench/experiments/synth_vs_real.py [--features spectral] [--model svm]
(needs the synth output of ``common.SYNTH_COMMAND`` in $AUDIOS_EXP_CACHE/synth; prints markdown)

The dev corpus is split 70/30 by utterance (``audios.split``, seed 0; the same split as classic_backends.py).
Every training set below uses only the train-side bona fide; the spoofs differ:

* ``real``: the dev corpus's real generators (train side);
* ``synth``: no real spoofs at all, only `audios synth` spoofs (world, griffinlim, espeak) whose parent
  recording is a train-side bona fide clip, so no test sentence or recording reaches training;
* ``synth:<method>``: one synth method only;
* ``real+synth``: both.

All are tested on the same rows: the test-side dev bona fide and real spoofs (EER with 95 % bootstrap CI, and
EER per real generator against all test bona fide). ``vocoder`` and ``codec`` are left out: offline they only
have randomly initialised weights, so their output says nothing about real neural vocoders.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

import common as C


def load_features(df: pd.DataFrame, feat: str) -> np.ndarray:
    cfg = C.SPECTRAL_EXT if feat == "spectral" else None
    return np.stack(C.features(df, feat, cfg))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", default="spectral")
    ap.add_argument("--model", default=None, help="back-end (default: the best one of classic_backends.json)")
    args = ap.parse_args()
    C.setup_logging()
    model = args.model
    if model is None:
        try:
            model = json.loads((C.CACHE / "classic_backends.json").read_text())["best"]["model"]
        except (OSError, KeyError):
            model = "svm"
    dev = C.dev_manifest()
    syn = C.synth_manifest()
    split = C.grouped_split(dev)
    Xd = load_features(dev, args.features)
    Xs = load_features(syn, args.features)
    yd = C.labels(dev)
    tr = (split == "train").to_numpy()
    te = (split == "test").to_numpy()
    train_parents = set(dev.loc[tr & (yd == 1), "id"])
    test_utts = set(dev.loc[te, "utterance"].astype(str))
    syn_ok = syn["parent_id"].astype(str).isin(train_parents).to_numpy().copy()
    syn_ok &= ~syn["utterance"].astype(str).isin(test_utts).to_numpy()
    bona_tr = tr & (yd == 1)
    spoof_tr = tr & (yd == 0)

    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    sets["real"] = (np.flatnonzero(bona_tr | spoof_tr), np.array([], dtype=int))
    sets["synth"] = (np.flatnonzero(bona_tr), np.flatnonzero(syn_ok))
    for m in C.SYNTH_METHODS:
        sets[f"synth:{m}"] = (np.flatnonzero(bona_tr), np.flatnonzero(syn_ok & (syn["method"] == m).to_numpy()))
    sets["real+synth"] = (np.flatnonzero(bona_tr | spoof_tr), np.flatnonzero(syn_ok))

    Xte, yte = Xd[te], yd[te]
    gen_te = dev.loc[te, "generator"].astype(str).to_numpy()
    results = {}
    for name, (di, si) in sets.items():
        X = np.concatenate([Xd[di], Xs[si]])
        y = np.concatenate([yd[di], np.zeros(si.size, dtype=int)])
        groups = C.group_ids(pd.concat([dev.iloc[di][["utterance"]], syn.iloc[si][["utterance"]]]))
        est, params = C.fit(model, X, y, groups=groups)
        s = C.score(est, Xte)
        e, lo, hi = C.eer_ci(s, yte)
        pg = C.per_generator(s, yte, gen_te)
        results[name] = {"n_bona": int(di.size - (y[:di.size] == 0).sum()), "n_real_spoof": int((yd[di] == 0).sum()),
                         "n_synth_spoof": int(si.size), "params": params, "eer": e, "lo": lo, "hi": hi,
                         "auc": C.auc(s, yte), "per": pg.to_dict(orient="records")}
        C.log.info("%s: EER %.3f", name, e)
    out = {"features": args.features, "model": model, "test_bona": int(yte.sum()),
           "test_spoof": int((1 - yte).sum()), "results": results}
    (C.CACHE / "synth_vs_real.json").write_text(json.dumps(out, indent=2, default=str))
    print(render(out))


def render(out: dict) -> str:
    res = out["results"]
    parts = [f"Features `{out['features']}`, back-end `{out['model']}` (grid by 5-fold CV grouped by utterance); "
             f"test = {out['test_bona']} bona fide + {out['test_spoof']} real spoofs of the dev test split.\n"]
    parts.append(C.md_table(["training spoofs", "train bona / real spoof / synth spoof", "test EER % [95 % CI]", "AUC"],
                            [[k, f"{v['n_bona']} / {v['n_real_spoof']} / {v['n_synth_spoof']}",
                              C.ci_text(v["eer"], v["lo"], v["hi"]), f"{v['auc']:.3f}"] for k, v in res.items()]))
    keys = list(res)
    per = {k: {r["group"]: r for r in res[k]["per"]} for k in keys}
    gens = [g for g in per[keys[0]] if g != "pooled"]
    parts.append("\nEER per real test generator (its spoofs vs all test bona fide), %:\n")
    parts.append(C.md_table(["generator", "n spoof", *keys],
                            [[g, per[keys[0]][g]["n_spoof"], *(C.pct(per[k][g]["eer"]) for k in keys)]
                             for g in gens]))
    return "\n".join(parts)


if __name__ == "__main__":
    main()
