"""The Ray engine: the same extraction as ``extract_features``, run as a Ray Data pipeline on one machine or a cluster.

Pipeline, for the recordings that are not cached yet (shortest first, as the local engine orders them)::

    manifest rows --(map_batches: decode + resample, CPU tasks)--> signals
                  --(map_batches: extractor in an actor pool, model loaded once per actor)--> features
                  --(streamed back to the driver)--> cache parts (Parquet, flushed every ``part_size``)

Decoding runs in Ray tasks while the actors run the model, so the two overlap; Ray Data streams blocks
through both steps with back-pressure, so memory stays bounded however long the manifest is. The
driver is the only writer of the cache: it receives each batch's features and flushes them to
``cache_dir`` in Parquet parts exactly as the local engine does (same folder, same key), which makes
both engines share one cache, a killed run resumable by either engine, and the final table (columns,
values, schema metadata, ``<out>.skipped.csv``) identical to the local engine's. Workers therefore need
no shared file system for the output; they do need to read the audio paths the manifest names.

Ray: when ``RAY_ADDRESS`` is set, ``ray.init()`` attaches to that cluster (``auto`` for the local
head node, ``ray://host:10001`` for Ray Client); otherwise a local Ray is started with ``num_cpus``
CPUs. A Ray session that was already running is used as is and left running. Ray is an optional extra
(``pip install "ray[data]"``); it is imported only when this engine runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audios.audio import AudioConfig
from audios.errors import ConfigError
from audios.features.base import Extractor
from audios.features.extract import (
    ExtractReport,
    PartWriter,
    _hash_one,
    check_sizes,
    decode_items,
    extract_decoded,
    finish_extraction,
    plan_extraction,
)
from audios.parallel import progress_bar

log = logging.getLogger(__name__)

RESULT_COLUMNS = ("sha256", "path", "reason", "values", "dtype", "rows", "cols")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra
    except ImportError as exc:
        raise ConfigError(
            f"--engine ray needs Ray Data: pip install \"ray[data]\" ({type(exc).__name__}: {exc})"
        ) from exc
    return ray


def init_ray(num_cpus: int | None = None) -> bool:
    """Attach to Ray: the running session if any, the cluster at ``RAY_ADDRESS`` when set, else a local Ray
    with ``num_cpus`` CPUs (all of this machine's by default). True when this call started Ray."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        log.info("attaching to the Ray cluster at RAY_ADDRESS=%s", os.environ["RAY_ADDRESS"])
        ray.init(log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


# --- the pipeline's steps (run inside Ray workers) -----------------------------------------------------

def _decode_step(batch: pd.DataFrame, audio_config: AudioConfig) -> pd.DataFrame:
    """Decode a batch of ``(sha256, path)`` rows: float32 PCM bytes, or an empty signal and the reason."""
    items = list(zip(batch["sha256"], batch["path"], strict=True))
    keys, signals, skipped = decode_items(audio_config, items)
    rows = [(sha, path, "", x.astype(np.float32, copy=False).tobytes())
            for (sha, path), x in zip(keys, signals, strict=True)]
    sha_of = dict(zip(batch["path"], batch["sha256"], strict=True))
    rows += [(sha_of[path], path, reason, b"") for path, reason in skipped]
    return pd.DataFrame(rows, columns=["sha256", "path", "reason", "signal"])


class _ExtractActor:
    """One extractor per actor; models (ssl) are loaded on the first batch and kept for the actor's life."""

    def __init__(self, cls: type, config: Any) -> None:
        # The class travels by reference and the config by value: small constructor arguments.
        self.extractor = cls(config)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        keys, signals, rows = [], [], []
        for sha, path, reason, signal in zip(batch["sha256"], batch["path"], batch["reason"], batch["signal"],
                                             strict=True):
            if reason:
                rows.append((sha, path, reason, b"", "", 0, 0))
            else:
                keys.append((sha, path))
                signals.append(np.frombuffer(signal, dtype=np.float32).copy())
        done, failed = extract_decoded(self.extractor, keys, signals)
        path_of = dict(keys)
        # The same dtypes the cache stores: float64 vectors, float32 frame matrices.
        dtype = np.float32 if self.extractor.kind == "frames" else np.float64
        for sha, values in done:
            a = np.ascontiguousarray(values, dtype=dtype)
            shape = a.shape if a.ndim == 2 else (1, a.shape[0])
            rows.append((sha, path_of[sha], "", a.tobytes(), np.dtype(dtype).str, int(shape[0]), int(shape[1])))
        sha_of = {path: sha for sha, path in keys}
        rows += [(sha_of[path], path, reason, b"", "", 0, 0) for path, reason in failed]
        return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _hash_step(batch: pd.DataFrame) -> pd.DataFrame:
    out = [_hash_one(Path(p)) for p in batch["path"]]
    return pd.DataFrame({"index": batch["index"], "sha256": [s or "" for s, _ in out],
                         "reason": [r or "" for _, r in out]})


def _chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[start:start + size].reset_index(drop=True) for start in range(0, len(frame), size)]


def _hash_with_ray(paths: list[Path], block_rows: int) -> Iterable[tuple[str | None, str | None]]:
    """``(sha256, None)`` or ``(None, reason)`` per path, in order, measured in Ray tasks."""
    import ray

    frame = pd.DataFrame({"index": range(len(paths)), "path": [str(p) for p in paths]})
    ds = ray.data.from_pandas(_chunks(frame, block_rows)).map_batches(_hash_step, batch_format="pandas",
                                                                      batch_size=None)
    got: dict[int, tuple[str | None, str | None]] = {}
    for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
        for i, sha, reason in zip(batch["index"], batch["sha256"], batch["reason"], strict=True):
            got[int(i)] = (sha or None, reason or None)
    return [got[i] for i in range(len(paths))]


def _values(row: Any, kind: str) -> np.ndarray:
    """The features a result row carries: a (frames, dims) matrix, or a vector."""
    a = np.frombuffer(row.values, dtype=np.dtype(row.dtype)).reshape(row.rows, row.cols)
    return a if kind == "frames" else a[0]


# --- the engine ------------------------------------------------------------------------------------------

def extract_features_ray(
    manifest: pd.DataFrame,
    extractor: Extractor,
    out: str | Path,
    cache_dir: str | Path,
    workers: int = 1,
    batch_size: int = 16,
    part_size: int = 256,
    progress: bool = False,
    audio_config: AudioConfig | None = None,
    num_cpus: int | None = None,
    cpus_per_actor: float = 1.0,
    decode_cpus: float = 0.5,
) -> ExtractReport:
    """``extract_features`` on Ray: ``workers`` extractor actors of ``cpus_per_actor`` CPUs each, fed by decode
    tasks of ``decode_cpus`` CPUs; same cache, same table, same skipped list as the local engine.

    ``num_cpus`` sizes a local Ray (ignored when attaching to a running session or to ``RAY_ADDRESS``).
    """
    started = time.perf_counter()
    out = Path(out)
    check_sizes(out, workers=workers, batch_size=batch_size, part_size=part_size)
    if cpus_per_actor <= 0 or decode_cpus <= 0:
        raise ConfigError(f"cpus_per_actor={cpus_per_actor} and decode_cpus={decode_cpus} must be positive")
    ray = _import_ray()
    started_ray = init_ray(num_cpus)
    try:
        total = float(ray.cluster_resources().get("CPU", 0))
        needed = workers * cpus_per_actor + decode_cpus
        if needed > total:
            raise ConfigError(
                f"Ray engine: {workers} actor(s) x {cpus_per_actor} CPU + {decode_cpus} CPU for decoding = "
                f"{needed:g} CPUs, but the Ray cluster has {total:g}; lower --workers"
            )
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_stats_logs = False
        plan = plan_extraction(
            manifest, extractor, cache_dir, audio_config,
            hash_paths=lambda paths: _hash_with_ray(paths, block_rows=max(batch_size, 64)),
        )
        failed: dict[str, str] = {}
        n_computed = 0
        if plan.todo:
            todo = pd.DataFrame(plan.todo, columns=["sha256", "path"])
            # One block per extraction batch: blocks keep the shortest-first order, so each batch holds
            # recordings of similar length, and decode tasks can run on many blocks at once.
            ds = (
                ray.data.from_pandas(_chunks(todo, batch_size))
                .map_batches(_decode_step, fn_kwargs={"audio_config": plan.audio_config}, batch_format="pandas",
                             batch_size=None, num_cpus=decode_cpus)
                .map_batches(_ExtractActor,
                             fn_constructor_kwargs={"cls": type(extractor), "config": extractor.config},
                             batch_format="pandas", batch_size=batch_size,
                             compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_actor)
            )
            n_computed = _drain(ds, plan.cache, part_size, failed,
                                progress_bar(len(plan.todo), f"{extractor.name} (ray)", progress))
        return finish_extraction(plan, out, failed, n_computed, started)
    finally:
        if started_ray:
            ray.shutdown()


def _drain(ds: Any, cache: Any, part_size: int, failed: dict[str, str], bar: Any) -> int:
    """Stream the pipeline's results into cache parts of ``part_size``; returns how many were stored."""
    parts = PartWriter(cache, part_size)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            done = []
            for row in batch.itertuples(index=False):
                if row.reason:
                    failed[row.path] = row.reason
                else:
                    done.append((row.sha256, _values(row, cache.extractor.kind)))
            parts.add(done)
            bar.update(len(batch))
        parts.flush()
    finally:
        bar.close()
    return parts.n_written
