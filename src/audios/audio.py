"""Audio I/O: decode any supported file to mono float32 at a target rate, whole or in blocks.

soundfile (libsndfile) decodes wav/flac/ogg/opus/mp3; PyAV, which ships its own FFmpeg, decodes
m4a/aac/mp4/webm and anything libsndfile rejects, so no system binary is ever needed.
Resampling uses soxr at high quality.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audios.errors import (
    AudioReadError,
    ConfigError,
    EmptyAudioError,
    NonFiniteError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UnsupportedFormatError,
)

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".webm", ".aif", ".aiff")
# libsndfile cannot read these containers; go to PyAV straight away.
_AV_ONLY = {".m4a", ".aac", ".mp4", ".webm"}
CHANNEL_POLICIES = ("mean", "first")


@dataclass(frozen=True)
class AudioConfig:
    """How recordings are decoded and which ones are refused."""

    sample_rate: int = 16000
    channel_policy: str = "mean"
    min_duration_s: float = 0.05
    # A file longer than this is refused by ``load_audio`` (use ``stream_audio``): 2 h of 16 kHz
    # float32 is 460 MB, and a mislabelled multi-hour file in a batch job is usually a mistake.
    max_duration_s: float = 2 * 3600.0
    # Peak below -80 dBFS (1e-4) is digital silence for 16-bit or better audio.
    silence_peak_dbfs: float = -80.0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate={self.sample_rate} must be positive")
        if self.channel_policy not in CHANNEL_POLICIES:
            raise ConfigError(f"channel_policy={self.channel_policy!r} must be one of {CHANNEL_POLICIES}")
        if not 0 <= self.min_duration_s < self.max_duration_s:
            raise ConfigError(
                f"min_duration_s={self.min_duration_s} must be >= 0 and below max_duration_s={self.max_duration_s}"
            )


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about a file, read without decoding it."""

    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AudioReadError(path, "file does not exist")
    if path.is_dir():
        raise AudioReadError(path, "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioReadError(path, "permission denied")
    if path.stat().st_size == 0:
        raise EmptyAudioError(path, "file is empty (0 bytes)")


def _format_of(path: Path) -> str:
    return path.suffix.lower().lstrip(".") or "unknown"


def audio_info(path: str | Path) -> AudioInfo:
    """Read rate, channels and length from the header (PyAV estimates them for compressed containers)."""
    path = Path(path)
    _check_exists(path)
    if path.suffix.lower() not in _AV_ONLY:
        try:
            i = sf.info(str(path))
            return AudioInfo(int(i.samplerate), int(i.channels), int(i.frames), _format_of(path))
        except (sf.LibsndfileError, RuntimeError, TypeError):
            pass
    return _av_info(path)


def _av_info(path: Path) -> AudioInfo:
    av = _import_av(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioReadError(path, "no audio stream in the file")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            channels = int(stream.codec_context.channels or 0)
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            else:
                seconds = 0.0
    except AudioReadError:
        raise
    except Exception as exc:  # PyAV raises many FFmpeg error types; all mean "cannot read"
        raise AudioReadError(path, f"not a readable audio file ({type(exc).__name__}: {exc})") from exc
    if rate <= 0:
        raise AudioReadError(path, "audio stream has no sample rate")
    return AudioInfo(rate, channels, int(round(seconds * rate)), _format_of(path))


def _import_av(path: Path):
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a core dependency
        raise UnsupportedFormatError(path, "decoding this format needs PyAV (pip install av)") from exc
    return av


def _iter_native_av(path: Path, block_frames: int) -> Iterator[tuple[np.ndarray, int]]:
    av = _import_av(path)
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise AudioReadError(path, f"not a readable audio file ({type(exc).__name__}: {exc})") from exc
    with container:
        if not container.streams.audio:
            raise AudioReadError(path, "no audio stream in the file")
        stream = container.streams.audio[0]
        resampler = None
        pending: list[np.ndarray] = []
        pending_frames = 0
        rate = 0
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    rate = int(frame.sample_rate)
                    # Convert to planar float at the native rate and layout: no resampling here.
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().T.astype(np.float32, copy=False))
                    pending_frames += pending[-1].shape[0]
                while pending_frames >= block_frames:
                    joined = np.concatenate(pending)
                    yield joined[:block_frames], rate
                    rest = joined[block_frames:]
                    pending, pending_frames = ([rest], rest.shape[0]) if rest.size else ([], 0)
            if resampler is not None:
                for out in resampler.resample(None):
                    pending.append(out.to_ndarray().T.astype(np.float32, copy=False))
        except Exception as exc:
            if isinstance(exc, AudioReadError):
                raise
            raise AudioReadError(path, f"corrupt or truncated audio ({type(exc).__name__}: {exc})") from exc
        if pending:
            joined = np.concatenate(pending)
            if joined.size:
                yield joined, rate


def _iter_native_sf(path: Path, block_frames: int) -> Iterator[tuple[np.ndarray, int]]:
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioReadError(path, f"not a readable audio file ({exc})") from exc
    with f:
        rate = int(f.samplerate)
        try:
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                yield block, rate
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioReadError(path, f"corrupt or truncated audio ({exc})") from exc


def iter_native_blocks(path: str | Path, block_s: float = 10.0) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(block, sample_rate)`` with ``block`` float32 of shape (frames, channels) at the file's own rate.

    Nothing is resampled or mixed down; memory use is one block whatever the file's length.
    """
    path = Path(path)
    _check_exists(path)
    use_av = path.suffix.lower() in _AV_ONLY
    if not use_av:
        try:
            rate = sf.info(str(path)).samplerate
        except (sf.LibsndfileError, RuntimeError, TypeError):
            use_av = True  # libsndfile does not know it: let FFmpeg try
    if use_av:
        yield from _iter_native_av(path, max(1, int(block_s * 48000)))
    else:
        yield from _iter_native_sf(path, max(1, int(block_s * rate)))


def to_mono(block: np.ndarray, policy: str = "mean") -> np.ndarray:
    """(frames, channels) -> (frames,) float32 by the channel policy."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    if policy == "first":
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    return block.mean(axis=1, dtype=np.float32)


def resample(x: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """High-quality (soxr HQ) resampling of a mono float32 signal."""
    if orig_rate == target_rate or x.size == 0:
        return x.astype(np.float32, copy=False)
    return soxr.resample(x, orig_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def stream_audio(
    path: str | Path, config: AudioConfig = AudioConfig(), block_s: float = 10.0
) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks at ``config.sample_rate``; for files of any length.

    Raises NonFiniteError on the first block holding NaN/inf. Length caps do not apply.
    """
    path = Path(path)
    stream: soxr.ResampleStream | None = None
    rate = None
    for block, rate in iter_native_blocks(path, block_s):
        if not np.isfinite(block).all():
            raise NonFiniteError(path, "contains NaN or infinite samples")
        mono = to_mono(block, config.channel_policy)
        if rate == config.sample_rate:
            yield mono
            continue
        if stream is None:
            stream = soxr.ResampleStream(rate, config.sample_rate, 1, dtype="float32", quality="HQ")
        out = stream.resample_chunk(mono)
        if out.size:
            yield out
    if stream is not None:
        tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if tail.size:
            yield tail


def load_audio(path: str | Path, config: AudioConfig = AudioConfig()) -> np.ndarray:
    """Decode ``path`` whole into a mono float32 array at ``config.sample_rate``.

    Raises a typed AudioError (subclass) naming the file when it is unreadable, empty, silent,
    shorter than ``min_duration_s``, longer than ``max_duration_s`` or holds NaN/inf.
    """
    path = Path(path)
    info = audio_info(path)
    if info.duration_s > config.max_duration_s:
        raise TooLongError(
            path,
            f"{info.duration_s:.0f} s is longer than the {config.max_duration_s:.0f} s cap for whole-file loading "
            "(raise max_duration_s or stream it)",
        )
    blocks: list[np.ndarray] = []
    rate = info.sample_rate
    total = 0
    cap_frames = None
    for block, rate in iter_native_blocks(path):
        if not np.isfinite(block).all():
            raise NonFiniteError(path, "contains NaN or infinite samples")
        blocks.append(to_mono(block, config.channel_policy))
        total += blocks[-1].shape[0]
        # Headers can lie (a wav claiming 1 s that holds hours): enforce the cap on decoded frames too.
        cap_frames = cap_frames or int(config.max_duration_s * rate) + 1
        if total > cap_frames:
            raise TooLongError(path, f"decodes to more than the {config.max_duration_s:.0f} s cap")
    if total == 0:
        raise EmptyAudioError(path, "decodes to 0 samples")
    x = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    duration_s = total / rate
    if duration_s < config.min_duration_s:
        raise TooShortError(path, f"{duration_s * 1000:.1f} ms is shorter than the {config.min_duration_s * 1000:.0f} ms minimum")
    peak = float(np.max(np.abs(x)))
    if peak < 10 ** (config.silence_peak_dbfs / 20):
        raise SilentAudioError(path, f"all samples are silent (peak {amplitude_to_dbfs(peak):.1f} dBFS)")
    return resample(x, rate, config.sample_rate)


def amplitude_to_dbfs(value: float) -> float:
    """Linear amplitude (1.0 = full scale) to dBFS; 0 maps to -inf."""
    return float(20 * np.log10(value)) if value > 0 else float("-inf")


def write_audio_atomic(path: str | Path, x: np.ndarray, sample_rate: int, format: str | None = None) -> Path:
    """Write ``x`` to ``path`` via a temporary file in the same folder and an atomic rename.

    A reader never sees a half-written file under the final name, even if the process is killed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = (format or path.suffix.lstrip(".")).upper()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        subtype = "PCM_16" if fmt in ("FLAC", "WAV") else None
        sf.write(tmp, np.asarray(x, dtype=np.float32), sample_rate, format=fmt, subtype=subtype)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def is_audio_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS
