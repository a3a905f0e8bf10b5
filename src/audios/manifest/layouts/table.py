"""``csv``: a user's own table with at least ``path`` and ``label``; other known columns are kept."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audios.errors import LayoutError
from audios.manifest.base import Entry, Listing, normalise_label

# Names tried, in order, when ROOT is a folder rather than the table itself.
TABLE_NAMES = ("manifest.csv", "metadata.csv", "labels.csv", "manifest.tsv", "metadata.tsv")
PATH_COLUMNS = ("path", "file", "filename", "file_path", "audio", "audio_path")
LABEL_COLUMNS = ("label", "class", "target", "is_fake")
KNOWN = {"generator": ("generator", "attack", "system", "system_id", "attack_id"),
         "speaker": ("speaker", "speaker_id", "spk"),
         "utterance": ("utterance", "utterance_id", "utt"),
         "subset": ("subset", "split_official", "partition"),
         "id": ("id",)}
# Columns we measure ourselves; the table's own values for them are not trusted.
REMEASURED = {"duration_s", "sample_rate", "channels", "format", "peak", "rms_dbfs", "clipped_fraction",
              "lead_silence_s", "trail_silence_s", "sha256", "root", "split"}


def _read(path: Path) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise LayoutError(f"{path}: cannot read table ({exc})") from exc


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


class TableLayout:
    name = "csv"
    description = "a table (manifest.csv or metadata.csv) with at least path and label columns"

    def find_table(self, root: Path) -> Path | None:
        if root.is_file():
            return root
        return next((root / n for n in TABLE_NAMES if (root / n).is_file()), None)

    def detect(self, root: Path) -> str | None:
        table = self.find_table(root)
        if table is None:
            return None
        columns = list(_read(table).columns) if table.stat().st_size else []
        if _pick(columns, PATH_COLUMNS) and _pick(columns, LABEL_COLUMNS):
            return f"{table.name} has path and label columns"
        return None

    def list_entries(self, root: Path) -> Listing:
        table = self.find_table(root)
        if table is None:
            raise LayoutError(f"{root}: no table found (looked for {', '.join(TABLE_NAMES)})")
        base = table.parent
        df = _read(table)
        path_col, label_col = _pick(list(df.columns), PATH_COLUMNS), _pick(list(df.columns), LABEL_COLUMNS)
        if not path_col or not label_col:
            raise LayoutError(f"{table}: needs a path and a label column, found {list(df.columns)}")
        picked = {key: _pick(list(df.columns), names) for key, names in KNOWN.items()}
        used = {path_col, label_col, *[c for c in picked.values() if c]}
        extra_cols = [c for c in df.columns if c not in used and c.lower() not in REMEASURED]
        entries, missing, bad_labels = [], [], []
        for row in df.to_dict("records"):
            label = normalise_label(row[label_col])
            if label is None:
                bad_labels.append(row[path_col])
                continue
            rel = row[path_col]
            if not (base / rel).exists():
                missing.append((rel, "listed in the table but not found on disk"))
                continue
            entries.append(Entry(
                path=rel, label=label,
                **{k: row[c] for k, c in picked.items() if c and row[c] != ""},
                extra={c: row[c] for c in extra_cols},
            ))
        notes = [f"{len(bad_labels)} row(s) with an unknown label left out, e.g. {bad_labels[0]}"] if bad_labels else []
        return Listing(entries, missing, notes)


LAYOUT = TableLayout()
