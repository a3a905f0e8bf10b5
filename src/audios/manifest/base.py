"""What a corpus layout produces: entries (path, label, and what the corpus says about them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LABELS = ("bonafide", "spoof")


@dataclass(frozen=True)
class Entry:
    """One recording as a corpus describes it; ``path`` is relative to the corpus root."""

    path: str
    label: str
    generator: str = ""
    speaker: str = "unknown"
    utterance: str = ""
    subset: str = ""
    id: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"{self.path}: label {self.label!r} is not one of {LABELS}")


@dataclass
class Listing:
    """A layout's reading of a corpus: its entries, rows whose audio is absent, and notes for the user."""

    entries: list[Entry]
    missing: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Layout(Protocol):
    """A corpus layout: ``detect`` says why a folder matches (or None); ``list_entries`` reads it."""

    name: str
    description: str

    def detect(self, root: Path) -> str | None: ...

    def list_entries(self, root: Path) -> Listing: ...


def normalise_label(value: str) -> str | None:
    """Map the many spellings of the two classes to ``bonafide``/``spoof``; None when unknown."""
    v = str(value).strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if v in {"bonafide", "bona", "real", "human", "genuine", "bonafidespeech", "1", "true"}:
        return "bonafide"
    if v in {"spoof", "fake", "ai", "synthetic", "spoofed", "deepfake", "0", "false", "generated"}:
        return "spoof"
    return None


def default_id(rel_path: str) -> str:
    """A stable id from a relative path: the path without extension."""
    p = Path(rel_path)
    return str(p.with_suffix("")).replace("\\", "/")
