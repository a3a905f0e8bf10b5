"""``bonafide-only``: every audio file under ROOT is a bona fide recording; sub-folders name the source.

For a folder of real speech with no fakes: `audios synth` then makes spoofs from it. Never chosen by `auto`.
"""

from __future__ import annotations

from pathlib import Path

from audios.errors import LayoutError
from audios.manifest.base import Entry, Listing, default_id
from audios.manifest.layouts.folders import walk_audio


class BonafideOnlyLayout:
    name = "bonafide-only"
    description = "every audio file under ROOT is bona fide (real) speech; sub-folders are sources"

    def detect(self, root: Path) -> str | None:
        return None  # a statement about the data only the user can make

    def list_entries(self, root: Path) -> Listing:
        files = walk_audio(root)
        if not files:
            raise LayoutError(f"{root}: no audio files found")
        entries = [
            Entry(path=str(rel), label="bonafide", generator="human", id=default_id(str(rel)),
                  extra={"source": str(rel.parent)} if rel.parent != Path(".") else {})
            for rel in files
        ]
        return Listing(entries, [], [f"all {len(entries)} file(s) taken as bona fide (--layout bonafide-only)"])


LAYOUT = BonafideOnlyLayout()
