"""Feature tables as training data: splits, label vectors, feature matrices, CV folds and a data summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from audios.errors import ConfigError, ManifestError
from audios.features.extract import read_feature_table
from audios.split import UNKNOWN_VALUES, find_groups

log = logging.getLogger(__name__)

#: The reference baseline's fallback split, used whenever a table has no ``split`` column:
#: ``train_test_split(rows, test_size=0.2, random_state=10, shuffle=True, stratify=None)``.
FALLBACK_TEST_SIZE = 0.2
FALLBACK_SEED = 10


@dataclass
class FeatureData:
    """A feature table split into train / val (may be None) / test, plus what describes it."""

    path: Path
    table: pd.DataFrame
    description: dict[str, Any]
    train: pd.DataFrame
    val: pd.DataFrame | None
    test: pd.DataFrame
    split_source: str

    @property
    def kind(self) -> str:
        return str(self.description["extractor"]["kind"])

    @property
    def columns(self) -> list[str]:
        return list(self.description["extractor"]["columns"])


def labels_of(df: pd.DataFrame, where: str) -> np.ndarray:
    """1 for bona fide, 0 for spoof; any other label raises ManifestError naming the row."""
    text = df["label"].astype(str).str.strip().str.lower()
    bad = ~text.isin(("bonafide", "spoof"))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ManifestError(f"{where}: row id {df['id'].iloc[i]!r} has label {df['label'].iloc[i]!r}, "
                            "not 'bonafide' or 'spoof'")
    return (text == "bonafide").to_numpy().astype(int)


def load_feature_data(path: str | Path, fallback_seed: int = FALLBACK_SEED,
                      fallback_test_size: float = FALLBACK_TEST_SIZE) -> FeatureData:
    """Read a feature table and split it: its ``split`` column when present, else the seeded shuffled split."""
    path = Path(path)
    table, description = read_feature_table(path)
    for col in ("id", "label"):
        if col not in table.columns:
            raise ManifestError(f"{path}: feature table lacks column {col!r}")
    labels_of(table, str(path))
    if "split" in table.columns:
        split = table["split"].astype(str)
        parts = {name: table[split == name].reset_index(drop=True) for name in ("train", "val", "test")}
        other = sorted(set(split) - {"train", "val", "test"})
        if other:
            log.info("%s: ignoring rows of splits %s", path, other)
        if parts["train"].empty or parts["test"].empty:
            raise ManifestError(f"{path}: split column needs train and test rows (have {sorted(set(split))})")
        val = parts["val"] if not parts["val"].empty else None
        source = "the table's split column"
    else:
        log.warning("%s has no split column: using a shuffled %.0f/%.0f split with seed %d; clips of one speaker "
                    "or sentence may land on both sides (run `audios split` first to avoid that)",
                    path, 100 * (1 - fallback_test_size), 100 * fallback_test_size, fallback_seed)
        train, test = train_test_split(table, test_size=fallback_test_size, random_state=fallback_seed, shuffle=True)
        parts = {"train": train.reset_index(drop=True), "test": test.reset_index(drop=True)}
        val = None
        source = (f"train_test_split(test_size={fallback_test_size}, random_state={fallback_seed}, shuffle=True) "
                  "(no split column)")
    for name, df in (("train", parts["train"]), ("test", parts["test"]), ("val", val)):
        if df is not None and len(set(labels_of(df, f"{path} ({name})"))) < 2:
            raise ManifestError(f"{path}: the {name} split holds only one class")
    return FeatureData(path=path, table=table, description=description, train=parts["train"], val=val,
                       test=parts["test"], split_source=source)


def vector_matrix(df: pd.DataFrame, columns: list[str], where: str) -> np.ndarray:
    """(rows, features) float64 matrix of ``columns``; missing or non-finite values raise naming the column."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ManifestError(f"{where}: feature column(s) {missing} are missing")
    X = df[columns].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        raise ManifestError(f"{where}: row id {df['id'].iloc[r]!r} has a non-finite value in {columns[c]!r}")
    return X


def frame_matrices(df: pd.DataFrame, where: str) -> list[np.ndarray]:
    """The (frames, dims) matrix of every row, loaded from ``features_path``."""
    if "features_path" not in df.columns:
        raise ManifestError(f"{where}: not a frame-feature table (no features_path column)")
    out = []
    for rid, p in zip(df["id"], df["features_path"]):
        try:
            m = np.load(p)
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{p}: cannot load frames of row id {rid!r} ({exc})") from exc
        if m.ndim != 2 or m.shape[0] == 0 or not np.isfinite(m).all():
            raise ManifestError(f"{p}: frames of row id {rid!r} have shape {m.shape} or non-finite values")
        out.append(m)
    return out


def cv_splitter(df: pd.DataFrame, y: np.ndarray, n_folds: int, group_by: tuple[str, ...],
                seed: int) -> tuple[Any, np.ndarray | None, str]:
    """A CV splitter for the training rows, its groups (or None) and a one-line description.

    Rows linked by any known value of ``group_by`` columns (e.g. the same sha256, utterance or speaker; see
    :func:`audios.split.find_groups`) stay in one fold, so a sentence or voice never scores itself. Folds are
    stratified by label as far as the groups allow.
    """
    present = tuple(c for c in group_by if c in df.columns)
    if present:
        groups = find_groups(df, present)
        n_groups = int(groups.max()) + 1
        if n_groups >= 2:
            k = min(n_folds, n_groups)
            if k < n_folds:
                log.warning("only %d groups by %s: using %d folds, not %d", n_groups, present, k, n_folds)
            return (StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed), groups,
                    f"StratifiedGroupKFold({k}, shuffle, seed {seed}), {n_groups} groups linked by {list(present)}")
        log.warning("all training rows are linked by %s into one group: falling back to ungrouped folds", present)
    k = min(n_folds, int(np.bincount(y).min()))
    if k < 2:
        raise ConfigError(f"cross-validation needs at least 2 clips of each class in train, have {np.bincount(y)}")
    text = f"StratifiedKFold({k}, shuffle, seed {seed})"
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed), None, text


def _known(values: pd.Series) -> pd.Series:
    text = values.astype(str).str.strip()
    return text[~text.str.lower().isin(UNKNOWN_VALUES)]


def _manifest_for(path: Path) -> pd.DataFrame | None:
    """The manifest the table was extracted from, when its ``<table>.run/config.yaml`` names a readable one."""
    config = path.with_suffix(".run") / "config.yaml"
    try:
        manifest = Path(yaml.safe_load(config.read_text())["manifest"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None
    if not manifest.is_absolute():
        manifest = (Path.cwd() / manifest)
    try:
        from audios.manifest import read_manifest

        return read_manifest(manifest)
    except (ManifestError, OSError):
        log.info("manifest %s named by %s is not readable; data summary without durations", manifest, config)
        return None


def summarize_data(data: FeatureData) -> dict[str, Any]:
    """Per split and class: clips, hours (when known), generators, speakers and languages, for the model card."""
    manifest = _manifest_for(data.path)
    extra = None
    if manifest is not None and "id" in manifest.columns:
        keep = [c for c in ("id", "duration_s", "language", "source", "format", "sample_rate") if c in manifest]
        extra = manifest[keep].drop_duplicates("id").set_index("id")
    cfg = data.description["extractor"].get("config", {})
    out: dict[str, Any] = {"features": str(data.path.resolve()), "split_source": data.split_source,
                           "manifest_found": manifest is not None, "splits": {}}
    for name, df in (("train", data.train), ("val", data.val), ("test", data.test)):
        if df is None:
            continue
        rows = {}
        for label in ("bonafide", "spoof"):
            part = df[df["label"].astype(str).str.lower() == label]
            hours = None
            if extra is not None and "duration_s" in extra.columns:
                d = pd.to_numeric(extra["duration_s"].reindex(part["id"].astype(str)), errors="coerce")
                hours = float(d.sum()) / 3600 if d.notna().any() else None
            elif "n_frames" in part.columns and cfg.get("hop_length") and cfg.get("sample_rate"):
                hours = float(part["n_frames"].sum()) * cfg["hop_length"] / cfg["sample_rate"] / 3600
            entry: dict[str, Any] = {"clips": int(len(part)), "hours": hours}
            if "generator" in part.columns:
                entry["generators"] = sorted(_known(part["generator"]).unique().tolist())
            if "speaker" in part.columns:
                speakers = _known(part["speaker"])
                entry["speakers"] = int(speakers.nunique())
                entry["top_speaker_share"] = (float(speakers.value_counts().iloc[0]) / len(part)
                                              if len(speakers) else 0.0)
                entry["top_speaker"] = str(speakers.value_counts().index[0]) if len(speakers) else None
            if extra is not None:
                for col in ("language", "format", "sample_rate", "source"):
                    if col in extra.columns:
                        vals = extra[col].reindex(part["id"].astype(str)).dropna().astype(str)
                        if col == "source":  # 'owner/repo[@branch]:path' -> 'owner/repo'
                            vals = vals.str.split(":", n=1).str[0].str.split("@", n=1).str[0]
                        entry[f"{col}s"] = {k: int(v) for k, v in vals.value_counts().items()}
            rows[label] = entry
        out["splits"][name] = rows
    return out
