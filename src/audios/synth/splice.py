"""Partly spoofed recordings: a synthetic segment spliced into its bona fide parent, true boundaries recorded.

For each (parent, spoof) pair of a ``synth`` run (``paired.csv``: spoofs carry ``parent_id``), a stretch of
``min_s``..``max_s`` seconds of the parent is replaced by the spoof's audio. Copy-synthesis keeps the parent's
timing (same length to within 5 %), so the same time span of the spoof is used and the words line up; for
other spoofs (text-to-speech) a random span of the spoof is used. Both joins are linear crossfades of
``crossfade_s`` centred on the boundary, so no click marks the splice. The spliced span never touches the
recording's edges (it starts and ends at least ``margin_s`` inside), so both boundaries are measurable.

Outputs: ``OUT/spliced/<generator>/<parent path>.flac`` and ``OUT/spliced.csv``, a manifest (label ``spoof``,
the spoof's generator, the parent's speaker/utterance, ``parent_id``) with ``spoof_regions``: JSON
``[[start_s, end_s]]``. With ``include_bonafide`` the parents themselves are listed too (``spoof_regions``
``[]``, their own root; nothing copied), so false boundaries on untouched speech are counted as well.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from audios.audio import AudioConfig, audio_info, load_audio, write_audio_atomic
from audios.errors import AudioError, ConfigError, ManifestError
from audios.manifest.io import audio_paths, write_table
from audios.synth.base import item_seed

log = logging.getLogger(__name__)

#: Copy-synthesis output whose length is within this fraction of its parent's is taken as time-aligned.
ALIGNED_LENGTH_TOLERANCE = 0.05
SPLICED_DIR = "spliced"
SPLICED_MANIFEST = "spliced.csv"
_CARRIED = ("speaker", "utterance", "subset", "split")


@dataclass(frozen=True)
class SpliceConfig:
    """Length range of the synthetic stretch, crossfade at each join, distance kept from the edges, seed."""

    min_s: float = 0.8
    max_s: float = 1.6
    crossfade_s: float = 0.01
    margin_s: float = 0.5
    seed: int = 0
    format: str = "flac"
    include_bonafide: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ConfigError(f"SpliceConfig: need 0 < min_s <= max_s, got min_s={self.min_s}, max_s={self.max_s}")
        if not 0 <= self.crossfade_s < self.min_s / 2:
            raise ConfigError(f"SpliceConfig.crossfade_s={self.crossfade_s} must be in [0, min_s / 2)")
        if self.margin_s < self.crossfade_s:
            raise ConfigError(f"SpliceConfig.margin_s={self.margin_s} must be at least crossfade_s")
        if self.format not in ("flac", "wav"):
            raise ConfigError(f"SpliceConfig.format={self.format!r} must be 'flac' or 'wav'")


def splice_signal(parent: np.ndarray, spoof: np.ndarray, start: int, end: int, src_start: int,
                  crossfade: int) -> np.ndarray:
    """``parent`` with samples ``[start, end)`` taken from ``spoof[src_start:]``, crossfaded over ``crossfade``.

    Each crossfade is centred on its boundary; the output has the parent's length.
    """
    n = end - start
    if not (0 <= start < end <= parent.size and 0 <= src_start and src_start + n <= spoof.size):
        raise ConfigError(f"splice [{start}, {end}) from {src_start} does not fit signals of {parent.size} and "
                          f"{spoof.size} samples")
    half = crossfade // 2
    # The spoof stream extended by `half` samples each side where available, so the fade has material.
    lo, hi = max(0, start - half), min(parent.size, end + half)
    src_lo = src_start - (start - lo)
    src_hi = src_start + n + (hi - end)
    if src_lo < 0 or src_hi > spoof.size:  # not enough spoof around the span: hard cut at the fade edges
        lo, hi, src_lo, src_hi = start, end, src_start, src_start + n
    i = np.arange(lo, hi, dtype=np.float64) + 0.5  # sample centres
    if half > 0:
        # Rises from 0 to 1 over [start - half, start + half], falls back over [end - half, end + half].
        weight = np.clip((i - (start - half)) / (2 * half), 0, 1) * np.clip(((end + half) - i) / (2 * half), 0, 1)
    else:
        weight = ((i >= start) & (i < end)).astype(np.float64)
    out = parent.astype(np.float64).copy()
    out[lo:hi] = (1 - weight) * out[lo:hi] + weight * spoof[src_lo:src_hi]
    return out.astype(np.float32)


@dataclass(frozen=True)
class SpliceReport:
    manifest_path: Path
    n_spliced: int
    n_bonafide: int
    skipped: list[tuple[str, str]]

    def summary(self) -> str:
        return (f"spliced {self.n_spliced} partly spoofed recordings ({self.n_bonafide} bona fide parents listed) "
                f"into {self.manifest_path}" + (f"; skipped {len(self.skipped)}" if self.skipped else ""))


def _choose_span(n_parent: int, sr: int, n_spoof: int, config: SpliceConfig, rng: np.random.Generator
                 ) -> tuple[int, int, int]:
    margin = int(round(config.margin_s * sr))
    room = n_parent - 2 * margin
    lo_n, hi_n = int(round(config.min_s * sr)), int(round(config.max_s * sr))
    if room < lo_n:
        raise ConfigError(f"{n_parent / sr:.2f} s is too short for a {config.min_s:g} s splice with "
                          f"{config.margin_s:g} s margins")
    length = int(rng.integers(lo_n, min(hi_n, room) + 1))
    length = min(length, n_spoof)
    start = int(rng.integers(margin, n_parent - margin - length + 1))
    aligned = abs(n_spoof - n_parent) <= ALIGNED_LENGTH_TOLERANCE * n_parent and start + length <= n_spoof
    src = start if aligned else int(rng.integers(0, n_spoof - length + 1))
    return start, start + length, src


def splice_pairs(paired: pd.DataFrame, out_dir: str | Path, config: SpliceConfig = SpliceConfig()) -> SpliceReport:
    """Build one spliced recording per spoof of ``paired`` (a synth run's ``paired.csv``); see the module doc."""
    out_dir = Path(out_dir)
    for column in ("id", "path", "root", "label", "parent_id"):
        if column not in paired.columns:
            raise ManifestError(f"paired table: missing column {column!r} (give the paired.csv of `audios synth`)")
    paired = paired.assign(_abs=[str(p) for p in audio_paths(paired)])
    by_id = {str(r["id"]): r for _, r in paired.iterrows()}
    spoofs = paired[paired["label"].astype(str).str.lower() == "spoof"]
    rows, skipped, parents_used = [], [], []
    for _, spoof in spoofs.iterrows():
        parent = by_id.get(str(spoof["parent_id"]))
        if parent is None:
            skipped.append((spoof["_abs"], f"parent {spoof['parent_id']!r} is not in the table"))
            continue
        try:
            sr = audio_info(parent["_abs"]).sample_rate
            audio_config = AudioConfig(sample_rate=sr, max_duration_s=600.0)
            x = load_audio(parent["_abs"], audio_config)
            y = load_audio(spoof["_abs"], audio_config)
            rng = np.random.default_rng(item_seed(config.seed, str(spoof["id"])))
            start, end, src = _choose_span(x.size, sr, y.size, config, rng)
            z = splice_signal(x, y, start, end, src, int(round(config.crossfade_s * sr)))
        except (AudioError, ConfigError) as exc:
            skipped.append((spoof["_abs"], str(exc)))
            continue
        generator = str(spoof.get("generator", "spoof"))
        rel = Path(SPLICED_DIR) / generator / Path(str(parent["path"])).with_suffix(f".{config.format}")
        write_audio_atomic(out_dir / rel, z, sr)
        rows.append({"id": f"splice/{generator}/{parent['id']}", "path": rel.as_posix(), "label": "spoof",
                     "generator": generator, **{c: parent[c] for c in _CARRIED if c in paired.columns},
                     "parent_id": str(parent["id"]), "root": str(out_dir.resolve()),
                     "spoof_regions": json.dumps([[round(start / sr, 4), round(end / sr, 4)]]),
                     "duration_s": round(x.size / sr, 4), "sample_rate": sr})
        parents_used.append(str(parent["id"]))
    n_bona = 0
    if config.include_bonafide:
        for pid in dict.fromkeys(parents_used):
            p = by_id[pid]
            rows.append({"id": pid, "path": str(p["path"]), "label": "bonafide", "generator": "human",
                         **{c: p[c] for c in _CARRIED if c in paired.columns}, "parent_id": pid,
                         "root": str(p["root"]), "spoof_regions": "[]"})
            n_bona += 1
    for path, reason in skipped:
        log.warning("splice: skipped %s (%s)", path, reason)
    if skipped:
        write_table(pd.DataFrame(skipped, columns=["path", "reason"]), out_dir / "spliced_skipped.csv")
    manifest_path = write_table(pd.DataFrame(rows), out_dir / SPLICED_MANIFEST)
    return SpliceReport(manifest_path=manifest_path, n_spliced=len(rows) - n_bona, n_bonafide=n_bona,
                        skipped=skipped)
