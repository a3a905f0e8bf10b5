"""Throughput of `manifest` and `prepare` on the dev corpus with 1 and 2 worker processes, side by side.

Usage: python bench/bench_data.py [--corpus ../shared/corpus/dev] [--out bench/results_data.md] [--repeats 1]
(prefix ``OPENBLAS_NUM_THREADS=1`` to keep numpy's BLAS from starting a thread pool in every worker).

Measures wall time of ``build_manifest`` (decode + measure every file) and of ``prepare`` (resample to
16 kHz FLAC + RMS normalise to -23 dBFS, also in low-memory mode) and reports files/s, x-real-time
(audio seconds / wall seconds) and the 2-vs-1-worker speed-up. Every run writes to a fresh temporary
folder; the corpus files are read once beforehand so every run sees a warm page cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from audios.manifest import build_manifest
from audios.prepare import PrepareConfig, prepare

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "dev"


def warm_cache(root: Path) -> int:
    """Read every file once so the timed runs do not depend on which ran first."""
    n = 0
    for p in root.rglob("*"):
        if p.is_file():
            n += len(p.read_bytes())
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--out", type=Path, default=None, help="Also write the markdown table here.")
    ap.add_argument("--repeats", type=int, default=1, help="Runs per configuration; the median is reported.")
    args = ap.parse_args()
    if not (args.corpus / "manifest.csv").exists():
        print(f"dev corpus not found at {args.corpus}; nothing to measure", file=sys.stderr)
        return 0
    warm_cache(args.corpus)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        table = build_manifest(args.corpus).table  # the input of the prepare runs (untimed)
        audio_s = float(table["duration_s"].sum())
        rms = PrepareConfig(sample_rate=16000, format="flac", normalize="rms", rms_target_dbfs=-23.0)
        low = PrepareConfig(sample_rate=16000, format="flac", normalize="rms", rms_target_dbfs=-23.0, low_memory=True)

        def manifest_run(w: int) -> int:
            return len(build_manifest(args.corpus, workers=w).table)

        def prepare_run(w: int, cfg: PrepareConfig) -> int:
            return len(prepare(table, tempfile.mkdtemp(dir=tmp), cfg, workers=w).table)  # fresh: nothing resumed

        cases = [
            ("manifest", 1, lambda: manifest_run(1)), ("manifest", 2, lambda: manifest_run(2)),
            ("prepare (16 kHz flac + rms)", 1, lambda: prepare_run(1, rms)),
            ("prepare (16 kHz flac + rms)", 2, lambda: prepare_run(2, rms)),
            ("prepare --low-memory", 1, lambda: prepare_run(1, low)),
            ("prepare --low-memory", 2, lambda: prepare_run(2, low)),
        ]
        # Cases take turns within each repeat, so a busy neighbour on the shared cores slows all alike.
        walls: dict[int, list[float]] = {i: [] for i in range(len(cases))}
        counts: dict[int, int] = {}
        for _ in range(args.repeats):
            for i, (_, _, fn) in enumerate(cases):
                t0 = time.perf_counter()
                counts[i] = fn()
                walls[i].append(time.perf_counter() - t0)
    rows = [(name, w, counts[i], audio_s, statistics.median(walls[i])) for i, (name, w, _) in enumerate(cases)]
    load_after = os.getloadavg()[0]

    base = {name: wall for name, w, _, _, wall in rows if w == 1}
    lines = [
        f"Corpus: {args.corpus.name} ({len(table)} files, {audio_s / 3600:.2f} h); {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
        f"median of {args.repeats} interleaved run(s); load average {load_before:.1f} before, {load_after:.1f} after.",
        "",
        "| step | workers | files | wall (s) | files/s | x real time | speed-up vs 1 worker |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, workers, n, secs, wall in rows:
        lines.append(f"| {name} | {workers} | {n} | {wall:.2f} | {n / wall:.1f} | {secs / wall:.0f} | "
                     f"{base[name] / wall:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
