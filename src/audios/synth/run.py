"""The ``synth`` driver: one spoof per (bona fide recording, method), parallel, resumable, level-matched.

For every bona fide row (or a seeded sample of ``limit`` of them) and every requested method, the
recording is decoded at its own rate, synthesised, scaled to the source's level (whole-file RMS for
copy-synthesis, active-speech level for text-to-speech; lowered only if the peak would pass
``peak_limit``, which ``level_diff_db`` then records) and written at the source's rate as
``OUT/<generator>/<source path>.flac``. Its manifest row keeps the parent's speaker, utterance, subset
and other descriptive columns, adds ``parent_id`` and re-measured metadata.

Outputs: ``OUT/manifest.csv`` (the spoofs, root = OUT), ``OUT/paired.csv`` (the parents that got at least
one spoof, with their own root, plus the spoofs; each parent's ``parent_id`` is its own id so that a
split keeps every pair together), ``OUT/skipped.csv`` (path, generator, reason) and the run's config.

Resumption follows ``audios.prepare``: after a spoof's file is written (temporary file + rename), a
record ``OUT/.done/<key>.json`` holding its row is written atomically. A job is done when its record
exists, was made with the same settings and its file exists; a rerun skips it and reuses the row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from audios.audio import AudioConfig, amplitude_to_dbfs, audio_info, load_audio, write_audio_atomic
from audios.config import build_config, config_to_dict
from audios.errors import AudioError, ConfigError, ManifestError, NonFiniteError, SilentAudioError
from audios.manifest.io import write_table
from audios.manifest.metadata import METADATA_COLUMNS, measure_recording
from audios.parallel import map_ordered
from audios.runs import write_run_info, write_text_atomic
from audios.synth.base import LEVEL_MODES, SynthContext, Synthesizer, get_method, item_seed

log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("flac", "wav")
DONE_DIR = ".done"
# Output RMS below -100 dBFS is under 16-bit PCM's noise floor: scaling it up would only amplify rounding noise.
_SILENT_RMS = 1e-5
# 10 ms frames; "active" frames are those within 40 dB of the loudest (a simple gate in the spirit of
# ITU-T P.56's active speech level).
_FRAME_S = 0.010
_ACTIVE_RANGE_DB = 40.0
# Columns a spoof does not inherit from its parent: its own identity, file and measurements.
_NOT_CARRIED = {"id", "path", "label", "generator", "root", "parent_id", "split", "level_diff_db", *METADATA_COLUMNS}


@dataclass(frozen=True)
class SynthConfig:
    """Run-level settings of ``synth``; each method's own settings live in its ``Config``."""

    methods: tuple[str, ...] = ("world",)
    format: str = "flac"
    seed: int = 0
    # Whole-file synthesis holds the recording (and a model's activations) in memory: longer ones are skipped.
    max_duration_s: float = 600.0
    peak_limit: float = 0.99
    # Manifest columns read (first non-empty wins) as the transcript by text-to-speech methods.
    text_columns: tuple[str, ...] = ("text", "transcript")

    def __post_init__(self) -> None:
        if not self.methods:
            raise ConfigError("methods must name at least one synthesis method")
        for name in self.methods:
            get_method(name)
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods {list(self.methods)} repeats a method")
        if self.format not in OUTPUT_FORMATS:
            raise ConfigError(f"format={self.format!r} must be one of {OUTPUT_FORMATS}")
        if not 0 < self.max_duration_s <= 4 * 3600:
            raise ConfigError(f"max_duration_s={self.max_duration_s} must be in (0, 14400]")
        if not 0 < self.peak_limit <= 1:
            raise ConfigError(f"peak_limit={self.peak_limit} must be in (0, 1]")


def method_configs(methods: tuple[str, ...], settings: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Each method's checked ``Config`` from nested settings (``{"world": {"f0_scale": 1.2}}``)."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(methods))
    if unknown:
        raise ConfigError(f"settings given for method(s) {unknown} that are not requested ({list(methods)})")
    return {name: build_config(get_method(name).config_cls, settings.get(name) or {}) for name in methods}


def signal_level(x: np.ndarray, sample_rate: int, mode: str) -> float:
    """Linear RMS of ``x``: over the whole signal (``rms``) or over its active frames (``active``)."""
    if mode not in LEVEL_MODES:
        raise ConfigError(f"level mode {mode!r} must be one of {LEVEL_MODES}")
    x64 = np.asarray(x, dtype=np.float64)
    if mode == "rms" or x64.size == 0:
        return float(np.sqrt(np.mean(x64**2))) if x64.size else 0.0
    frame = max(1, int(round(_FRAME_S * sample_rate)))
    n = (x64.size // frame) * frame
    energy = np.mean(x64[:n].reshape(-1, frame) ** 2, axis=1) if n else np.array([np.mean(x64**2)])
    active = energy[energy >= energy.max() * 10 ** (-_ACTIVE_RANGE_DB / 10)]
    return float(np.sqrt(active.mean())) if active.size else 0.0


def match_level(y: np.ndarray, x: np.ndarray, sample_rate: int, mode: str = "rms",
                peak_limit: float = 0.99) -> tuple[np.ndarray, float]:
    """Scale ``y`` to ``x``'s level (by ``mode``), lowered if its peak would pass ``peak_limit``.

    Returns the scaled float32 signal and its level minus the source's in dB (0 unless peak-limited).
    Raises SilentAudioError when ``y`` is silent (nothing to scale).
    """
    target = signal_level(x, sample_rate, mode)
    level = signal_level(y, sample_rate, mode)
    if level < _SILENT_RMS or not np.isfinite(level):
        raise SilentAudioError("<synthesis output>", f"output is silent ({amplitude_to_dbfs(level):.1f} dBFS)")
    gain = target / level
    peak = float(np.max(np.abs(y))) * gain
    diff_db = 0.0
    if peak > peak_limit:
        diff_db = float(20 * np.log10(peak_limit / peak))
        gain *= peak_limit / peak
    return (y * gain).astype(np.float32), round(diff_db, 3)


@dataclass(frozen=True)
class _Job:
    method: str
    config: Any
    generator: str  # run-level name: folder of its outputs unless the row names its own
    fingerprint: str


@dataclass(frozen=True)
class _Item:
    id: str
    src: str
    rel_path: str
    text: str | None
    carried: tuple[tuple[str, Any], ...]


@dataclass
class SynthReport:
    """What a synth run did: the manifests, counts, skips and per-generator speed."""

    manifest_path: Path
    paired_path: Path
    table: pd.DataFrame
    n_inputs: int
    n_jobs: int
    n_resumed: int
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    # generator -> (seconds of source audio, seconds of compute) over the jobs run now (not resumed)
    timing: dict[str, tuple[float, float]] = field(default_factory=dict)
    wall_s: float = 0.0

    def summary(self) -> str:
        lines = [
            f"{self.n_inputs} bona fide recording(s) x {len(self.timing) or '?'} method(s): {len(self.table)} spoof(s) "
            f"in {self.manifest_path}",
            f"pairs (parents + spoofs) in {self.paired_path}",
            f"{self.n_resumed} of {self.n_jobs} job(s) already done (resumed), {len(self.skipped)} skipped "
            f"(see skipped.csv), {self.wall_s:.1f} s",
        ]
        for gen, (audio_s, compute_s) in self.timing.items():
            if compute_s > 0:
                lines.append(f"  {gen}: {audio_s:.1f} s of audio in {compute_s:.1f} s = {audio_s / compute_s:.1f}x real time")
        return "\n".join(lines)


def _fingerprint(method: str, config: Any, run: SynthConfig) -> str:
    data = {"method": method, "config": config_to_dict(config), "format": run.format, "seed": run.seed,
            "peak_limit": run.peak_limit}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _record_path(out_dir: Path, item_id: str, generator: str) -> Path:
    key = hashlib.sha256(f"{item_id}\x00{generator}".encode()).hexdigest()[:24]
    return out_dir / DONE_DIR / f"{key}.json"


def _load_done(out_dir: Path, item: _Item, job: _Job) -> dict | None:
    """The row of a finished job, or None when it must be (re)done."""
    path = _record_path(out_dir, item.id, job.generator)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (record.get("fingerprint") != job.fingerprint or record.get("id") != item.id
            or record.get("src") != item.src or not isinstance(record.get("row"), dict)):
        return None
    row = record["row"]
    return row if (out_dir / row.get("path", "")).is_file() else None


def _row_generator(config: Any, context: SynthContext) -> str:
    per_row = getattr(config, "generator_for", None)
    return per_row(context) if per_row else config.generator()


# One synthesizer per (method, settings) and process: models load once per worker, not once per file.
_SYNTHS: dict[tuple[str, str], Synthesizer] = {}


def _synthesizer(job: _Job, torch_threads: int | None) -> Synthesizer:
    key = (job.method, job.fingerprint)
    if key not in _SYNTHS:
        _SYNTHS[key] = get_method(job.method).build(job.config)
    if torch_threads and "torch" in sys.modules:
        import torch

        torch.set_num_threads(torch_threads)
    return _SYNTHS[key]


def _process(args: tuple[_Item, list[_Job], SynthConfig, str, int | None]
             ) -> tuple[list[tuple[str, dict]], list[tuple[str, str]], dict[str, tuple[float, float]]]:
    """Synthesise one recording with each pending job (worker entry point).

    Returns ``(job generator, row)`` per success, ``(job generator, reason)`` per failure ("" = the
    source itself) and timings.
    """
    item, jobs, config, out_dir, threads = args
    try:
        rate = audio_info(item.src).sample_rate
        x = load_audio(item.src, AudioConfig(sample_rate=rate, max_duration_s=config.max_duration_s))
    except AudioError as exc:
        return [], [("", f"{exc.kind}: {exc.reason}")], {}
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        return [], [("", f"unreadable: {type(exc).__name__}: {exc}")], {}
    rows: list[tuple[str, dict]] = []
    failures: list[tuple[str, str]] = []
    timing: dict[str, tuple[float, float]] = {}
    for job in jobs:
        t0 = time.perf_counter()
        try:
            rows.append((job.generator, _run_job(item, job, x, rate, config, Path(out_dir), threads)))
        except ConfigError:
            raise  # a model or binary that cannot load fails the run, not each file
        except AudioError as exc:
            failures.append((job.generator, f"{exc.kind}: {exc.reason}"))
        except Exception as exc:  # a method failing on one recording must not stop the batch
            failures.append((job.generator, f"{type(exc).__name__}: {exc}"))
        else:
            timing[job.generator] = (x.size / rate, time.perf_counter() - t0)
    return rows, failures, timing


def _run_job(item: _Item, job: _Job, x: np.ndarray, rate: int, config: SynthConfig, out_dir: Path,
             threads: int | None) -> dict:
    synth = _synthesizer(job, threads)
    context = SynthContext(item.id, item_seed(config.seed, item.id), item.text)
    y = np.asarray(synth(x, rate, context), dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise AudioError(item.src, f"{job.generator} returned {y.shape} samples, not a non-empty mono signal")
    if not np.isfinite(y).all():
        raise NonFiniteError(item.src, f"{job.generator} produced NaN or infinite samples")
    try:
        y, diff_db = match_level(y, x, rate, synth.level_mode, config.peak_limit)
    except SilentAudioError as exc:
        raise SilentAudioError(item.src, f"{job.generator}: {exc.reason}") from None
    generator = _row_generator(job.config, context)
    rel = f"{generator}/{Path(item.rel_path).with_suffix('.' + config.format).as_posix()}"
    out = write_audio_atomic(out_dir / rel, y, rate, config.format)
    row = dict(item.carried) | {
        "id": f"{item.id}__{generator}", "path": rel, "label": "spoof", "generator": generator,
        "parent_id": item.id, "level_diff_db": diff_db, **measure_recording(out),
    }
    record = {"id": item.id, "src": item.src, "generator": job.generator, "fingerprint": job.fingerprint, "row": row}
    write_text_atomic(_record_path(out_dir, item.id, job.generator), json.dumps(record))
    return row


def _carried(row: pd.Series) -> tuple[tuple[str, Any], ...]:
    out = []
    for k, v in row.items():
        if k in _NOT_CARRIED:
            continue
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out.append((str(k), v))
    return tuple(out)


def _text_of(row: pd.Series, columns: tuple[str, ...]) -> str | None:
    for col in columns:
        value = row.get(col)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def select_bonafide(manifest: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """The bona fide rows, or a seeded random ``limit`` of them kept in manifest order."""
    bona = manifest[manifest["label"] == "bonafide"]
    if limit is not None:
        if limit <= 0:
            raise ConfigError(f"limit={limit} must be positive")
        if limit < len(bona):
            pick = np.sort(np.random.default_rng(seed).choice(len(bona), size=limit, replace=False))
            bona = bona.iloc[pick]
    return bona


def _remove_stale_parts(out_dir: Path) -> int:
    n = 0
    for p in out_dir.rglob(".*.part"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def synthesize_manifest(
    manifest: pd.DataFrame,
    out_dir: str | Path,
    config: SynthConfig = SynthConfig(),
    settings: dict[str, Any] | None = None,
    workers: int = 1,
    limit: int | None = None,
    progress: bool = False,
) -> SynthReport:
    """Make one spoof per bona fide row of ``manifest`` (from ``read_manifest``) and method; resumable.

    ``settings`` maps a method name to its ``Config`` (default settings when absent). See the module
    docstring for the files written under ``out_dir``.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    for col in ("id", "path", "label", "root"):
        if col not in manifest.columns:
            raise ManifestError(f"manifest lacks column {col!r} (read it with audios.manifest.read_manifest)")
    dup = manifest["id"][manifest["id"].duplicated()]
    if len(dup):
        raise ManifestError(f"manifest ids must be unique; {dup.iloc[0]!r} repeats")
    rows_in = select_bonafide(manifest, limit, config.seed)
    if rows_in.empty:
        raise ManifestError("manifest has no bona fide rows to synthesise from")
    if out_dir in {Path(r).resolve() for r in rows_in["root"]}:
        raise ConfigError(f"out_dir {out_dir} is the corpus root: its manifest.csv would be overwritten; "
                          "choose another folder")

    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(config.methods))
    if unknown:
        raise ConfigError(f"settings given for method(s) {unknown} that are not requested ({list(config.methods)})")
    jobs: list[_Job] = []
    for name in config.methods:
        method = get_method(name)
        cfg = settings.get(name) or method.config_cls()
        if not isinstance(cfg, method.config_cls):
            raise ConfigError(f"settings[{name!r}] must be a {method.config_cls.__name__}, not {type(cfg).__name__}")
        if method.check is not None:
            method.check(cfg)
        jobs.append(_Job(name, cfg, cfg.generator(), _fingerprint(name, cfg, config)))
    gens = [j.generator for j in jobs]
    if len(set(gens)) != len(gens):
        raise ConfigError(f"two methods would write the same generator: {gens}")

    out_dir.mkdir(parents=True, exist_ok=True)
    stale = _remove_stale_parts(out_dir)
    if stale:
        log.info("removed %d temporary file(s) left by an interrupted run", stale)
    write_run_info(out_dir, "synth", {
        "synth": config_to_dict(config), "methods": {j.method: config_to_dict(j.config) for j in jobs},
        "workers": workers, "limit": limit, "n_inputs": len(rows_in)}, seed=config.seed)

    items: list[_Item] = []
    skipped: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    for _, row in rows_in.iterrows():
        target = Path(row["path"]).with_suffix("").as_posix()
        if target in seen:
            skipped.append((row["path"], "", f"output name would collide with {seen[target]}'s"))
            continue
        seen[target] = row["path"]
        src = str(Path(row["root"]).resolve() / row["path"])
        items.append(_Item(str(row["id"]), src, str(row["path"]), _text_of(row, config.text_columns), _carried(row)))

    done: dict[tuple[str, str], dict] = {}
    tasks = []
    for item in items:
        pending = []
        for job in jobs:
            row = _load_done(out_dir, item, job)
            if row is None:
                pending.append(job)
            else:
                done[(item.id, job.generator)] = row
        if pending:
            tasks.append((item, pending))
    n_resumed = len(done)
    log.info("synth: %d recording(s) x %d method(s), %d job(s) already done", len(items), len(jobs), n_resumed)
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    outcomes = map_ordered(_process, [(it, pj, config, str(out_dir), threads) for it, pj in tasks],
                           workers=workers, desc="synth", progress=progress)
    timing: dict[str, tuple[float, float]] = {}
    for (item, _), (rows, failures, times) in zip(tasks, outcomes, strict=True):
        for gen, row in rows:
            done[(item.id, gen)] = row
        for gen, reason in failures:
            skipped.append((item.rel_path, gen, reason))
            log.warning("skipped %s%s: %s", item.src, f" ({gen})" if gen else "", reason)
        for gen, (a, c) in times.items():
            prev = timing.get(gen, (0.0, 0.0))
            timing[gen] = (prev[0] + a, prev[1] + c)

    spoofs = [done[(item.id, job.generator)] | {"root": str(out_dir)}
              for item in items for job in jobs if (item.id, job.generator) in done]
    table = _order_columns(pd.DataFrame(spoofs))
    manifest_path = write_table(table, out_dir / "manifest.csv")
    parent_ids = set(table["parent_id"]) if len(table) else set()
    parents = rows_in[rows_in["id"].isin(parent_ids)].copy()
    parents["parent_id"] = parents["id"]
    paired = pd.concat([parents, table], ignore_index=True) if len(table) else parents
    paired_path = write_table(_order_columns(paired), out_dir / "paired.csv")
    order = {p: i for i, p in enumerate(rows_in["path"])}
    skipped.sort(key=lambda s: order.get(s[0], len(order)))
    write_table(pd.DataFrame(skipped, columns=["path", "generator", "reason"]), out_dir / "skipped.csv")
    return SynthReport(manifest_path, paired_path, table, len(rows_in), len(items) * len(jobs), n_resumed,
                       skipped, timing, time.perf_counter() - t0)


def _order_columns(table: pd.DataFrame) -> pd.DataFrame:
    lead = ["id", "path", "label", "generator", "speaker", "utterance", "subset", "parent_id"]
    if table.empty:
        return pd.DataFrame(columns=[*lead, "level_diff_db", *METADATA_COLUMNS, "root"])
    known = [c for c in (*lead, "level_diff_db", *METADATA_COLUMNS) if c in table.columns]
    extra = [c for c in table.columns if c not in known and c != "root"]
    return table[known + extra + (["root"] if "root" in table.columns else [])]
