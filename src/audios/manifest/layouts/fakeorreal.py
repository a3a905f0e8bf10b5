"""``for``: the Fake-or-Real (FoR) corpus, four versions with the same split and class folders.

``for-2sec|for-norm|for-original|for-rerec/{training,validation,testing}/{fake,real}/<file>``; the download
adds one level (``for-2sec/for-2seconds/training/fake/``), and any depth is accepted. The corpus does not
say which TTS system made each fake file, so spoof rows get generator ``unknown``.
"""

from __future__ import annotations

from pathlib import Path

from audios.errors import LayoutError
from audios.manifest.base import Entry, Listing, default_id
from audios.manifest.layouts.asvspoof2019 import walk_limited
from audios.manifest.layouts.folders import walk_audio

# Folder names of the four versions, as published and as unpacked (for-2seconds, for-rerecorded).
VERSIONS = {"for-2sec": "for-2sec", "for-2seconds": "for-2sec", "for-norm": "for-norm",
            "for-original": "for-original", "for-rerec": "for-rerec", "for-rerecorded": "for-rerec"}
SPLITS = {"training": "train", "train": "train", "validation": "val", "val": "val", "testing": "test",
          "test": "test"}
CLASSES = {"fake": "spoof", "real": "bonafide"}


def version_of(name: str) -> str | None:
    """Canonical version for a folder name (``for-2seconds`` -> ``for-2sec``); None when not a FoR version."""
    return VERSIONS.get(name.lower())


class FakeOrRealLayout:
    name = "for"
    description = "Fake-or-Real: for-{2sec,norm,original,rerec}/.../{training,validation,testing}/{fake,real}"

    def _classify(self, root: Path, rel: Path) -> tuple[str, str, str] | None:
        """(label, subset, version) of a file, from the last split/class folder pair on its path."""
        parts = [p.lower() for p in rel.parts[:-1]]
        for i in range(len(parts) - 2, -1, -1):
            if parts[i] in SPLITS and parts[i + 1] in CLASSES:
                versions = [v for v in (version_of(p) for p in [root.name, *parts[:i]]) if v]
                if versions:
                    return CLASSES[parts[i + 1]], SPLITS[parts[i]], versions[-1]
        return None

    def detect(self, root: Path) -> str | None:
        for here, dirnames, _ in walk_limited(root, max_depth=5):
            if here.name.lower() in SPLITS and {"fake", "real"} <= {d.lower() for d in dirnames}:
                rel = here.relative_to(root)
                if any(version_of(p) for p in [root.name, *rel.parts]):
                    return f"found Fake-or-Real folders {(rel / '{fake,real}').as_posix()}"
        return None

    def list_entries(self, root: Path) -> Listing:
        entries, outside = [], 0
        for rel in walk_audio(root):
            got = self._classify(root, rel)
            if got is None:
                outside += 1
                continue
            label, subset, version = got
            path = rel.as_posix()
            entries.append(Entry(path=path, label=label, generator="human" if label == "bonafide" else "unknown",
                                 subset=subset, id=default_id(path), extra={"version": version}))
        if not entries:
            raise LayoutError(f"{root}: no audio under for-*/{{training,validation,testing}}/{{fake,real}} folders")
        notes = [f"{outside} audio file(s) outside the for-*/<split>/{{fake,real}} folders were left out"] if outside else []
        return Listing(entries, [], notes)


LAYOUT = FakeOrRealLayout()
