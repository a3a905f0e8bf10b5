"""Shared pieces of the experiment scripts: the dev corpus and `audios synth` spoofs as tables, cached 16 kHz
decoding and clip-level features, back-end fitting, EER with bootstrap intervals, markdown tables.

Nothing here is library code: it is the glue the scripts in this folder share. Paths come from the environment:

* ``AUDIOS_DEV_CORPUS`` (default ``/work/shared/corpus/dev``): the dev corpus (read-only, never copied);
* ``AUDIOS_EXP_CACHE`` (default ``/tmp/audios_exp``): decoded audio, features and the ``audios synth`` output
  (``$AUDIOS_EXP_CACHE/synth``, made by ``scripts/train_default_detector.sh`` or by hand with the command in
  :data:`SYNTH_COMMAND`).

Every random choice takes an explicit seed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

from audios.audio import AudioConfig, load_audio
from audios.classic.backends import get_backend, raw_scores
from audios.evaluate import bootstrap_ci, equal_error_rate, per_group_metrics, roc_auc
from audios.features.base import get_extractor
from audios.split import SplitConfig, find_groups, leave_one_generator_out, split_manifest

log = logging.getLogger("bench.experiments")

DEV = Path(os.environ.get("AUDIOS_DEV_CORPUS", "/work/shared/corpus/dev"))
CACHE = Path(os.environ.get("AUDIOS_EXP_CACHE", "/tmp/audios_exp"))
SYNTH_DIR = CACHE / "synth"
SR = 16000
#: The offline `audios synth` methods with meaningful output (vocoder/codec need downloaded weights).
SYNTH_METHODS = ("world", "griffinlim", "espeak")
SYNTH_COMMAND = (f"audios synth {DEV}/manifest.csv --root {DEV} -m {','.join(SYNTH_METHODS)} "
                 f"-o {SYNTH_DIR} --workers 2 --seed 0")
SPECTRAL_EXT = {"extended": True}


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    warnings.filterwarnings("ignore", category=UserWarning)


def dev_manifest() -> pd.DataFrame:
    """The dev corpus manifest with ``id`` (its path), ``root``, ``licence_clear`` and ``origin='dev'``."""
    df = pd.read_csv(DEV / "manifest.csv")
    # The id `audios synth` gives a manifest without one: the path without its extension (the parent_id of spoofs).
    df.insert(0, "id", df["path"].astype(str).str.rsplit(".", n=1).str[0])
    if df["id"].duplicated().any():
        raise SystemExit(f"{DEV}/manifest.csv: paths differing only by extension")
    df["root"] = str(DEV)
    df["licence_clear"] = ~df["licence"].astype(str).str.startswith("unstated")
    df["origin"] = "dev"
    return df


def synth_manifest() -> pd.DataFrame:
    """The `audios synth` spoofs made from dev bona fide (``parent_id`` = the parent's dev path)."""
    path = SYNTH_DIR / "manifest.csv"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `{SYNTH_COMMAND}` first")
    df = pd.read_csv(path)
    df["id"] = "synth/" + df["path"].astype(str)
    df["root"] = str(SYNTH_DIR)
    df["licence_clear"] = True  # made by us from licence-clear bona fide (all dev bona fide is licence-clear)
    df["origin"] = "synth"
    df["method"] = df["generator"].astype(str).str.split("-").str[0]
    return df


def _key(*parts: Any) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:20]


def decode(df: pd.DataFrame) -> list[np.ndarray]:
    """Each row's audio, mono float32 at 16 kHz (cached as .npy under ``CACHE/audio16k``)."""
    folder = CACHE / "audio16k"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for root, path in zip(df["root"], df["path"]):
        f = folder / f"{_key(root, path)}.npy"
        if f.exists():
            out.append(np.load(f))
            continue
        x = load_audio(Path(root) / path, AudioConfig(sample_rate=SR))
        np.save(f, x)
        out.append(x)
    return out


def features(df: pd.DataFrame, extractor: str, config: dict[str, Any] | None = None,
             signals: Sequence[np.ndarray] | None = None, tag: str = "clip") -> list[np.ndarray]:
    """Clip-level features of every row (cached per row under ``CACHE/feat``)."""
    ext = get_extractor(extractor, config)
    folder = CACHE / "feat" / f"{extractor}-{_key(sorted((config or {}).items()), tag)}"
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"{_key(r, p)}.npy" for r, p in zip(df["root"], df["path"])]
    todo = [i for i, f in enumerate(files) if not f.exists()]
    if todo:
        sigs = signals if signals is not None else None
        need = df.iloc[todo]
        xs = [sigs[i] for i in todo] if sigs is not None else decode(need)
        for start in range(0, len(todo), 16):
            batch = xs[start:start + 16]
            for i, v in zip(todo[start:start + 16], ext.extract(list(batch)), strict=True):
                np.save(files[i], np.asarray(v, dtype=np.float32 if ext.kind == "frames" else np.float64))
        log.info("%s: extracted %d clips", extractor, len(todo))
    return [np.load(f) for f in files]


def labels(df: pd.DataFrame) -> np.ndarray:
    return (df["label"].astype(str) == "bonafide").to_numpy().astype(int)


def grouped_split(df: pd.DataFrame, by_speaker: bool = False, seed: int = 0,
                  ratios: tuple[float, float] = (0.7, 0.3)) -> pd.Series:
    """train/test labels: utterance-grouped (and speaker-grouped when asked), stratified by label and generator."""
    cfg = SplitConfig(ratios=ratios, names=("train", "test"), seed=seed,
                      group_by=("speaker",) if by_speaker else ())
    res = split_manifest(df.drop(columns=["split"], errors="ignore"), cfg)
    if not res.leak.ok:
        raise RuntimeError(f"split leaks: {res.leak.errors}")
    return res.table["split"].reindex(df.index)


def logo_splits(df: pd.DataFrame, seed: int = 0, by_speaker: bool = False) -> dict[str, pd.Series]:
    """Leave-one-generator-out train/test labels per generator (grouped by utterance; by speaker too if asked)."""
    cfg = SplitConfig(ratios=(0.7, 0.3), names=("train", "test"), seed=seed,
                      group_by=("speaker",) if by_speaker else ())
    out = {}
    for g, res in leave_one_generator_out(df.drop(columns=["split"], errors="ignore"), cfg).items():
        out[g] = res.table["split"].reindex(df.index).fillna("dropped")
    return out


def fit(model: str, X: Any, y: np.ndarray, params: dict[str, Any] | None = None, seed: int = 0,
        groups: np.ndarray | None = None) -> tuple[Any, dict[str, Any]]:
    """A fitted back-end: ``params`` as given, else chosen on the back-end's grid by grouped 5-fold CV (ROC-AUC)."""
    backend = get_backend(model)
    if backend.kind == "frames" or params is not None or not backend.grid:
        p = dict(params or {})
        return backend.build(p, seed).fit(X, y), p
    grid = {f"clf__{k}": list(v) for k, v in backend.grid.items()}
    cv = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    search = GridSearchCV(backend.build({}, seed), grid, cv=cv, scoring="roc_auc", refit=True, n_jobs=1)
    search.fit(X, y, groups=groups)
    return search.best_estimator_, {k.removeprefix("clf__"): v for k, v in search.best_params_.items()}


def score(estimator: Any, X: Any) -> np.ndarray:
    if hasattr(estimator, "score_recordings"):
        return estimator.score_recordings(X)
    return raw_scores(estimator, X)


def eer_ci(s: np.ndarray, y: np.ndarray, seed: int = 0, n: int = 1000) -> tuple[float, float, float]:
    """EER and its 95 % stratified bootstrap interval (clips resampled within class)."""
    res = bootstrap_ci(s, y.astype(bool), lambda a, b: {"eer": equal_error_rate(a, b).eer},
                       np.random.default_rng(seed), n_resamples=n)
    ci = res.intervals["eer"]
    return ci.estimate, ci.low, ci.high


def auc(s: np.ndarray, y: np.ndarray) -> float:
    return float(roc_auc(s, y.astype(bool)))


def per_generator(s: np.ndarray, y: np.ndarray, gen: Sequence[str]) -> pd.DataFrame:
    """Per spoof generator EER against all test bona fide (ASVspoof style), plus the pooled row."""
    g = np.where(y.astype(bool), "human", np.asarray(gen, dtype=str))
    rows = per_group_metrics(s, y.astype(bool), g)
    return pd.DataFrame([r.as_dict() for r in rows if r.group != "human"])


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def ci_text(e: float, lo: float, hi: float) -> str:
    return f"{100 * e:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def group_ids(df: pd.DataFrame) -> np.ndarray:
    """Utterance-linked groups (for grouped CV inside a training set)."""
    return find_groups(df.reset_index(drop=True), tuple(c for c in ("utterance", "parent_id") if c in df.columns))
