"""Issue 9: build, validate and bundle the default detector (``src/audios/data/default_detector``).

Run via ``scripts/train_default_detector.sh`` (records the exact commands). Steps:

1. Data. Dev corpus rows whose licence is clear (not ``unstated``: 224 bona fide, 80 spoofs of 13 generators) plus
   the `audios synth` spoofs (world, griffinlim, espeak) made from those bona fide recordings. The 237 spoofs from
   demo pages without a licence are never trained on; they are used only to evaluate (21 generators the model has
   never seen).
2. Split (``audios.split``, grouped by utterance and by the synth parent recording, stratified by label and
   generator, seed 0): 60 % train, 20 % val (calibration and threshold), 20 % test.
3. Windows. Each clip decoded to 16 kHz mono and cut into the detector's 4 s windows with a 2 s hop (at most
   ``--max-windows`` per clip, evenly spread); train and val windows get ``--copies`` augmented copies each
   (seeded per window: noise at 10-30 dB SNR, gain -12..+6 dB, mp3/opus round trip, telephone band), so level,
   codec and bandwidth are weaker shortcuts.
4. Features per window -> a feature table (``audios features`` format) -> ``train_classic`` (grid by 5-fold CV
   grouped by utterance; logistic calibration and EER threshold on val).
5. Validation: leave-one-generator-out with the same recipe (per licence-clear generator and per synth method),
   file-level scores through ``audios.detect`` (mean of window LLRs) on the test split and on every dev file of
   generators never trained on, load time and latency per 4 s clip.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import common as C
from audios.audio import AudioConfig
from audios.classic.train import TrainConfig, train_classic
from audios.config import config_to_dict
from audios.detect import DetectConfig, _windows, detect_signal
from audios.features.base import describe_extractor, get_extractor
from audios.features.extract import METADATA_KEY
from audios.split import SplitConfig, leave_one_generator_out, split_manifest
from audios.train.augment import AugmentConfig, augment_waveform

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "src" / "audios" / "data" / "default_detector"
WIN_S, HOP_S = 4.0, 2.0
AUGMENT = AugmentConfig(noise=True, noise_p=0.5, noise_snr_db=(10.0, 30.0), gain=True, gain_p=0.8,
                        gain_db=(-12.0, 6.0), codec=True, codec_p=0.4, codecs=("mp3", "opus"), telephone=True,
                        telephone_p=0.1)


def corpus() -> pd.DataFrame:
    """Licence-clear dev rows + synth spoofs of them, one table; ``parent_id`` links a spoof to its recording."""
    dev = C.dev_manifest()
    syn = C.synth_manifest()
    dev["parent_id"] = dev["id"]
    clear = dev[dev["licence_clear"]]
    syn = syn[syn["parent_id"].isin(set(clear["id"]))]
    cols = ["id", "path", "root", "label", "generator", "speaker", "utterance", "parent_id", "licence", "origin",
            "sample_rate"]
    return pd.concat([clear[cols], syn[cols]], ignore_index=True)


def window_signals(x: np.ndarray, max_windows: int) -> list[np.ndarray]:
    win, hop = int(WIN_S * C.SR), int(HOP_S * C.SR)
    bounds = _windows(len(x), win, hop)
    if len(bounds) > max_windows:
        keep = np.linspace(0, len(bounds) - 1, max_windows).round().astype(int)
        bounds = [bounds[i] for i in keep]
    return [x[s:e] for s, e in bounds]


def window_table(df: pd.DataFrame, extractor: str, cfg: dict | None, copies: int, max_windows: int,
                 seed: int) -> pd.DataFrame:
    """One row per (clip, window, copy): features of the window (copy 0 clean, others augmented)."""
    ext = get_extractor(extractor, cfg)
    cache = C.CACHE / "winfeat" / f"{extractor}-{C._key(sorted((cfg or {}).items()), max_windows, seed, AUGMENT)}"
    cache.mkdir(parents=True, exist_ok=True)
    rows, feats = [], []
    sigs = C.decode(df)
    for (_, r), x in zip(df.iterrows(), sigs, strict=True):
        f = cache / f"{C._key(r['root'], r['path'], copies)}.npy"
        wins = window_signals(x, max_windows)
        n_copies = copies + 1 if r["split"] in ("train", "val") else 1
        if f.exists():
            values = np.load(f)
        else:
            batch = []
            for k in range(n_copies):
                for j, w in enumerate(wins):
                    if k == 0:
                        batch.append(w)
                    else:
                        rng = np.random.default_rng([seed, int(C._key(r["id"], j, k)[:8], 16)])
                        y = augment_waveform(w, C.SR, AUGMENT, rng)
                        batch.append(y if np.max(np.abs(y)) > 1e-4 else w)
            values = np.stack(ext.extract(batch))
            np.save(f, values)
        feats.append(values)
        for k in range(n_copies):
            for j in range(len(wins)):
                rows.append({"id": f"{r['id']}#w{j}#a{k}", "clip_id": r["id"], "label": r["label"],
                             "generator": r["generator"], "speaker": r["speaker"], "utterance": r["utterance"],
                             "parent_id": r["parent_id"], "split": r["split"], "origin": r["origin"]})
    table = pd.DataFrame(rows)
    X = np.concatenate(feats)
    return pd.concat([table, pd.DataFrame(X, columns=list(ext.columns))], axis=1)


def write_table(table: pd.DataFrame, out: Path, extractor: str, cfg: dict | None) -> Path:
    ext = get_extractor(extractor, cfg)
    description = {"extractor": describe_extractor(ext), "audio": config_to_dict(AudioConfig(sample_rate=C.SR))}
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), METADATA_KEY: json.dumps(description)})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow, out)
    return out


def clip_scores(detector, df: pd.DataFrame) -> np.ndarray:
    """File-level LLRs through audios.detect (4 s windows, 2 s hop, mean of window LLRs), from 16 kHz audio."""
    sigs = C.decode(df)
    return np.array([detect_signal(detector, x, C.SR, name=i, config=DetectConfig())["score"]
                     for i, x in zip(df["id"], sigs, strict=True)])


def logo(full: pd.DataFrame, win: pd.DataFrame, feature_cols: list[str], model: str, params: dict) -> list[dict]:
    """Leave-one-generator-out with the shipped recipe (augmented train windows; clip = mean window score)."""
    out = []
    base = full.drop(columns=["split"])
    gen = base["generator"].astype(str).where(base["origin"] == "dev", "synth:" + base["generator"].str.split("-").str[0])
    logo_df = base.assign(generator=gen)
    cfg = SplitConfig(ratios=(0.7, 0.3), names=("train", "test"), seed=0)
    y_all = C.labels(win)
    for g, res in leave_one_generator_out(logo_df, cfg).items():
        split = res.table.set_index("id")["split"]
        wsplit = win["clip_id"].map(split).fillna("dropped")
        tr = (wsplit == "train").to_numpy()
        te = ((wsplit == "test") & win["id"].str.endswith("#a0")).to_numpy()
        est, _ = C.fit(model, win.loc[tr, feature_cols].to_numpy(), y_all[tr], params)
        s = C.score(est, win.loc[te, feature_cols].to_numpy())
        clip = pd.DataFrame({"clip": win.loc[te, "clip_id"].to_numpy(), "s": s, "y": y_all[te]}).groupby("clip").mean()
        e = float(C.equal_error_rate(clip["s"].to_numpy(), clip["y"].to_numpy().astype(bool)).eer)
        out.append({"generator": g, "eer": e, "n_spoof": int((clip["y"] == 0).sum()),
                    "n_bona": int((clip["y"] == 1).sum())})
        C.log.info("LOGO %s: %.3f", g, e)
    return out


def measure_speed(n: int = 30) -> dict:
    code = ("import time; t0=time.perf_counter(); import audios.detect as d; t1=time.perf_counter(); "
            "det=d.load_detector(None); t2=time.perf_counter(); print(t1-t0, t2-t1)")
    loads = []
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        loads.append(float(r.stdout.split()[1]))
    from audios.detect import load_detector

    det = load_detector(None)
    rng = np.random.default_rng(0)
    x = C.decode(C.dev_manifest().iloc[[0]])[0][: int(WIN_S * C.SR)]
    x = x if x.size == int(WIN_S * C.SR) else np.resize(x, int(WIN_S * C.SR))
    detect_signal(det, x, C.SR)
    lat = []
    for _ in range(n):
        y = (x + 1e-3 * rng.standard_normal(x.size)).astype(np.float32)
        t = time.perf_counter()
        detect_signal(det, y, C.SR)
        lat.append(1000 * (time.perf_counter() - t))
    return {"load_s_after_imports": loads, "load_s_median": statistics.median(loads),
            "latency_ms_p50": statistics.median(lat), "latency_ms_p90": float(np.percentile(lat, 90)), "n": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", default="spectral")
    ap.add_argument("--model", default="logreg")
    ap.add_argument("--copies", type=int, default=1, help="augmented copies per train/val window")
    ap.add_argument("--max-windows", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", default=str(C.CACHE / "default_detector_run"))
    ap.add_argument("--no-logo", action="store_true")
    ap.add_argument("--install", action="store_true", help="copy the model into src/audios/data/default_detector")
    args = ap.parse_args()
    C.setup_logging()
    cfg = C.SPECTRAL_EXT if args.features == "spectral" else None

    full = corpus()
    res = split_manifest(full, SplitConfig(ratios=(0.6, 0.2, 0.2), names=("train", "val", "test"), seed=args.seed))
    if not res.leak.ok:
        raise SystemExit(f"split leaks: {res.leak.errors}")
    full = res.table
    C.log.info("split:\n%s", res.summary())
    win = window_table(full, args.features, cfg, args.copies, args.max_windows, args.seed)
    run_dir = Path(args.run_dir)
    table_path = write_table(win, run_dir.parent / f"{run_dir.name}_windows.parquet", args.features, cfg)
    tc = TrainConfig(features=str(table_path), model=args.model, out=str(run_dir), seed=args.seed,
                     cv_group_by=("utterance", "parent_id"))
    result = train_classic(tc)
    C.log.info("%s", result.summary())
    feature_cols = list(get_extractor(args.features, cfg).columns)

    from audios.detect import ClassicDetectorAdapter

    det = ClassicDetectorAdapter(run_dir, name="audios-default")
    dev = C.dev_manifest()
    dev["parent_id"] = dev["id"]
    test_ids = set(full.loc[(full["split"] == "test") & (full["origin"] == "dev"), "id"])
    train_ids = sorted(full.loc[full["split"].isin(["train", "val"]), "id"])
    trained_gens = set(full.loc[full["split"].isin(["train", "val"]) & (full["label"] == "spoof"), "generator"])
    ev = {}
    # (a) licence-clear dev test split; (b) test bona fide + every dev spoof of a generator never trained on.
    t = dev[dev["id"].isin(test_ids)]
    unseen = dev[(dev["label"] == "spoof") & ~dev["generator"].isin(trained_gens)]
    u = pd.concat([t[t["label"] == "bonafide"], unseen])
    syn_test = full[(full["split"] == "test") & (full["origin"] == "synth")]
    for name, d in (("test_licence_clear", t), ("unseen_generators", u)):
        s = clip_scores(det, d)
        y = C.labels(d)
        e, lo, hi = C.eer_ci(s, y)
        pg = C.per_generator(s, y, d["generator"].astype(str).to_numpy())
        from audios.evaluate import cllr, decision_metrics

        dm = decision_metrics(s, y.astype(bool), det.threshold)
        ev[name] = {"n_bona": int(y.sum()), "n_spoof": int((1 - y).sum()), "eer": e, "lo": lo, "hi": hi,
                    "auc": C.auc(s, y), "cllr": float(cllr(s, y.astype(bool))),
                    "decision": {k: v for k, v in dm.__dict__.items()} if hasattr(dm, "__dict__") else str(dm),
                    "per": pg.to_dict(orient="records")}
        C.log.info("%s: EER %.3f AUC %.3f", name, e, ev[name]["auc"])
    s_syn = clip_scores(det, syn_test)
    ev["synth_test_spoofs_called_fake"] = float(np.mean(s_syn < det.threshold)) if len(s_syn) else None
    logo_rows = [] if args.no_logo else logo(full, win, feature_cols, args.model, result.params)

    info = {
        "features": args.features, "feature_config": cfg, "model": args.model, "params": result.params,
        "augment": config_to_dict(AUGMENT), "copies": args.copies, "max_windows": args.max_windows,
        "window_s": WIN_S, "hop_s": HOP_S, "seed": args.seed, "val_eer_windows": result.val_eer,
        "test_eer_windows": result.test_eer, "split_counts": res.counts().to_dict(orient="records"),
        "trained_generators": sorted(trained_gens), "evaluation": ev, "logo": logo_rows,
        "train_ids": train_ids, "test_ids": sorted(test_ids),
        "command": " ".join(["python", "bench/experiments/default_detector.py", *sys.argv[1:]]),
        "train_classic_command": (run_dir / "run.json").exists() and json.loads((run_dir / "run.json").read_text()).get("command"),
        "dev_corpus": str(C.DEV), "synth_command": C.SYNTH_COMMAND,
    }
    (run_dir / "default_detector_info.json").write_text(json.dumps(info, indent=2, default=str))
    if args.install:
        BUNDLE.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "model.joblib", BUNDLE / "model.joblib")
        info["speed"] = measure_speed()
        info["model_bytes"] = (BUNDLE / "model.joblib").stat().st_size
        (BUNDLE / "train_info.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
        (run_dir / "default_detector_info.json").write_text(json.dumps(info, indent=2, default=str))
    print(json.dumps({k: v for k, v in info.items() if k not in ("train_ids", "test_ids")}, indent=1, default=str))


if __name__ == "__main__":
    main()
