"""From a manifest to a feature table: decode, extract in batches (optionally in worker processes), cache.

Every result is cached on disk under ``cache_dir / <extractor>-<key>/``, where ``key`` hashes the
extractor's name, code version and config and the decoding settings, and each recording is known by
the sha256 of its decoded PCM (the manifest's ``sha256`` column, measured when absent). Results are
flushed to the cache in parts of ``part_size`` recordings through atomic renames, so a killed run loses
at most one part, and a rerun (or a run on a grown manifest) computes only what is not cached yet.

Decoding overlaps with extraction: with ``workers > 1`` each worker process decodes its batch while the
others run the extractor; with one worker and a model extractor (one that sets ``decode_ahead = True``:
ssl, resemblyzer, aasist), a helper process decodes the next batches while the main process runs the
model (``decoded_ahead``). Cheap extractors (spectral, frames) decode inline, so that one worker is one core.

Cache folder layout::

    <extractor>-<key>/extractor.json           what the key stands for
    <extractor>-<key>/parts/part-*.parquet      sha256 + feature columns (vector) or sha256 + n_frames (frames)
    <extractor>-<key>/arrays/ab/<sha256>.npy    (frames, dims) float32 matrices of frame extractors

The output Parquet holds ``id, label, generator, speaker, split`` (those the manifest has), ``sha256``
and the feature columns, or for frame extractors ``n_frames`` and ``features_path`` (relative to the
table's folder, pointing into ``<out stem>.frames/``). Its schema metadata key ``audios.extractor``
holds the extractor's description and the decoding settings as JSON.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from audios.audio import AudioConfig, load_audio
from audios.config import config_to_dict
from audios.errors import AudioError, ConfigError, ManifestError
from audios.features.base import Extractor, config_hash, describe_extractor
from audios.manifest.io import audio_paths, write_table
from audios.manifest.metadata import measure_recording
from audios.parallel import map_ordered, progress_bar

log = logging.getLogger(__name__)

METADATA_KEY = b"audios.extractor"
CARRIED_COLUMNS = ("id", "label", "generator", "speaker", "utterance", "split")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/audios/features``, else ``~/.cache/audios/features`` (the CLI's default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "audios" / "features"


@dataclass(frozen=True)
class ExtractReport:
    """What ``extract_features`` did; counts are of distinct recordings (sha256), rows of output rows."""

    out: Path
    extractor: str
    cache_dir: Path
    n_rows: int
    n_cached: int
    n_computed: int
    skipped: tuple[tuple[str, str], ...] = field(default=())
    seconds: float = 0.0

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        text = (
            f"{self.extractor}: {self.n_rows} rows -> {self.out} ({self.n_computed} recordings computed, "
            f"{self.n_cached} from cache, {self.n_skipped} skipped) in {self.seconds:.1f} s"
        )
        if self.skipped:
            text += f"; skipped files listed in {skipped_path(self.out)}"
        return text


def skipped_path(out: Path) -> Path:
    return out.with_suffix(".skipped.csv")


def frames_dir(out: Path) -> Path:
    return out.parent / f"{out.stem}.frames"


class FeatureCache:
    """Cached features of one extractor configuration, keyed by the recording's PCM sha256."""

    def __init__(self, root: Path, extractor: Extractor, audio_config: AudioConfig) -> None:
        self.extractor = extractor
        description = {"extractor": describe_extractor(extractor), "audio": config_to_dict(audio_config)}
        key = hashlib.sha256(
            (config_hash(extractor) + json.dumps(description["audio"], sort_keys=True)).encode()
        ).hexdigest()[:16]
        self.dir = Path(root) / f"{extractor.name}-{key}"
        self.parts_dir = self.dir / "parts"
        self.arrays_dir = self.dir / "arrays"
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "extractor.json"
        if not info.exists():
            _write_bytes_atomic(info, json.dumps(description, indent=2).encode())

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def known(self) -> set[str]:
        """The sha256 of every recording in the cache."""
        out: set[str] = set()
        for part in self._parts():
            try:
                out.update(pq.read_table(part, columns=["sha256"]).column("sha256").to_pylist())
            except (OSError, pa.ArrowException) as exc:
                log.warning("ignoring unreadable cache part %s (%s)", part, exc)
        return out

    def array_path(self, sha256: str) -> Path:
        return self.arrays_dir / sha256[:2] / f"{sha256}.npy"

    def write_part(self, results: list[tuple[str, np.ndarray]]) -> Path:
        """Store ``(sha256, features)`` pairs; arrays first, then the part that makes them visible."""
        shas = [s for s, _ in results]
        if self.extractor.kind == "frames":
            for sha, matrix in results:
                path = self.array_path(sha)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
                try:
                    with os.fdopen(fd, "wb") as f:
                        np.save(f, np.asarray(matrix, dtype=np.float32))
                    os.replace(tmp, path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            table = pd.DataFrame({"sha256": shas, "n_frames": [int(m.shape[0]) for _, m in results]})
        else:
            values = np.stack([np.asarray(v, dtype=np.float64) for _, v in results])
            table = pd.DataFrame(values, columns=list(self.extractor.columns))
            table.insert(0, "sha256", shas)
        path = self.parts_dir / f"part-{time.time_ns():020d}-{os.getpid()}.parquet"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=self.parts_dir)
        os.close(fd)
        try:
            table.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def read(self, shas: set[str]) -> pd.DataFrame:
        """Cached rows for ``shas``, indexed by sha256 (one row each)."""
        frames = []
        for part in self._parts():
            try:
                t = pd.read_parquet(part)
            except (OSError, pa.ArrowException) as exc:
                log.warning("ignoring unreadable cache part %s (%s)", part, exc)
                continue
            frames.append(t[t["sha256"].isin(shas)])
        if not frames:
            return pd.DataFrame(columns=["sha256"]).set_index("sha256")
        table = pd.concat(frames, ignore_index=True).drop_duplicates("sha256", keep="last")
        return table.set_index("sha256")


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _hash_one(path: Path) -> tuple[str | None, str | None]:
    """(sha256, None) or (None, reason) for one recording."""
    try:
        return measure_recording(path)["sha256"], None
    except AudioError as exc:
        return None, exc.reason


def _check_features(extractor: Extractor, values: np.ndarray) -> str | None:
    """None when ``values`` are usable, else why not."""
    if not np.isfinite(values).all():
        return "features contain NaN or infinite values"
    if extractor.kind == "vector" and values.shape != (len(extractor.columns),):
        return f"extractor returned shape {values.shape}, expected ({len(extractor.columns)},)"
    if extractor.kind == "frames" and (values.ndim != 2 or values.shape[0] == 0):
        return f"extractor returned shape {values.shape}, expected (frames > 0, dims)"
    return None


def decode_items(
    audio_config: AudioConfig, items: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[np.ndarray], list[tuple[str, str]]]:
    """Decode ``(sha256, path)`` items: the items that decoded, their signals, and ``(path, reason)`` skips."""
    keys: list[tuple[str, str]] = []
    signals: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    for sha, path in items:
        try:
            signals.append(load_audio(path, audio_config))
            keys.append((sha, path))
        except AudioError as exc:
            skipped.append((path, exc.reason))
    return keys, signals, skipped


def extract_decoded(
    extractor: Extractor, keys: list[tuple[str, str]], signals: list[np.ndarray]
) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """Extract decoded signals of ``(sha256, path)`` keys: ``(sha256, features)`` pairs and ``(path, reason)`` skips.

    If the batched call fails the batch is redone one by one to find the culprit.
    """
    done: list[tuple[str, np.ndarray]] = []
    skipped: list[tuple[str, str]] = []
    try:
        features = extractor.extract(signals) if signals else []
        pairs = list(zip(keys, features, strict=True))
    except Exception:  # noqa: BLE001 - find which file broke the batch, below
        pairs = []
        for key, x in zip(keys, signals, strict=True):
            try:
                pairs.append((key, extractor.extract([x])[0]))
            except Exception as exc:  # noqa: BLE001 - any failure on one file is recorded, the rest go on
                if isinstance(exc, AudioError):
                    reason = exc.reason
                else:
                    reason = f"extraction failed ({type(exc).__name__}: {exc})"
                skipped.append((key[1], reason))
    for (sha, path), values in pairs:
        problem = _check_features(extractor, np.asarray(values))
        if problem:
            skipped.append((path, problem))
        else:
            done.append((sha, values))
    return done, skipped


def _extract_after_decoding(
    extractor: Extractor,
    decoded: tuple[list[tuple[str, str]], list[np.ndarray], list[tuple[str, str]]],
) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """``extract_batch``'s result for a batch that ``decode_items`` already decoded."""
    keys, signals, skipped = decoded
    done, failed = extract_decoded(extractor, keys, signals)
    return done, skipped + failed


def extract_batch(
    extractor: Extractor, audio_config: AudioConfig, items: list[tuple[str, str]]
) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """Decode and extract ``(sha256, path)`` items: returns ``(sha256, features)`` pairs and ``(path, reason)`` skips.

    One bad file never sinks the batch: decoding errors are caught per file, and if the batched call
    fails the batch is redone one by one to find the culprit.
    """
    return _extract_after_decoding(extractor, decode_items(audio_config, items))


def decoded_ahead(
    audio_config: AudioConfig, batches: list[list[tuple[str, str]]], depth: int = 2
) -> Iterator[tuple[list[tuple[str, str]], list[np.ndarray], list[tuple[str, str]]]]:
    """``decode_items`` of each batch, in order, decoded in one helper process up to ``depth`` batches ahead of
    the consumer, so decoding overlaps with whatever the caller does with each batch. If the helper dies (a
    decoder crashing on a corrupt file), the rest is decoded here, as without a helper."""
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    remaining = iter(batches)
    pending: deque = deque()
    with ProcessPoolExecutor(max_workers=1) as pool:
        broken = False

        def submit() -> None:
            batch = next(remaining, None)
            if batch is not None:
                pending.append((batch, None if broken else pool.submit(decode_items, audio_config, batch)))

        for _ in range(depth):
            submit()
        while pending:
            batch, future = pending.popleft()
            result = None
            if future is not None:
                try:
                    result = future.result()
                except BrokenProcessPool:
                    log.warning("the decoding helper process died; decoding the remaining batches inline")
                    broken = True
                    pending = deque((b, None) for b, _ in pending)
            if result is None:
                result = decode_items(audio_config, batch)
            submit()
            yield result


def _batches(items: list[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class ExtractionPlan:
    """What an engine must compute for a manifest: shared by the local and the Ray engine."""

    df: pd.DataFrame  # the manifest, index reset
    paths: list[str]  # absolute audio path of each row
    shas: list[str | None]  # PCM sha256 of each row (None when it could not be measured)
    skip_reason: dict[int, str]  # row index -> why it is skipped (so far: hashing failures)
    cache: FeatureCache
    audio_config: AudioConfig
    wanted: dict[str, str]  # sha256 -> the path it is computed from (first row with that hash)
    todo: list[tuple[str, str]]  # (sha256, path) not cached yet, shortest first when durations are known
    n_cached: int


def _hash_locally(paths: list[Path], workers: int, progress: bool) -> Iterable[tuple[str | None, str | None]]:
    return map_ordered(_hash_one, paths, workers=workers, desc="hashing", progress=progress)


def plan_extraction(
    manifest: pd.DataFrame,
    extractor: Extractor,
    cache_dir: str | Path,
    audio_config: AudioConfig | None = None,
    hash_paths: Callable[[list[Path]], Iterable[tuple[str | None, str | None]]] | None = None,
) -> ExtractionPlan:
    """Check the manifest, measure missing hashes with ``hash_paths`` (``(sha256, None)`` or ``(None, reason)``
    per path, in order), open the cache and list what is not cached yet."""
    for col in ("id", "path", "label", "root"):
        if col not in manifest.columns:
            raise ManifestError(f"manifest lacks column {col!r} (read it with audios.manifest.read_manifest)")
    rate = extractor.config.sample_rate
    audio_config = audio_config or AudioConfig(sample_rate=rate)
    if audio_config.sample_rate != rate:
        raise ConfigError(
            f"audio sample_rate={audio_config.sample_rate} differs from the extractor's sample_rate={rate}"
        )

    df = manifest.reset_index(drop=True)
    paths = [str(p) for p in audio_paths(df)]
    skip_reason: dict[int, str] = {}

    shas: list[str | None] = list(df["sha256"]) if "sha256" in df.columns else [None] * len(df)
    shas = [s if isinstance(s, str) and s else None for s in shas]
    missing = [i for i, s in enumerate(shas) if s is None]
    if missing:
        log.info("measuring the PCM sha256 of %d recordings without one", len(missing))
        hash_paths = hash_paths or functools.partial(_hash_locally, workers=1, progress=False)
        hashed = hash_paths([Path(paths[i]) for i in missing])
        for i, (sha, reason) in zip(missing, hashed, strict=True):
            shas[i] = sha
            if reason is not None:
                skip_reason[i] = reason

    cache = FeatureCache(Path(cache_dir), extractor, audio_config)
    known = cache.known()
    wanted: dict[str, str] = {}
    for i, sha in enumerate(shas):
        if sha is not None and sha not in wanted:
            wanted[sha] = paths[i]
    todo = [(sha, path) for sha, path in wanted.items() if sha not in known]
    if "duration_s" in df.columns:
        # Batches of similar durations: extractors that pad a batch to its longest signal (ssl) waste little.
        seconds = dict(zip(paths, pd.to_numeric(df["duration_s"], errors="coerce").fillna(0.0), strict=True))
        todo.sort(key=lambda item: seconds.get(item[1], 0.0))
    n_cached = len(wanted) - len(todo)
    log.info("%s: %d recordings cached, %d to compute (cache %s)", extractor.name, n_cached, len(todo), cache.dir)
    return ExtractionPlan(df=df, paths=paths, shas=shas, skip_reason=skip_reason, cache=cache,
                          audio_config=audio_config, wanted=wanted, todo=todo, n_cached=n_cached)


def finish_extraction(
    plan: ExtractionPlan, out: Path, failed: dict[str, str], n_computed: int, started: float
) -> ExtractReport:
    """Record skips (``failed``: path -> reason), assemble the table from the cache and write it with its
    metadata and ``<out>.skipped.csv``."""
    df, paths, shas, cache = plan.df, plan.paths, plan.shas, plan.cache
    skip_reason = dict(plan.skip_reason)
    path_reason = failed
    for i, path in enumerate(paths):
        if i not in skip_reason and path in path_reason:
            skip_reason[i] = path_reason[path]
    # Rows that share a hash with a failed file fail with it.
    failed_shas = {sha for sha, path in plan.wanted.items() if path in path_reason}
    for i, sha in enumerate(shas):
        if i not in skip_reason and sha in failed_shas:
            skip_reason[i] = path_reason[plan.wanted[sha]]

    keep = [i for i in range(len(df)) if i not in skip_reason]
    table = _assemble(df.iloc[keep], [shas[i] for i in keep], cache, out)
    description = {"extractor": describe_extractor(cache.extractor), "audio": config_to_dict(plan.audio_config)}
    _write_feature_table(table, out, description)
    skipped_rows = [(str(df["id"].iloc[i]), paths[i], skip_reason[i]) for i in sorted(skip_reason)]
    if skipped_rows:
        write_table(pd.DataFrame(skipped_rows, columns=["id", "path", "reason"]), skipped_path(out))
    else:
        skipped_path(out).unlink(missing_ok=True)
    return ExtractReport(
        out=out, extractor=cache.extractor.name, cache_dir=cache.dir, n_rows=len(table), n_cached=plan.n_cached,
        n_computed=n_computed, skipped=tuple((p, r) for _, p, r in skipped_rows),
        seconds=time.perf_counter() - started,
    )


def check_sizes(out: Path, **sizes: int) -> None:
    """Raise ConfigError unless ``out`` ends in .parquet and every size is at least 1."""
    if out.suffix.lower() != ".parquet":
        raise ConfigError(f"{out}: the feature table must end in .parquet")
    for name, value in sizes.items():
        if value < 1:
            raise ConfigError(f"{name}={value} must be at least 1")


def extract_features(
    manifest: pd.DataFrame,
    extractor: Extractor,
    out: str | Path,
    cache_dir: str | Path,
    workers: int = 1,
    batch_size: int = 16,
    part_size: int = 256,
    progress: bool = False,
    audio_config: AudioConfig | None = None,
    decode_ahead: bool | None = None,
) -> ExtractReport:
    """Extract features for every row of ``manifest`` (from ``read_manifest``) into the Parquet table ``out``.

    Recordings already in the cache are not decoded again. Unusable files are skipped and listed in
    ``<out>.skipped.csv`` (id, path, reason). Returns counts of cached, computed and skipped recordings.
    ``decode_ahead`` (one worker only): decode in a helper process while extracting; None lets the extractor
    decide (its ``decode_ahead`` attribute, True for model extractors).
    """
    started = time.perf_counter()
    out = Path(out)
    check_sizes(out, workers=workers, batch_size=batch_size, part_size=part_size)
    plan = plan_extraction(manifest, extractor, cache_dir, audio_config,
                           functools.partial(_hash_locally, workers=workers, progress=progress))
    cache, todo = plan.cache, plan.todo

    failed: dict[str, str] = {}
    parts = PartWriter(cache, part_size)
    work = functools.partial(extract_batch, extractor, plan.audio_config)
    bar = progress_bar(len(todo), extractor.name, progress)
    try:
        batches = list(_batches(todo, batch_size))
        if workers > 1:
            # Longest batches first, one at a time: the workers finish together instead of one idling while
            # the other works through the longest files at the end (batches stay length-bucketed).
            batches = batches[::-1]
        if decode_ahead is None:
            decode_ahead = bool(getattr(extractor, "decode_ahead", False))
        if workers == 1 and decode_ahead and len(batches) > 1:
            results = (_extract_after_decoding(extractor, decoded)
                       for decoded in decoded_ahead(plan.audio_config, batches))
        else:
            results = map_ordered(work, batches, workers=workers, chunksize=1 if workers > 1 else None)
        for batch, (done, skipped) in zip(batches, results, strict=True):
            parts.add(done)
            failed.update(skipped)
            bar.update(len(batch))
        parts.flush()
    finally:
        bar.close()
    return finish_extraction(plan, out, failed, parts.n_written, started)


class PartWriter:
    """Collects ``(sha256, features)`` results and stores them in the cache in parts of at least ``part_size``
    (one part per ``flush``), so finished work is on disk long before the run ends."""

    def __init__(self, cache: FeatureCache, part_size: int) -> None:
        self.cache = cache
        self.part_size = part_size
        self.n_written = 0
        self._buffer: list[tuple[str, np.ndarray]] = []

    def add(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        self._buffer.extend(items)
        if len(self._buffer) >= self.part_size:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.cache.write_part(self._buffer)
            self.n_written += len(self._buffer)
            self._buffer = []


def _assemble(rows: pd.DataFrame, shas: list[str], cache: FeatureCache, out: Path) -> pd.DataFrame:
    """Manifest columns + sha256 + cached features, in manifest order."""
    carried = [c for c in CARRIED_COLUMNS if c in rows.columns]
    table = rows[carried].reset_index(drop=True).copy()
    table["sha256"] = shas
    features = cache.read(set(shas))
    if cache.extractor.kind == "vector":
        values = features.loc[shas, list(cache.extractor.columns)].reset_index(drop=True)
        return pd.concat([table, values], axis=1)
    folder = frames_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    for sha in dict.fromkeys(shas):
        _link_or_copy(cache.array_path(sha), folder / f"{sha}.npy")
    table["n_frames"] = features.loc[shas, "n_frames"].astype("int64").to_numpy()
    table["features_path"] = [f"{folder.name}/{sha}.npy" for sha in shas]
    return table


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link the cached array beside the table (no extra space); copy across file systems."""
    if dst.exists():
        if dst.stat().st_size == src.stat().st_size:
            return
        dst.unlink()
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _write_feature_table(table: pd.DataFrame, out: Path, description: dict[str, Any]) -> None:
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    metadata = dict(arrow.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(description).encode()
    arrow = arrow.replace_schema_metadata(metadata)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    try:
        pq.write_table(arrow, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; the table is a result others read
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_feature_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A feature table and its stored description (``{"extractor": ..., "audio": ...}``).

    For frame extractors ``features_path`` is made absolute; load a matrix with ``np.load``.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: feature table does not exist")
    try:
        arrow = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ManifestError(f"{path}: cannot read feature table ({exc})") from exc
    raw = (arrow.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ManifestError(f"{path}: no {METADATA_KEY.decode()} metadata; not written by audios features")
    table = arrow.to_pandas()
    if "features_path" in table.columns:
        table["features_path"] = [str(path.parent / p) for p in table["features_path"]]
    return table, json.loads(raw)
