"""Reading and writing manifests (CSV or Parquet, chosen by the file suffix)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from audios.errors import ManifestError

ENTRY_COLUMNS = ("id", "path", "label", "generator", "speaker", "utterance", "subset")
# Metadata columns come from audios.manifest.metadata.METADATA_COLUMNS; `root` holds the corpus root
# the relative paths start from.
REQUIRED_COLUMNS = ("path", "label")
_STRING_COLUMNS = ("id", "path", "label", "generator", "speaker", "utterance", "subset", "root", "split", "sha256")


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a table atomically as CSV or Parquet (by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ManifestError(f"{path}: manifest must end in .csv or .parquet")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_manifest(path: str | Path, root: str | Path | None = None) -> pd.DataFrame:
    """Read a manifest and check it has path and label; ``root`` overrides the stored corpus root."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: manifest does not exist")
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype={c: str for c in _STRING_COLUMNS}, keep_default_na=False)
    except Exception as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    bad = sorted(set(df["label"]) - {"bonafide", "spoof"})
    if bad:
        raise ManifestError(f"{path}: labels must be bonafide|spoof, found {bad[:5]}")
    if root is not None:
        df["root"] = str(Path(root).resolve())
    elif "root" not in df.columns or (df["root"] == "").all():
        df["root"] = str(path.parent.resolve())
    if "id" not in df.columns:
        df.insert(0, "id", [str(Path(p).with_suffix("")) for p in df["path"]])
    return df


def audio_paths(df: pd.DataFrame) -> list[Path]:
    """Absolute paths of a manifest's recordings."""
    return [Path(r) / p for r, p in zip(df["root"], df["path"], strict=True)]
