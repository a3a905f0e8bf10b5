"""Run a function over many items in worker processes, keeping order, with an optional progress bar."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def progress_bar(total: int | None, desc: str, progress: bool) -> tqdm:
    """A tqdm bar on stderr, shown only when asked and stderr is a terminal."""
    return tqdm(total=total, desc=desc, disable=not (progress and sys.stderr.isatty()), file=sys.stderr, unit="file")


def _one_blas_thread() -> None:
    """Worker initializer: one BLAS and one torch thread per process, so N workers use N cores rather than
    N x cores. torch sizes its thread pool from OMP_NUM_THREADS when first imported; a worker forked from a
    parent that already imported it is told directly."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a core dependency
        return
    threadpool_limits(1, "blas")


def map_ordered(
    fn: Callable[[T], R], items: Iterable[T], workers: int = 1, desc: str = "", progress: bool = False,
    total: int | None = None, chunksize: int | None = None,
) -> Iterator[R]:
    """Yield ``fn(item)`` in input order; ``workers > 1`` uses a process pool (``fn`` must be picklable).

    ``chunksize``: items sent to a worker at once (default: a few per worker); 1 balances uneven items best.
    """
    items = list(items)
    bar = progress_bar(total or len(items), desc, progress)
    try:
        if workers <= 1:
            for item in items:
                yield fn(item)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_one_blas_thread) as pool:
                if chunksize is None:
                    chunksize = max(1, min(16, len(items) // (workers * 8) or 1))
                for result in pool.map(fn, items, chunksize=chunksize):
                    yield result
                    bar.update()
    finally:
        bar.close()
