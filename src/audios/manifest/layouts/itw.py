"""``itw``: In-the-Wild (Müller et al., 2022), ``meta.csv`` with ``file,speaker,label`` and the audio beside it.

Labels are ``spoof`` and ``bona-fide``. The release names no generator, so spoof rows get ``unknown``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audios.errors import LayoutError
from audios.manifest.base import Entry, Listing, default_id, normalise_label
from audios.manifest.layouts.asvspoof2019 import find_files

REQUIRED = ("file", "speaker", "label")


def _header(path: Path) -> list[str]:
    try:
        return [c.strip().lower() for c in pd.read_csv(path, nrows=0).columns]
    except Exception:  # an unreadable or empty meta.csv is simply not this layout
        return []


class InTheWildLayout:
    name = "itw"
    description = "In-the-Wild: meta.csv (file, speaker, label spoof/bona-fide) with the audio beside it"

    def find_meta(self, root: Path) -> Path | None:
        found = [p for p in find_files(root, lambda n: n == "meta.csv", max_depth=2)
                 if all(c in _header(p) for c in REQUIRED)]
        return min(found, key=lambda p: len(p.parts)) if found else None

    def detect(self, root: Path) -> str | None:
        meta = self.find_meta(root)
        if meta is None:
            return None
        return f"found In-the-Wild {meta.relative_to(root).as_posix()} with file, speaker and label columns"

    def list_entries(self, root: Path) -> Listing:
        meta = self.find_meta(root)
        if meta is None:
            raise LayoutError(f"{root}: no meta.csv with columns {', '.join(REQUIRED)} found")
        try:
            df = pd.read_csv(meta, dtype=str, keep_default_na=False)
        except Exception as exc:
            raise LayoutError(f"{meta}: cannot read table ({exc})") from exc
        df.columns = [c.strip().lower() for c in df.columns]
        base = meta.parent
        entries, missing, bad = [], [], []
        for row in df.to_dict("records"):
            label = normalise_label(row["label"])
            if label is None:
                bad.append((row["file"], row["label"]))
                continue
            path = (base / row["file"]).relative_to(root).as_posix()
            if not (root / path).is_file():
                missing.append((path, "listed in meta.csv but not found on disk"))
                continue
            entries.append(Entry(path=path, label=label, generator="human" if label == "bonafide" else "unknown",
                                 speaker=row["speaker"] or "unknown", id=default_id(path)))
        notes = []
        if bad:
            notes.append(f"{len(bad)} row(s) of meta.csv with an unknown label left out, e.g. {bad[0][0]} "
                         f"({bad[0][1]!r})")
        return Listing(entries, missing, notes)


LAYOUT = InTheWildLayout()
