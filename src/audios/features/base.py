"""What every feature extractor looks like, and the helpers they share.

An extractor is a small class with a ``name``, a frozen dataclass ``Config`` and a batch ``extract``
method. ``kind`` says what ``extract`` returns per recording: ``"vector"`` (a fixed-length vector whose
entries are named by ``columns``) or ``"frames"`` (a (frames, dims) matrix for deep models and GMMs).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from audios.config import build_config, config_to_dict
from audios.errors import ConfigError, EmptyAudioError, NonFiniteError, SilentAudioError

# A signal whose peak is below -80 dBFS is digital silence (same rule as audios.audio.AudioConfig).
SILENCE_PEAK = 1e-4
KINDS = ("vector", "frames")


@runtime_checkable
class Extractor(Protocol):
    """A feature extractor: ``extract`` maps a batch of mono float32 signals at ``config.sample_rate``
    to one array per signal."""

    name: ClassVar[str]
    kind: ClassVar[str]
    # Bumped when the code changes what the extractor returns, so old cache entries are not reused.
    version: ClassVar[int]
    config: Any

    @property
    def columns(self) -> tuple[str, ...]: ...

    def extract(self, batch: list[np.ndarray]) -> list[np.ndarray]: ...


def check_signal(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as 1-D float32, or raise a typed error naming it when empty, non-finite or silent."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ConfigError(f"{name}: expected a mono 1-D signal, got shape {x.shape}")
    if x.size == 0:
        raise EmptyAudioError(name, "signal has 0 samples")
    if not np.isfinite(x).all():
        raise NonFiniteError(name, "contains NaN or infinite samples")
    if float(np.max(np.abs(x))) < SILENCE_PEAK:
        raise SilentAudioError(name, "all samples are silent (peak below -80 dBFS)")
    return x


def check_batch(batch: list[np.ndarray]) -> list[np.ndarray]:
    """``check_signal`` on each item, naming the bad one as ``batch[i]``."""
    if isinstance(batch, np.ndarray) and batch.ndim == 1:
        raise ConfigError("extract takes a list of signals; wrap a single signal as [x]")
    return [check_signal(x, f"batch[{i}]") for i, x in enumerate(batch)]


def describe_extractor(extractor: Extractor) -> dict[str, Any]:
    """Name, kind, code version, columns and config as plain JSON-safe data (stored with feature tables)."""
    return {
        "name": extractor.name,
        "kind": extractor.kind,
        "version": extractor.version,
        "columns": list(extractor.columns),
        "config": config_to_dict(extractor.config),
    }


def config_hash(extractor: Extractor) -> str:
    """16 hex digits identifying the extractor's name, code version and config (the cache key's second half)."""
    key = {"name": extractor.name, "version": extractor.version, "config": config_to_dict(extractor.config)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def build_extractor(cls: type, config: Any = None) -> Extractor:
    """Instantiate ``cls`` from its ``Config``, a mapping of fields, or None for the defaults."""
    if config is None:
        cfg = cls.Config()
    elif isinstance(config, cls.Config):
        cfg = config
    elif isinstance(config, dict):
        cfg = build_config(cls.Config, config)
    else:
        raise ConfigError(
            f"{cls.name}: config must be a {cls.Config.__name__} or a mapping, got {type(config).__name__}"
        )
    return cls(cfg)


def positive(owner: str, **values: float) -> None:
    """Raise ConfigError naming the first field that is not > 0."""
    for field, value in values.items():
        if value is None or value <= 0:
            raise ConfigError(f"{owner}.{field}={value} must be positive")


# The registry: filled once here, read-only afterwards. The extractor modules import the helpers above,
# which already exist by the time these imports run.
from audios import portable  # noqa: E402
from audios.features import aasist_emb, frames, speaker, spectral, ssl  # noqa: E402

EXTRACTORS: dict[str, type] = {}
for _cls in (spectral.SpectralExtractor, frames.LfccExtractor, frames.MfccExtractor, frames.LogmelExtractor,
             ssl.SslExtractor, speaker.ResemblyzerExtractor, aasist_emb.AasistEmbeddingExtractor,
             portable.PortableExtractor):
    if _cls.name in EXTRACTORS:
        raise RuntimeError(f"extractor {_cls.name!r} registered twice")
    if _cls.kind not in KINDS:
        raise RuntimeError(f"extractor {_cls.name!r} has kind {_cls.kind!r}, not one of {KINDS}")
    EXTRACTORS[_cls.name] = _cls


def get_extractor(name: str, config: Any = None) -> Extractor:
    """The extractor called ``name`` built with ``config`` (its Config, a mapping, or None for defaults).

    An unknown name raises ConfigError listing the known ones.
    """
    try:
        cls = EXTRACTORS[name]
    except KeyError:
        raise ConfigError(f"unknown extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}") from None
    return build_extractor(cls, config)


def extractor_from_description(description: dict[str, Any]) -> Extractor:
    """Rebuild an extractor from ``describe_extractor`` output (e.g. a feature table's metadata)."""
    try:
        name, config, version = description["name"], description["config"], description["version"]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"extractor description lacks name/config/version: {description!r}") from exc
    extractor = get_extractor(name, config)
    if extractor.version != version:
        raise ConfigError(
            f"extractor {name!r}: description is from code version {version}, this is version {extractor.version}"
        )
    return extractor
