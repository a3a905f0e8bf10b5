"""``asvspoof5``: ASVspoof 5 (track 1, countermeasures), read from its ``.tsv`` protocols.

Despite the suffix the protocols are whitespace-separated, one line per file::

    SPEAKER FILE_ID GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP
    T_4850 T_0000000000 F - - - AC3 A05 spoof -
    T_3734 T_0000000011 F - - - - bonafide bonafide -

Protocols are ``ASVspoof5.train.tsv``, ``ASVspoof5.dev.track_1.tsv``, ``ASVspoof5.eval.track_1.tsv``; track 2
(speaker verification) lists have another format and are not read. Audio ships as tar parts that unpack to
``flac_T_aa``...``flac_T_ae``, ``flac_D_*``, ``flac_E_*`` (or one ``flac_T``/``flac_D``/``flac_E_eval`` folder).
A partial download is fine: rows whose audio is absent are reported as missing.
"""

from __future__ import annotations

import re
from pathlib import Path

from audios.errors import LayoutError
from audios.manifest.base import Entry, Listing
from audios.manifest.layouts.asvspoof2019 import (
    KEYS, audio_index, count_found, find_files, first_fields, read_fields, rows_to_listing,
)

PROTOCOL = re.compile(r"^ASVspoof5\.(train|dev|eval)\..*tsv$")
AUDIO_DIR = re.compile(r"^flac_[TDE](_|$)")


class ASVspoof5Layout:
    name = "asvspoof5"
    description = "ASVspoof 5 track 1: ASVspoof5.{train,dev,eval}*.tsv protocols and flac_{T,D,E}_* audio folders"

    def protocols(self, root: Path) -> list[Path]:
        candidates = find_files(root, lambda n: bool(PROTOCOL.match(n)) and "track_2" not in n, max_depth=4)
        return [p for p in candidates if (f := first_fields(p)) and len(f) >= 9 and f[8] in KEYS]

    def detect(self, root: Path) -> str | None:
        found = self.protocols(root)
        if not found:
            return None
        return f"found ASVspoof 5 protocol(s): {', '.join(sorted(p.name for p in found))}"

    def list_entries(self, root: Path) -> Listing:
        protocols = self.protocols(root)
        if not protocols:
            raise LayoutError(f"{root}: no ASVspoof5.{{train,dev,eval}}*.tsv protocol with bonafide/spoof keys found")
        rows: list[tuple[str, Entry]] = []
        for protocol in sorted(protocols):
            subset = PROTOCOL.match(protocol.name).group(1)
            for number, fields in enumerate(read_fields(protocol, 9), 1):
                speaker, file_id, gender, codec, codec_q, codec_seed, attack_tag, attack, key = fields[:9]
                if key not in KEYS:
                    raise LayoutError(f"{protocol}:{number}: key {key!r} is not bonafide or spoof")
                rows.append((file_id, Entry(
                    path=file_id, label=key, generator="human" if key == "bonafide" else attack,
                    speaker=speaker, utterance=file_id, subset=subset, id=file_id,
                    extra={"gender": gender, "codec": codec, "codec_q": codec_q, "codec_seed": codec_seed,
                           "attack_tag": attack_tag, "protocol": protocol.name},
                )))
        index = audio_index(root, lambda n: bool(AUDIO_DIR.match(n)))
        return rows_to_listing(rows, index, count_found(rows, index))


LAYOUT = ASVspoof5Layout()
