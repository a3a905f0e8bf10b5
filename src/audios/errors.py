"""Typed errors. Each carries what was bad (a path or a field) and why, and reads ``thing: reason``."""

from __future__ import annotations

from pathlib import Path


class AudiosError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(AudiosError, ValueError):
    """A configuration field is invalid or two fields disagree."""


class AudioError(AudiosError):
    """A recording cannot be used; ``path`` and ``reason`` say which and why."""

    kind = "audio"

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AudioReadError(AudioError):
    """Unreadable, corrupt, truncated or not audio at all."""

    kind = "unreadable"


class UnsupportedFormatError(AudioReadError):
    """The container or codec is not one we decode."""

    kind = "unsupported-format"


class EmptyAudioError(AudioError):
    """The file decodes to zero samples."""

    kind = "empty"


class SilentAudioError(AudioError):
    """Every sample is below the silence threshold."""

    kind = "silent"


class TooShortError(AudioError):
    """Shorter than the configured minimum duration."""

    kind = "too-short"


class TooLongError(AudioError):
    """Longer than the configured cap for loading a file whole (stream it instead)."""

    kind = "too-long"


class NonFiniteError(AudioError):
    """NaN or infinite samples."""

    kind = "non-finite"


class ManifestError(AudiosError):
    """A manifest or a corpus layout cannot be read."""


class LayoutError(ManifestError):
    """The folder does not look like the requested (or any known) corpus layout."""


class SplitError(AudiosError):
    """A split cannot satisfy its constraints."""
