"""Duration bucketing: group recordings of similar length so padded batches waste little compute.

A batch of signals is padded to its longest member, so a batch's cost is ``len(batch) * max(lengths)``
samples while only ``sum(lengths)`` carry signal. The padding waste of a batching is

    waste = 1 - sum(lengths) / sum over batches of (len(batch) * max length in batch)

(0 when every batch holds equal lengths). Batching in arbitrary order wastes a lot: for lengths uniform
on 1-20 s, batches of 8 waste about 40%: a batch's longest item (on average 1 + 19 * 8/9 = 17.9 s) sets
its cost while its mean is 10.5 s. Sorting by length first and filling each batch up to a budget of padded
samples keeps neighbours within a few percent of each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audios.errors import ConfigError


def bucket_batches(
    lengths: Sequence[int], budget: int, max_items: int | None = None, max_waste: float | None = None
) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches of similar length whose padded size fits ``budget``.

    Items are taken longest first; a batch opened by an item of length L holds at most ``budget // L``
    items (and ``max_items`` when given), so ``len(batch) * max(batch) <= budget`` unless a single item
    alone exceeds the budget, in which case it forms its own batch. With ``max_waste`` an item joins the
    batch only if it is at least ``(1 - max_waste) * L`` long, so no batch pads more than that fraction,
    however few items there are to group. Ties keep input order.
    """
    if budget <= 0:
        raise ConfigError(f"bucket_batches: budget={budget} must be positive")
    if max_items is not None and max_items < 1:
        raise ConfigError(f"bucket_batches: max_items={max_items} must be at least 1")
    if max_waste is not None and not 0 <= max_waste < 1:
        raise ConfigError(f"bucket_batches: max_waste={max_waste} must be in [0, 1)")
    lengths = [int(n) for n in lengths]
    if any(n < 0 for n in lengths):
        raise ConfigError("bucket_batches: lengths must be non-negative")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        longest = max(lengths[order[start]], 1)
        size = max(1, budget // longest)
        if max_items is not None:
            size = min(size, max_items)
        stop = min(start + size, len(order))
        if max_waste is not None:
            shortest = (1.0 - max_waste) * longest
            end = start + 1
            while end < stop and lengths[order[end]] >= shortest:
                end += 1
            stop = end
        batches.append(order[start:stop])
        start = stop
    return batches


def fixed_batches(n_items: int, size: int) -> list[list[int]]:
    """Batches of ``size`` consecutive indices in the given order (the last may be shorter)."""
    if size < 1:
        raise ConfigError(f"fixed_batches: size={size} must be at least 1")
    return [list(range(start, min(start + size, n_items))) for start in range(0, n_items, size)]


@dataclass(frozen=True)
class BatchingReport:
    """How much of the padded batches is padding: ``waste`` is a fraction in [0, 1)."""

    n_items: int
    n_batches: int
    signal_samples: int
    padded_samples: int

    @property
    def waste(self) -> float:
        return 0.0 if self.padded_samples == 0 else 1.0 - self.signal_samples / self.padded_samples

    def summary(self) -> str:
        return (f"{self.n_items} items in {self.n_batches} batches, "
                f"{100 * self.waste:.1f}% of padded samples are padding")


def batching_report(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> BatchingReport:
    """Padding waste of ``batches`` (lists of indices into ``lengths``); every index must appear exactly once."""
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    seen = sorted(i for batch in batches for i in batch)
    if seen != list(range(len(lengths_arr))):
        raise ConfigError("batching_report: batches must cover every index of lengths exactly once")
    padded = sum(len(batch) * int(lengths_arr[list(batch)].max()) for batch in batches if len(batch))
    return BatchingReport(n_items=len(lengths_arr), n_batches=sum(1 for b in batches if len(b)),
                          signal_samples=int(lengths_arr.sum()), padded_samples=int(padded))


def padding_waste(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """``batching_report(lengths, batches).waste``: the fraction of padded samples that are padding."""
    return batching_report(lengths, batches).waste


def split_windows(n_samples: int, max_window: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the fewest equal-length windows (lengths differ by at most 1) of at most
    ``max_window`` samples covering ``n_samples``: 45 s at a 20 s maximum gives three 15 s windows,
    not 20 + 20 + 5."""
    if max_window <= 0:
        raise ConfigError(f"split_windows: max_window={max_window} must be positive")
    if n_samples <= 0:
        return []
    count = -(-n_samples // max_window)
    edges = [round(k * n_samples / count) for k in range(count + 1)]
    return [(edges[k], edges[k + 1]) for k in range(count)]
