"""The registry of copy-synthesis methods: each turns one bona fide recording into a synthetic one.

A method is one file holding a frozen ``Config`` dataclass (which checks itself and names its output's
generator from its key parameters) and a ``build(config)`` that returns a ``Synthesizer``: a callable
taking ``(x, sample_rate, context)`` (mono float32 at the source's rate) and returning mono float32 at
the same rate. ``build`` loads whatever the method needs (a model, a binary) once; the driver keeps one
synthesizer per method and worker process. ``METHODS`` is filled when ``audios.synth`` is imported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from audios.errors import ConfigError

# How a synthesizer's output level is matched to its source: "rms" over the whole file (copy-synthesis
# keeps the source's timing, so the silences line up), or "active" over the frames within 40 dB of the
# loudest (text-to-speech has its own pauses, which would otherwise change the gain).
LEVEL_MODES = ("rms", "active")


@dataclass(frozen=True)
class SynthContext:
    """What a synthesizer may know about the recording besides its samples."""

    item_id: str
    seed: int
    text: str | None = None


class Synthesizer(Protocol):
    level_mode: str

    def __call__(self, x: np.ndarray, sample_rate: int, context: SynthContext) -> np.ndarray:
        """(n,) float32 at ``sample_rate`` -> (m,) float32 at ``sample_rate``."""
        ...


@dataclass(frozen=True)
class Method:
    """One registry entry: its name, config class, builder and an optional cheap availability check."""

    name: str
    config_cls: type
    build: Callable[[Any], Synthesizer]
    summary: str
    # Raises a typed error when the method cannot run (binary absent, model unreadable); run in the
    # main process before any work starts, so a run fails at once rather than once per file.
    check: Callable[[Any], object] | None = None


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method at import time; names are unique."""
    if method.name in METHODS:
        raise ConfigError(f"synthesis method {method.name!r} is registered twice")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method called ``name``; a ConfigError listing the known names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"method={name!r} is not a synthesis method; known: {sorted(METHODS)}") from None


def item_seed(seed: int, item_id: str) -> int:
    """A per-recording seed from the run seed and the recording's id (independent of order and workers)."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``y`` to ``n`` samples (vocoders emit whole frames, so the tail differs by < 1 hop)."""
    if y.size >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - y.size, dtype=y.dtype)])


def format_number(value: float) -> str:
    """Short decimal for generator names: 1.2 -> '1.2', 6.0 -> '6', 1.5 -> '1.5'."""
    return f"{value:g}"
