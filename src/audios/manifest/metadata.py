"""Per-recording measurements, streamed block by block so a file of any length fits in memory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audios.audio import amplitude_to_dbfs, audio_info, iter_native_blocks, to_mono
from audios.errors import EmptyAudioError, NonFiniteError, SilentAudioError, TooShortError

METADATA_COLUMNS = (
    "duration_s", "sample_rate", "channels", "format", "peak", "rms_dbfs", "clipped_fraction",
    "lead_silence_s", "trail_silence_s", "sha256",
)


@dataclass(frozen=True)
class MetadataConfig:
    """Thresholds of the measurements."""

    # 10 ms frames whose RMS is below -50 dBFS count as silence (speech sits around -20 to -30 dBFS).
    silence_frame_s: float = 0.010
    silence_threshold_dbfs: float = -50.0
    # |x| >= 0.999 counts as clipped (full scale after float conversion of 16-bit PCM is 32767/32768).
    clip_level: float = 0.999
    silence_peak_dbfs: float = -80.0
    # Shorter recordings cannot be judged by any stage (the audio loader refuses them too).
    min_duration_s: float = 0.05


def measure_recording(path: str | Path, config: MetadataConfig = MetadataConfig()) -> dict:
    """Duration, rate, channels, format, peak, RMS dBFS, clipped fraction, edge silences and the PCM sha256.

    The hash covers the decoded samples (float32, native rate and channels), so one recording stored
    as wav or flac hashes the same.
    """
    path = Path(path)
    info = audio_info(path)
    sha = hashlib.sha256()
    n_frames = 0
    n_values = 0
    sum_sq = 0.0
    peak = 0.0
    clipped = 0
    rate = info.sample_rate
    channels = info.channels
    frame_energies: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.float32)
    frame_len = 1
    for block, rate in iter_native_blocks(path):
        if not np.isfinite(block).all():
            raise NonFiniteError(path, "contains NaN or infinite samples")
        channels = block.shape[1]
        frame_len = max(1, int(round(config.silence_frame_s * rate)))
        sha.update(np.ascontiguousarray(block, dtype="<f4").tobytes())
        n_values += block.size
        clipped += int(np.count_nonzero(np.abs(block) >= config.clip_level))
        mono = to_mono(block, "mean")
        n_frames += mono.shape[0]
        # einsum, not np.dot: a BLAS call would start a thread pool per worker and oversubscribe the cores.
        m64 = mono.astype(np.float64)
        sum_sq += float(np.einsum("i,i->", m64, m64))
        peak = max(peak, float(np.max(np.abs(mono))) if mono.size else 0.0)
        buf = np.concatenate([carry, mono]) if carry.size else mono
        usable = (buf.shape[0] // frame_len) * frame_len
        if usable:
            frame_energies.append(np.mean(buf[:usable].reshape(-1, frame_len).astype(np.float64) ** 2, axis=1))
        carry = buf[usable:]
    if carry.size:
        frame_energies.append(np.array([np.mean(carry.astype(np.float64) ** 2)]))
    if n_frames == 0:
        raise EmptyAudioError(path, "decodes to 0 samples")
    if peak < 10 ** (config.silence_peak_dbfs / 20):
        raise SilentAudioError(path, f"all samples are silent (peak {amplitude_to_dbfs(peak):.1f} dBFS)")
    duration_s = n_frames / rate
    if duration_s < config.min_duration_s:
        raise TooShortError(path, f"{duration_s * 1000:.1f} ms is shorter than the {config.min_duration_s * 1000:.0f} ms minimum")
    energies = np.concatenate(frame_energies)
    loud = np.flatnonzero(energies > 10 ** (config.silence_threshold_dbfs / 10))
    if loud.size:
        lead = min(loud[0] * frame_len / rate, duration_s)
        trail = max(0.0, duration_s - (loud[-1] + 1) * frame_len / rate)
    else:
        lead = trail = duration_s
    return {
        "duration_s": round(duration_s, 6),
        "sample_rate": int(rate),
        "channels": int(channels),
        "format": info.format,
        "peak": round(peak, 6),
        "rms_dbfs": round(amplitude_to_dbfs(np.sqrt(sum_sq / n_frames)), 3),
        "clipped_fraction": round(clipped / max(n_values, 1), 8),
        "lead_silence_s": round(lead, 4),
        "trail_silence_s": round(trail, 4),
        "sha256": sha.hexdigest(),
    }
