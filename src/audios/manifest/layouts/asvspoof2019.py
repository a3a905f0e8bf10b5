"""``asvspoof2019``: ASVspoof 2019 LA and PA, read from the countermeasure (CM) protocols.

CM protocol lines (README.LA.txt / README.PA.txt of the release) have five space-separated fields::

    SPEAKER_ID  FILE_ID  ENV_ID  ATTACK_ID  KEY
    LA_0079     LA_T_1138215  -  -    bonafide     (LA: third field unused)
    PA_0079     PA_T_0000001  aaa  AA  spoof       (PA: acoustic environment, replay configuration)

``ATTACK_ID`` is ``-`` for bona fide speech. Protocols are named
``ASVspoof2019.{LA,PA}.cm.{train.trn,dev.trl,eval.trl}.txt`` and the audio of a subset lies in
``ASVspoof2019_{LA,PA}_{train,dev,eval}/flac/<FILE_ID>.flac``.

The helpers here (depth-limited search, whitespace protocols, an audio index by file id) are shared by
the other protocol layouts (``asvspoof2021``, ``asvspoof5``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from audios.audio import is_audio_path
from audios.errors import LayoutError
from audios.manifest.base import Entry, Listing

KEYS = ("bonafide", "spoof")


def walk_limited(root: Path, max_depth: int) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk`` over ``root`` (sorted, hidden folders skipped) down to ``max_depth`` levels below it."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < max_depth else []
        yield here, dirnames, sorted(filenames)


def find_files(root: Path, matches: Callable[[str], bool], max_depth: int = 4) -> list[Path]:
    """Files under ``root`` (at most ``max_depth`` folders down) whose name satisfies ``matches``."""
    return [d / f for d, _, files in walk_limited(root, max_depth) for f in files if matches(f)]


def find_dirs(root: Path, matches: Callable[[str], bool], max_depth: int = 3) -> list[Path]:
    """Folders under ``root`` (at most ``max_depth`` down, not below a match) whose name satisfies ``matches``."""
    found = []
    for d, dirnames, _ in walk_limited(root, max_depth - 1):
        hits = [n for n in dirnames if matches(n)]
        found.extend(d / n for n in hits)
        dirnames[:] = [n for n in dirnames if n not in hits]
    return found


def audio_index(root: Path, corpus_dirs: Callable[[str], bool], max_depth: int = 4) -> dict[str, str]:
    """Map file id (name without extension) to its path relative to ``root``.

    Only audio inside folders whose name satisfies ``corpus_dirs`` is indexed (so another corpus stored
    beside this one cannot lend it files); when no such folder exists, every audio file under ``root``.
    The first file of an id in sorted order wins.
    """
    bases = find_dirs(root, corpus_dirs, max_depth) or [root]
    index: dict[str, str] = {}
    for base in bases:
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if f.startswith(".") or not is_audio_path(f):
                    continue
                stem = f.rsplit(".", 1)[0]
                if stem not in index:
                    index[stem] = (Path(dirpath) / f).relative_to(root).as_posix()
    return index


def read_fields(path: Path, min_fields: int) -> list[list[str]]:
    """The whitespace-separated fields of each non-empty line; a short line is a LayoutError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LayoutError(f"{path}: cannot read protocol ({exc})") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < min_fields:
            raise LayoutError(f"{path}:{number}: expected at least {min_fields} fields, got {len(fields)}: {line!r}")
        rows.append(fields)
    return rows


def first_fields(path: Path) -> list[str]:
    """The fields of the first non-empty line (for detection); [] when unreadable or empty."""
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.split():
                    return line.split()
    except (OSError, UnicodeDecodeError):
        pass
    return []


def rows_to_listing(
    rows: list[tuple[str, Entry]], index: dict[str, str], per_source: dict[str, tuple[int, int]]
) -> Listing:
    """Entries whose file id is in ``index``; the rest go to ``missing``, with a note on how many."""
    entries, missing, seen = [], [], set()
    for file_id, entry in rows:
        if file_id in seen:
            continue
        seen.add(file_id)
        rel = index.get(file_id)
        if rel is None:
            missing.append((file_id, f"listed in {entry.extra.get('protocol', 'the protocol')} but no audio file "
                                     f"named {file_id}.* was found"))
            continue
        entries.append(replace(entry, path=rel))
    notes = [f"{name}: {total - found} of {total} row(s) have no audio (partial download?) and were left out"
             for name, (found, total) in per_source.items() if found < total]
    return Listing(entries, missing, notes)


def count_found(rows: list[tuple[str, Entry]], index: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Per protocol file: (rows with audio, rows)."""
    out: dict[str, tuple[int, int]] = {}
    for file_id, entry in rows:
        name = entry.extra.get("protocol", "")
        found, total = out.get(name, (0, 0))
        out[name] = (found + (file_id in index), total + 1)
    return out


PROTOCOL = re.compile(r"^ASVspoof2019\.(LA|PA)\.cm\.(train|dev|eval)\.(trn|trl)\.txt$")
AUDIO_DIR = re.compile(r"^ASVspoof2019_(LA|PA)_(train|dev|eval)$")


class ASVspoof2019Layout:
    name = "asvspoof2019"
    description = "ASVspoof 2019 LA/PA: ASVspoof2019.{LA,PA}.cm.*.txt protocols and ASVspoof2019_*_*/flac audio"

    def protocols(self, root: Path) -> list[Path]:
        return [p for p in find_files(root, lambda n: bool(PROTOCOL.match(n)), max_depth=4)
                if (f := first_fields(p)) and len(f) >= 5 and f[4] in KEYS]

    def detect(self, root: Path) -> str | None:
        found = self.protocols(root)
        if not found:
            return None
        return f"found ASVspoof 2019 CM protocol(s): {', '.join(sorted(p.name for p in found))}"

    def list_entries(self, root: Path) -> Listing:
        protocols = self.protocols(root)
        if not protocols:
            raise LayoutError(f"{root}: no ASVspoof2019.{{LA,PA}}.cm.*.txt protocol with bonafide/spoof keys found")
        rows: list[tuple[str, Entry]] = []
        for protocol in sorted(protocols):
            track, subset = PROTOCOL.match(protocol.name).group(1, 2)
            for number, (speaker, file_id, env, attack, key, *_) in enumerate(read_fields(protocol, 5), 1):
                if key not in KEYS:
                    raise LayoutError(f"{protocol}:{number}: key {key!r} is not bonafide or spoof")
                extra = {"track": track, "protocol": protocol.name}
                if track == "PA":
                    extra["environment"] = env
                rows.append((file_id, Entry(
                    path=file_id, label=key, generator="human" if key == "bonafide" else attack,
                    speaker=speaker, utterance=file_id, subset=subset, id=file_id, extra=extra,
                )))
        index = audio_index(root, lambda n: bool(AUDIO_DIR.match(n)))
        return rows_to_listing(rows, index, count_found(rows, index))


LAYOUT = ASVspoof2019Layout()
