"""``folders``: one folder per class (ai/human, fake/real, spoof/bonafide) at any depth.

Sub-folders below a class folder name the generator (spoof) or the source (bona fide).
"""

from __future__ import annotations

import os
from pathlib import Path

from audios.audio import is_audio_path
from audios.errors import LayoutError
from audios.manifest.base import Entry, Listing, default_id

CLASS_FOLDERS = {
    "bonafide": "bonafide", "bona_fide": "bonafide", "bona-fide": "bonafide", "real": "bonafide",
    "human": "bonafide", "genuine": "bonafide",
    "spoof": "spoof", "fake": "spoof", "ai": "spoof", "synthetic": "spoof", "deepfake": "spoof",
}


def class_of(folder_name: str) -> str | None:
    """The class a folder name stands for: exact names, or a known name plus a suffix like ``ai_full``."""
    n = folder_name.lower()
    if n in CLASS_FOLDERS:
        return CLASS_FOLDERS[n]
    for sep in ("_", "-"):
        head = n.split(sep, 1)[0]
        if sep in n and head in CLASS_FOLDERS:
            return CLASS_FOLDERS[head]
    return None


def walk_audio(root: Path) -> list[Path]:
    """Every audio file under ``root`` (sorted, symlink loops not followed), relative to ``root``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and is_audio_path(f):
                out.append((Path(dirpath) / f).relative_to(root))
    return out


class FoldersLayout:
    name = "folders"
    description = "folders named ai/human, fake/real or spoof/bonafide, at any depth; sub-folders = generator/source"

    def _classify(self, rel: Path) -> tuple[str, list[str]] | None:
        parts = rel.parts[:-1]
        # The deepest class-named folder decides (data/real/fake_voices/x.wav is spoof).
        for i in range(len(parts) - 1, -1, -1):
            label = class_of(parts[i])
            if label:
                return label, list(parts[i + 1:])
        return None

    def detect(self, root: Path) -> str | None:
        classes = set()
        for dirpath, dirnames, _ in os.walk(root):
            for d in dirnames:
                label = class_of(d)
                if label:
                    classes.add(label)
            if len(classes) == 2:
                return "found folders for both classes (e.g. real/fake, human/ai, bonafide/spoof)"
            if Path(dirpath).relative_to(root).parts.__len__() > 4:
                dirnames[:] = []
        return None

    def list_entries(self, root: Path) -> Listing:
        entries, notes = [], []
        unclassified = 0
        for rel in walk_audio(root):
            got = self._classify(rel)
            if got is None:
                unclassified += 1
                continue
            label, below = got
            sub = "/".join(below)
            if label == "spoof":
                entry = Entry(path=str(rel), label=label, generator=sub or "unknown", id=default_id(str(rel)))
            else:
                entry = Entry(path=str(rel), label=label, generator="human", id=default_id(str(rel)),
                              extra={"source": sub} if sub else {})
            entries.append(entry)
        if not entries:
            raise LayoutError(f"{root}: no audio files inside folders named ai/human, fake/real or spoof/bonafide")
        if unclassified:
            notes.append(f"{unclassified} audio file(s) outside any class folder were left out")
        return Listing(entries, [], notes)


LAYOUT = FoldersLayout()
