"""``fakeavceleb``: the audio track of FakeAVCeleb's videos.

Four category folders, each ``<category>/<race>/<gender>/<id>/<file>.mp4``: ``RealVideo-RealAudio`` (A),
``RealVideo-FakeAudio`` (B), ``FakeVideo-RealAudio`` (C), ``FakeVideo-FakeAudio`` (D). The audio is spoof
exactly when the category's audio half is ``FakeAudio``. ``meta_data.csv`` (header
``source,target1,target2,method,category,type,race,gender,path,``; the ``path`` column holds the file name and an
unnamed tenth column the folder) gives each video's ``method``; it becomes the generator of spoof audio.
Without it, spoof audio is credited to its category. mp4 audio is decoded through PyAV.
"""

from __future__ import annotations

import csv
from pathlib import Path

from audios.errors import LayoutError
from audios.manifest.base import Entry, Listing, default_id
from audios.manifest.layouts.asvspoof2019 import find_dirs, find_files
from audios.manifest.layouts.folders import walk_audio

CATEGORIES = ("RealVideo-RealAudio", "RealVideo-FakeAudio", "FakeVideo-RealAudio", "FakeVideo-FakeAudio")
META = "meta_data.csv"


def label_of(category: str) -> str:
    return "spoof" if category.endswith("FakeAudio") else "bonafide"


def read_meta(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """Rows of meta_data.csv keyed by (category, source id, file name)."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LayoutError(f"{path}: cannot read ({exc})") from exc
    needed = ("source", "method", "type", "path")
    if not all(h in header for h in needed):
        raise LayoutError(f"{path}: expected columns {', '.join(needed)}, found {header}")
    col = {h: header.index(h) for h in header if h}
    out = {}
    for number, row in enumerate(rows, 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(col.values()):
            raise LayoutError(f"{path}:{number}: expected {max(col.values()) + 1} fields, got {len(row)}")
        record = {h: row[i].strip() for h, i in col.items()}
        out[(record["type"], record["source"], record["path"])] = record
    return out


class FakeAVCelebLayout:
    name = "fakeavceleb"
    description = "FakeAVCeleb: {Real,Fake}Video-{Real,Fake}Audio/<race>/<gender>/<id>/*.mp4 (+ meta_data.csv)"

    def categories(self, root: Path) -> list[Path]:
        return find_dirs(root, lambda n: n in CATEGORIES, max_depth=3)

    def detect(self, root: Path) -> str | None:
        found = self.categories(root)
        if not found:
            return None
        return f"found FakeAVCeleb category folder(s): {', '.join(sorted({p.name for p in found}))}"

    def list_entries(self, root: Path) -> Listing:
        categories = self.categories(root)
        if not categories:
            raise LayoutError(f"{root}: no FakeAVCeleb category folder ({', '.join(CATEGORIES)}) found")
        metas = sorted(find_files(root, lambda n: n == META, max_depth=2), key=lambda p: len(p.parts))
        meta = read_meta(metas[0]) if metas else {}
        entries, used, unlisted = [], set(), 0
        for folder in categories:
            category = folder.name
            label = label_of(category)
            for rel in walk_audio(folder):
                path = (folder / rel).relative_to(root).as_posix()
                speaker = rel.parts[-2] if len(rel.parts) >= 2 else "unknown"
                race, gender = (rel.parts[0], rel.parts[1]) if len(rel.parts) >= 4 else ("", "")
                record = meta.get((category, speaker, rel.name))
                if record is not None:
                    used.add((category, speaker, rel.name))
                elif meta:
                    unlisted += 1
                method = record["method"] if record else ""
                generator = "human" if label == "bonafide" else (method or category)
                extra = {"category": category, "race": race, "gender": gender}
                if method:
                    extra["method"] = method
                if record and record.get("target1", "-") not in ("", "-"):
                    extra["target"] = record["target1"]
                entries.append(Entry(path=path, label=label, generator=generator, speaker=speaker,
                                     id=default_id(path), extra=extra))
        if not entries:
            raise LayoutError(f"{root}: the FakeAVCeleb category folders hold no audio or video files")
        present = {folder.name: folder for folder in categories}
        missing = [((present[key[0]] / rec.get("race", "") / rec.get("gender", "") / key[1] / key[2])
                    .relative_to(root).as_posix(), f"listed in {META} but not found on disk")
                   for key, rec in meta.items() if key not in used and key[0] in present]
        notes = []
        if not metas:
            notes.append(f"no {META} found: spoof audio is credited to its category, not its method")
        if unlisted:
            notes.append(f"{unlisted} file(s) are not in {META}; their spoof audio is credited to the category")
        return Listing(entries, missing, notes)


LAYOUT = FakeAVCelebLayout()
