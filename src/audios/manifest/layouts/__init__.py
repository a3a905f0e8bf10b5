"""Registry of corpus layouts. Each module defines one layout object with ``name``, ``detect`` and ``list_entries``.

``DETECTION_ORDER`` is the order ``auto`` tries them in: a user's own table first, then the most specific
(protocol files with labels), plain folders of classes last. ``detect`` returns the reason it matched, which
``auto`` reports with its choice.
"""

from __future__ import annotations

from pathlib import Path

from audios.errors import LayoutError
from audios.manifest.base import Layout
from audios.manifest.layouts import (
    asvspoof5, asvspoof2019, asvspoof2021, fakeavceleb, fakeorreal, folders, itw, plain, table,
)

LAYOUTS: dict[str, Layout] = {}


def register(layout: Layout) -> Layout:
    if layout.name in LAYOUTS:
        raise ValueError(f"layout {layout.name!r} registered twice")
    LAYOUTS[layout.name] = layout
    return layout


for _module in (table, asvspoof2019, asvspoof2021, asvspoof5, fakeorreal, itw, fakeavceleb, folders, plain):
    register(_module.LAYOUT)

# A user's own table first (it is what they asked for), then protocol files whose names only their corpus uses,
# then corpus-specific folder names, and plain class folders last (FoR's fake/real folders would match them too).
DETECTION_ORDER = ("csv", "asvspoof2019", "asvspoof2021", "asvspoof5", "for", "itw", "fakeavceleb", "folders")


def get_layout(name: str) -> Layout:
    """The layout called ``name``; an unknown name lists the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise LayoutError(f"unknown layout {name!r}; known: auto, {', '.join(sorted(LAYOUTS))}") from None


def detect_layout(root: Path) -> tuple[Layout, str]:
    """The first layout in ``DETECTION_ORDER`` that recognises ``root``, with its reason."""
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    for name in DETECTION_ORDER:
        reason = LAYOUTS[name].detect(root)
        if reason:
            return LAYOUTS[name], reason
    raise LayoutError(
        f"{root}: no known corpus layout found (tried {', '.join(DETECTION_ORDER)}); "
        "pass --layout, or use --layout csv with a table of path,label"
    )
