"""Build a manifest: read a corpus layout, measure every recording, skip and report bad files."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from audios.errors import AudioError
from audios.manifest.base import Entry, default_id
from audios.manifest.layouts import detect_layout, get_layout
from audios.manifest.metadata import METADATA_COLUMNS, MetadataConfig, measure_recording
from audios.parallel import map_ordered

log = logging.getLogger(__name__)

COLUMN_ORDER = ("id", "path", "label", "generator", "speaker", "utterance", "subset", *METADATA_COLUMNS)


@dataclass
class ManifestResult:
    """The manifest table plus what was left out and why."""

    table: pd.DataFrame
    layout: str
    reason: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        t = self.table
        lines = [f"layout: {self.layout} ({self.reason})"]
        if len(t):
            counts = t["label"].value_counts().to_dict()
            hours = t.groupby("label")["duration_s"].sum() / 3600
            lines.append(
                f"{len(t)} recordings: "
                + ", ".join(f"{k} {counts[k]} ({hours[k]:.2f} h)" for k in sorted(counts))
                + f", {t['generator'].nunique()} generators, {t['speaker'].nunique()} speakers"
            )
        else:
            lines.append("0 recordings")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable file(s), e.g. {self.skipped[0][0]}: {self.skipped[0][1]}")
        if self.missing:
            lines.append(f"{len(self.missing)} protocol row(s) without audio left out, e.g. {self.missing[0][0]}")
        lines.extend(self.notes)
        return "\n".join(lines)


def _measure(args: tuple[str, MetadataConfig]) -> dict | tuple[str, str]:
    path, config = args
    try:
        return measure_recording(path, config)
    except AudioError as exc:
        return (exc.kind, exc.reason)


def build_manifest(
    root: str | Path,
    layout: str = "auto",
    workers: int = 1,
    progress: bool = False,
    config: MetadataConfig = MetadataConfig(),
    limit: int | None = None,
) -> ManifestResult:
    """Read ``root`` with ``layout`` (or detect it) and measure every recording.

    Files that cannot be decoded are left out and listed in ``skipped`` as ``(path, reason)``.
    """
    root = Path(root).resolve()
    if layout == "auto":
        chosen, reason = detect_layout(root)
    else:
        chosen, reason = get_layout(layout), "chosen by --layout"
    listing = chosen.list_entries(root)
    # ROOT may be the table itself (--layout csv): paths in it are relative to its folder.
    base = root.parent if root.is_file() else root
    entries: list[Entry] = listing.entries[:limit] if limit else listing.entries
    log.info("layout %s: %d entries under %s", chosen.name, len(entries), root)
    results = map_ordered(
        _measure, [(str(base / e.path), config) for e in entries], workers=workers, desc="manifest",
        progress=progress,
    )
    rows = []
    skipped = []
    for entry, meta in zip(entries, results, strict=True):
        if isinstance(meta, tuple):
            skipped.append((entry.path, f"{meta[0]}: {meta[1]}"))
            continue
        row = {
            "id": entry.id or default_id(entry.path),
            "path": entry.path,
            "label": entry.label,
            "generator": entry.generator or ("human" if entry.label == "bonafide" else "unknown"),
            "speaker": entry.speaker or "unknown",
            "utterance": entry.utterance or default_id(entry.path),
            "subset": entry.subset,
            **meta,
            **{k: v for k, v in entry.extra.items() if k not in COLUMN_ORDER},
        }
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else list(COLUMN_ORDER))
    if rows:
        extra_cols = [c for c in table.columns if c not in COLUMN_ORDER]
        table = table[list(COLUMN_ORDER) + extra_cols]
    table["root"] = str(base)
    return ManifestResult(table, chosen.name, reason, skipped, listing.missing, listing.notes)
