"""``asvspoof2021``: ASVspoof 2021 LA and DF evaluation data, read from the released keys.

The keys (``keys/{LA,DF}/CM/trial_metadata.txt``) have one space-separated line per trial::

    LA: SPEAKER FILE_ID CODEC TRANSMISSION ATTACK KEY TRIM SUBSET
        LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval
    DF: SPEAKER FILE_ID CODEC SOURCE ATTACK KEY TRIM SUBSET VOCODER ...
        LA_0043 DF_E_2000026 mp3m4a asvspoof A09 spoof notrim eval traditional_vocoder - - - -

``ATTACK`` is ``-`` for bona fide speech; ``SUBSET`` is the evaluation phase (``progress``, ``eval``,
``hidden_track``); DF ``SOURCE`` is the corpus the trial came from (asvspoof, vcc2018, vcc2020). Audio lies in
``ASVspoof2021_{LA,DF}_eval/flac/<FILE_ID>.flac`` (DF ships in parts, ``ASVspoof2021_DF_eval_part0N/...``).
"""

from __future__ import annotations

import re
from pathlib import Path

from audios.errors import LayoutError
from audios.manifest.base import Entry, Listing
from audios.manifest.layouts.asvspoof2019 import (
    KEYS, audio_index, count_found, find_files, first_fields, read_fields, rows_to_listing,
)

AUDIO_DIR = re.compile(r"^ASVspoof2021_(LA|DF)_eval")
TRACKS = ("LA", "DF")


def _track_of(path: Path) -> str | None:
    """LA or DF from ``.../<TRACK>/CM/trial_metadata.txt``."""
    if path.parent.name == "CM" and path.parent.parent.name in TRACKS:
        return path.parent.parent.name
    return None


class ASVspoof2021Layout:
    name = "asvspoof2021"
    description = "ASVspoof 2021 LA/DF: keys/{LA,DF}/CM/trial_metadata.txt and ASVspoof2021_{LA,DF}_eval/flac audio"

    def keys(self, root: Path) -> list[Path]:
        candidates = find_files(root, lambda n: n == "trial_metadata.txt", max_depth=6)
        return [p for p in candidates
                if _track_of(p) and (f := first_fields(p)) and len(f) >= 8 and f[5] in KEYS]

    def detect(self, root: Path) -> str | None:
        found = self.keys(root)
        if not found:
            return None
        tracks = sorted({_track_of(p) for p in found})
        return f"found ASVspoof 2021 CM keys for {', '.join(tracks)} (.../CM/trial_metadata.txt)"

    def list_entries(self, root: Path) -> Listing:
        keys = self.keys(root)
        if not keys:
            raise LayoutError(f"{root}: no keys/{{LA,DF}}/CM/trial_metadata.txt with bonafide/spoof keys found")
        rows: list[tuple[str, Entry]] = []
        for key_file in sorted(keys):
            track = _track_of(key_file)
            name = f"{track}/CM/{key_file.name}"
            for number, fields in enumerate(read_fields(key_file, 8), 1):
                speaker, file_id, codec, channel, attack, key, trim, subset = fields[:8]
                if key not in KEYS:
                    raise LayoutError(f"{key_file}:{number}: key {key!r} is not bonafide or spoof")
                extra = {"track": track, "codec": codec, "trim": trim, "protocol": name}
                if track == "LA":
                    extra["transmission"] = channel
                else:
                    extra["data_source"] = channel
                    if len(fields) > 8:
                        extra["vocoder"] = fields[8]
                rows.append((file_id, Entry(
                    path=file_id, label=key, generator="human" if key == "bonafide" else attack,
                    speaker=speaker, utterance=file_id, subset=subset, id=file_id, extra=extra,
                )))
        index = audio_index(root, lambda n: bool(AUDIO_DIR.match(n)))
        return rows_to_listing(rows, index, count_found(rows, index))


LAYOUT = ASVspoof2021Layout()
