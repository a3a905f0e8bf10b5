"""Prepare a corpus: resample to FLAC, trim edge silence, normalise, add noise, cut clips; streaming and resumable.

Every recording goes through the same chain, in this order:

1. decode to mono float32 at ``sample_rate`` (``audios.audio.stream_audio``);
2. trim leading/trailing silence (10 ms frames below ``trim_threshold_dbfs``, keeping ``trim_margin_s``);
3. normalise by peak or RMS to a target dBFS;
4. add white, pink or recorded noise at ``snr_db`` (signal power measured on the trimmed, normalised audio);
5. cut fixed-length clips (``clip_s``, ``overlap_s``; the remainder padded with zeros or dropped);
6. write 16-bit FLAC (or WAV) atomically (temporary file + ``os.replace``).

Two passes run over each recording: the first measures per-frame energy and peak (trim bounds, gain and
signal power follow from them), the second applies the chain and writes. In low-memory mode each pass
decodes the file again block by block, so a worker holds one block (plus one clip) at a time; otherwise
the file is decoded once and held. Both modes give byte-identical outputs: frame statistics are computed
with carry-over between blocks, and noise comes from stateful generators seeded per recording (config
seed + a hash of the recording's id), so results depend neither on block boundaries, worker count nor order.

Resumption: after all of a recording's outputs are written, a record ``.done/<key>.json`` holding its
manifest rows is written atomically. A recording counts as done only when its record exists, was made
with the same settings and every output it names exists; a rerun skips it and reuses the rows. A killed
run therefore leaves at most hidden ``.*.part`` temporaries (removed on the next run) and outputs without
a record (rewritten).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.signal import lfilter

from audios.audio import AudioConfig, is_audio_path, load_audio, stream_audio
from audios.config import config_to_dict
from audios.errors import AudioError, ConfigError, EmptyAudioError, ManifestError, SilentAudioError, TooShortError
from audios.manifest.build import COLUMN_ORDER
from audios.manifest.io import write_table
from audios.manifest.metadata import METADATA_COLUMNS, measure_recording
from audios.parallel import map_ordered
from audios.runs import write_run_info, write_text_atomic

log = logging.getLogger(__name__)

NORMALIZE_MODES = ("none", "peak", "rms")
NOISE_KINDS = ("none", "white", "pink", "folder")
REMAINDER_POLICIES = ("pad", "drop")
OUTPUT_FORMATS = ("flac", "wav")
# Settings that change no output byte: a run may resume with different values.
_NON_OUTPUT_FIELDS = ("low_memory", "block_s")
# 10 ms analysis frames for trimming, as in audios.manifest.metadata.
_FRAME_S = 0.010
# Peak below -80 dBFS is digital silence for 16-bit audio: no gain or SNR can be defined on it.
_SILENCE_PEAK = 1e-4
# 1/f ("pink") noise by a 3-pole/3-zero filter on white noise: J. O. Smith, Spectral Audio Signal
# Processing, "Example: Synthesis of 1/f Noise"; within ~0.5 dB of -3 dB/octave over about three decades.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
# Samples discarded from the pink filter's start so its slowest pole (0.995) has settled (~e^-10).
_PINK_WARMUP = 2048
_NOISE_CHUNK = 1 << 16
DONE_DIR = ".done"


@dataclass(frozen=True)
class PrepareConfig:
    """What ``prepare`` does to each recording; see the module docstring for the order of the steps."""

    sample_rate: int = 16000
    format: str = "flac"
    normalize: str = "none"
    # -1 dBFS peak leaves headroom for inter-sample peaks; -23 dBFS RMS is the EBU R 128 programme level.
    peak_target_dbfs: float = -1.0
    rms_target_dbfs: float = -23.0
    trim_silence: bool = False
    trim_threshold_dbfs: float = -50.0
    trim_margin_s: float = 0.05
    noise: str = "none"
    snr_db: float = 20.0
    noise_dir: str | None = None
    clip_s: float | None = None
    overlap_s: float = 0.0
    remainder: str = "pad"
    seed: int = 0
    in_place: bool = False
    low_memory: bool = False
    block_s: float = 10.0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate={self.sample_rate} must be positive")
        if self.format not in OUTPUT_FORMATS:
            raise ConfigError(f"format={self.format!r} must be one of {OUTPUT_FORMATS}")
        if self.normalize not in NORMALIZE_MODES:
            raise ConfigError(f"normalize={self.normalize!r} must be one of {NORMALIZE_MODES}")
        for name in ("peak_target_dbfs", "rms_target_dbfs"):
            if not -120 < getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in (-120, 0] dBFS")
        if self.trim_threshold_dbfs >= 0:
            raise ConfigError(f"trim_threshold_dbfs={self.trim_threshold_dbfs} must be below 0 dBFS")
        if self.trim_margin_s < 0:
            raise ConfigError(f"trim_margin_s={self.trim_margin_s} must be >= 0")
        if self.noise not in NOISE_KINDS:
            raise ConfigError(f"noise={self.noise!r} must be one of {NOISE_KINDS}")
        if self.noise == "folder":
            if not self.noise_dir:
                raise ConfigError("noise=folder needs noise_dir (a folder of noise recordings)")
            if not Path(self.noise_dir).is_dir():
                raise ConfigError(f"noise_dir={self.noise_dir!r} is not a folder")
        if not np.isfinite(self.snr_db):
            raise ConfigError(f"snr_db={self.snr_db} must be finite")
        if self.clip_s is not None:
            if self.clip_s <= 0:
                raise ConfigError(f"clip_s={self.clip_s} must be positive")
            if not 0 <= self.overlap_s < self.clip_s:
                raise ConfigError(f"overlap_s={self.overlap_s} must be >= 0 and below clip_s={self.clip_s}")
            hop_s = self.clip_s - self.overlap_s
            if round(self.clip_s * self.sample_rate) < 1 or round(hop_s * self.sample_rate) < 1:
                raise ConfigError(f"clip_s={self.clip_s}, overlap_s={self.overlap_s} give an empty clip or hop")
        elif self.overlap_s != 0:
            raise ConfigError(f"overlap_s={self.overlap_s} needs clip_s")
        if self.remainder not in REMAINDER_POLICIES:
            raise ConfigError(f"remainder={self.remainder!r} must be one of {REMAINDER_POLICIES}")
        if self.in_place and self.clip_s is not None:
            raise ConfigError("in_place cannot cut clips: the parent recordings would be overwritten")
        if self.block_s <= 0:
            raise ConfigError(f"block_s={self.block_s} must be positive")

    def fingerprint(self) -> str:
        """Hash of the settings that change outputs; a done record is only trusted under the same one."""
        data = {k: v for k, v in config_to_dict(self).items() if k not in _NON_OUTPUT_FIELDS}
        if self.noise == "folder":
            data["noise_files"] = [str(p) for p in noise_files(self.noise_dir)]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class PrepareReport:
    """What a prepare run did: the output manifest, counts, what was skipped and how long it took."""

    manifest_path: Path
    table: pd.DataFrame
    n_inputs: int
    n_resumed: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    input_duration_s: float = 0.0
    wall_s: float = 0.0

    def summary(self) -> str:
        lines = [
            f"{self.n_inputs} recording(s) in, {len(self.table)} output row(s) in {self.manifest_path}",
            f"{self.n_resumed} already done (resumed), {self.n_inputs - self.n_resumed - len(self.skipped)} processed "
            f"now, {len(self.skipped)} skipped",
        ]
        if self.skipped:
            lines.append(f"skipped e.g. {self.skipped[0][0]}: {self.skipped[0][1]} (all in skipped.csv)")
        if self.wall_s > 0:
            lines.append(f"{self.wall_s:.1f} s wall")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Item:
    """One input recording and where its outputs go (relative paths are relative to ``out_root``)."""

    id: str
    src: str
    rel_path: str
    out_root: str
    done_dir: str
    carried: tuple[tuple[str, Any], ...]


def file_seed(seed: int, recording_id: str) -> int:
    """A recording's own noise seed: config seed + a stable hash of its id (not Python's salted hash)."""
    digest = hashlib.sha256(f"{seed}:{recording_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def noise_files(noise_dir: str | Path | None) -> list[Path]:
    """Audio files under ``noise_dir``, sorted, so every worker picks from the same list."""
    if noise_dir is None:
        return []
    return sorted(p for p in Path(noise_dir).rglob("*") if p.is_file() and is_audio_path(p))


@functools.lru_cache(maxsize=4)
def _load_noise(path: str, sample_rate: int) -> np.ndarray:
    return load_audio(path, AudioConfig(sample_rate=sample_rate))


class NoiseSource:
    """An endless, seeded noise signal read in consecutive pieces; the pieces do not depend on how it is read."""

    def __init__(self, kind: str, seed: int, sample_rate: int, files: list[Path] | None = None) -> None:
        self.kind = kind
        self.rng = np.random.default_rng(seed)
        if kind == "pink":
            self.zi = np.zeros(len(_PINK_A) - 1)
            self.take(_PINK_WARMUP)
        elif kind == "folder":
            if not files:
                raise ConfigError("noise=folder: the noise folder holds no audio files")
            choice = files[int(self.rng.integers(len(files)))]
            self.source = _load_noise(str(choice), sample_rate)
            self.pos = int(self.rng.integers(len(self.source)))
        elif kind != "white":
            raise ConfigError(f"noise={kind!r} must be one of {NOISE_KINDS[1:]}")

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` noise samples, float64."""
        if self.kind == "white":
            return self.rng.standard_normal(n)
        if self.kind == "pink":
            out, self.zi = lfilter(_PINK_B, _PINK_A, self.rng.standard_normal(n), zi=self.zi)
            return out
        idx = (self.pos + np.arange(n)) % len(self.source)  # loop the noise recording
        self.pos = (self.pos + n) % len(self.source)
        return self.source[idx].astype(np.float64)


def _noise_power(make: Callable[[], NoiseSource], n: int) -> float:
    """Mean power of the first ``n`` samples a fresh source gives, read in fixed chunks."""
    src, total, left = make(), 0.0, n
    while left > 0:
        piece = src.take(min(left, _NOISE_CHUNK))
        total += float(np.einsum("i,i->", piece, piece))  # not BLAS: no thread pool per worker
        left -= piece.size
    return total / max(n, 1)


@dataclass(frozen=True)
class _Plan:
    """Pass-one result: which samples survive trimming, the gain, and the noise scale."""

    start: int
    end: int
    gain: float
    noise_scale: float


def _frame_stats(blocks: Iterable[np.ndarray], frame_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-frame sum of squares and peak (the last frame may be partial), and the sample count."""
    sums: list[np.ndarray] = []
    peaks: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.float32)
    n = 0
    for block in blocks:
        n += block.size
        buf = np.concatenate([carry, block]) if carry.size else block
        usable = (buf.size // frame_len) * frame_len
        if usable:
            frames = buf[:usable].reshape(-1, frame_len).astype(np.float64)
            sums.append(np.einsum("ij,ij->i", frames, frames))
            peaks.append(np.abs(frames).max(axis=1))
        carry = buf[usable:]
    if carry.size:
        c = carry.astype(np.float64)
        sums.append(np.array([np.einsum("i,i->", c, c)]))
        peaks.append(np.array([np.abs(c).max()]))
    if not sums:
        return np.zeros(0), np.zeros(0), 0
    return np.concatenate(sums), np.concatenate(peaks), n


def _plan(blocks: Iterable[np.ndarray], config: PrepareConfig, path: str, seed: int,
          files: list[Path]) -> _Plan:
    frame_len = max(1, round(_FRAME_S * config.sample_rate))
    sums, peaks, n = _frame_stats(blocks, frame_len)
    if n == 0:
        raise EmptyAudioError(path, "decodes to 0 samples")
    f0, f1 = 0, sums.size
    if config.trim_silence:
        lengths = np.full(sums.size, frame_len, dtype=np.float64)
        lengths[-1] = n - frame_len * (sums.size - 1)
        loud = np.flatnonzero(sums / lengths > 10 ** (config.trim_threshold_dbfs / 10))
        if not loud.size:
            raise SilentAudioError(path, f"nothing above the trim threshold of {config.trim_threshold_dbfs} dBFS")
        margin = int(np.ceil(config.trim_margin_s / _FRAME_S))
        f0, f1 = max(0, loud[0] - margin), min(sums.size, loud[-1] + 1 + margin)
    start, end = f0 * frame_len, min(n, f1 * frame_len)
    peak = float(peaks[f0:f1].max())
    power = float(sums[f0:f1].sum()) / (end - start)
    needs_level = config.normalize != "none" or config.noise != "none"
    if needs_level and peak < _SILENCE_PEAK:
        raise SilentAudioError(path, f"peak {20 * np.log10(max(peak, 1e-12)):.1f} dBFS: too quiet to normalise "
                                     "or to add noise at an SNR")
    gain = 1.0
    if config.normalize == "peak":
        gain = 10 ** (config.peak_target_dbfs / 20) / peak
    elif config.normalize == "rms":
        gain = 10 ** (config.rms_target_dbfs / 20) / np.sqrt(power)
    noise_scale = 0.0
    if config.noise != "none":
        signal_power = power * gain**2
        noise_power = _noise_power(lambda: NoiseSource(config.noise, seed, config.sample_rate, files), end - start)
        if noise_power <= 0:
            raise SilentAudioError(path, "the chosen noise recording is silent")
        noise_scale = float(np.sqrt(signal_power / (noise_power * 10 ** (config.snr_db / 10))))
    return _Plan(start, end, float(gain), noise_scale)


def _processed(blocks: Iterable[np.ndarray], plan: _Plan, noise: NoiseSource | None) -> Iterator[np.ndarray]:
    """Pass two: trim, gain, noise and clipping to [-1, 1], block by block."""
    pos = 0
    for block in blocks:
        lo, hi = max(plan.start, pos), min(plan.end, pos + block.size)
        pos += block.size
        if hi <= lo:
            continue
        y = block[lo - (pos - block.size): hi - (pos - block.size)]
        if plan.gain != 1.0:
            y = y * np.float32(plan.gain)
        if noise is not None:
            y = (y + plan.noise_scale * noise.take(y.size)).astype(np.float32)
        yield np.clip(y, -1.0, 1.0).astype(np.float32, copy=False)


class _AtomicWriter:
    """Writes blocks into a hidden ``.<name>.*.part`` file; ``commit`` renames it to the final name."""

    def __init__(self, path: Path, sample_rate: int, fmt: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.file = sf.SoundFile(tmp, "w", samplerate=sample_rate, channels=1, format=fmt.upper(), subtype="PCM_16")
        self.frames = 0

    def write(self, x: np.ndarray) -> None:
        self.file.write(x)
        self.frames += x.size

    def close(self) -> Path:
        self.file.close()
        os.chmod(self.tmp, 0o644)
        return self.tmp

    def commit(self) -> Path:
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def _clip_ranges(n: int, clip: int, hop: int, remainder: str) -> list[tuple[int, int]]:
    """Clip (start, end) sample ranges over ``n`` samples; ``end`` may pass ``n`` when padding."""
    ranges = []
    start = 0
    while start + clip <= n:
        ranges.append((start, start + clip))
        start += hop
    covered = ranges[-1][1] if ranges else 0
    if remainder == "pad" and covered < n:
        ranges.append((start, start + clip))
    return ranges


def _cut_clips(blocks: Iterable[np.ndarray], ranges: list[tuple[int, int]]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, clip)`` for each range, holding at most one clip's span of samples."""
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0
    k = 0
    for block in blocks:
        if k >= len(ranges):
            return  # the rest is a dropped remainder: do not buffer it
        buf = np.concatenate([buf, block])
        while k < len(ranges) and ranges[k][1] <= buf_start + buf.size:
            s, e = ranges[k]
            yield k, buf[s - buf_start: e - buf_start].copy()
            k += 1
            if k < len(ranges):
                drop = ranges[k][0] - buf_start
                buf, buf_start = buf[drop:], ranges[k][0]
    while k < len(ranges):  # the padded remainder
        s, e = ranges[k]
        clip = np.zeros(e - s, dtype=np.float32)
        part = buf[s - buf_start:]
        clip[: part.size] = part
        yield k, clip
        k += 1


def _record_path(done_dir: str, item_id: str) -> Path:
    return Path(done_dir) / f"{hashlib.sha256(item_id.encode()).hexdigest()[:24]}.json"


def _load_done(item: _Item, fingerprint: str) -> list[dict] | None:
    """The rows of a finished recording, or None when it must be (re)done."""
    rec_path = _record_path(item.done_dir, item.id)
    if not rec_path.exists():
        return None
    try:
        record = json.loads(rec_path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("fingerprint") != fingerprint or record.get("id") != item.id or record.get("src") != item.src:
        return None
    rows = record.get("rows") or []
    for row in rows:
        out = Path(item.out_root) / row["path"]
        if not out.exists():
            return None
        if record.get("in_place") and _file_sha256(out) != row.get("file_sha256"):
            return None  # killed between the record and the rename: the source is still the original
    return rows


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _measured_row(tmp: Path, rel: str, fmt: str, in_place: bool) -> dict:
    meta = measure_recording(tmp)
    meta["format"] = fmt  # measured on the temporary file, whose suffix is .part
    row = {"path": rel, **meta}
    if in_place:
        row["file_sha256"] = _file_sha256(tmp)  # tells a finished in-place rewrite from the untouched original
    return row


def _process(args: tuple[_Item, PrepareConfig, str, list[Path]]) -> list[dict] | tuple[str, str]:
    """Prepare one recording (worker entry point): its manifest rows, or ``(kind, reason)`` when skipped."""
    item, config, fingerprint, files = args
    try:
        return _process_item(item, config, fingerprint, files)
    except AudioError as exc:
        return (exc.kind, exc.reason)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        return ("unreadable", f"{type(exc).__name__}: {exc}")


def _process_item(item: _Item, config: PrepareConfig, fingerprint: str, files: list[Path]) -> list[dict]:
    audio_cfg = AudioConfig(sample_rate=config.sample_rate)
    held: list[np.ndarray] | None = None
    if not config.low_memory:
        blocks = list(stream_audio(item.src, audio_cfg, config.block_s))
        held = [np.concatenate(blocks)] if blocks else []

    def blocks() -> Iterator[np.ndarray]:
        return iter(held) if held is not None else stream_audio(item.src, audio_cfg, config.block_s)

    seed = file_seed(config.seed, item.id)
    plan = _plan(blocks(), config, item.src, seed, files)
    noise = NoiseSource(config.noise, seed, config.sample_rate, files) if config.noise != "none" else None
    out = _processed(blocks(), plan, noise)
    rate = config.sample_rate
    fmt = config.format
    rel = Path(item.rel_path)
    if config.in_place:
        fmt = rel.suffix.lower().lstrip(".")
        if fmt not in OUTPUT_FORMATS:
            raise AudioError(item.src, f"in-place rewriting handles {OUTPUT_FORMATS} files only, not .{fmt}")
    else:
        rel = rel.with_suffix(f".{fmt}")
    rows: list[dict] = []
    writers: list[_AtomicWriter] = []
    try:
        if config.clip_s is None:
            w = _AtomicWriter(Path(item.out_root) / rel, rate, fmt)
            writers.append(w)
            for y in out:
                w.write(y)
            rows.append(_measured_row(w.close(), rel.as_posix(), fmt, config.in_place) | {"id": item.id})
        else:
            clip, hop = round(config.clip_s * rate), round((config.clip_s - config.overlap_s) * rate)
            ranges = _clip_ranges(plan.end - plan.start, clip, hop, config.remainder)
            if not ranges:
                raise TooShortError(item.src, f"{(plan.end - plan.start) / rate:.2f} s is shorter than one "
                                              f"{config.clip_s} s clip (remainder=drop)")
            for k, y in _cut_clips(out, ranges):
                crel = rel.with_name(f"{rel.stem}__c{k:04d}{rel.suffix}")
                w = _AtomicWriter(Path(item.out_root) / crel, rate, fmt)
                writers.append(w)
                w.write(y)
                s, e = ranges[k]
                rows.append(_measured_row(w.close(), crel.as_posix(), fmt, config.in_place) | {
                    "id": f"{item.id}__c{k:04d}",
                    "clip_start_s": round((plan.start + s) / rate, 6),
                    "clip_end_s": round((plan.start + min(e, plan.end - plan.start)) / rate, 6),
                })
        carried = dict(item.carried)
        rows = [carried | {"parent_id": item.id} | r for r in rows]
        record = {"id": item.id, "src": item.src, "fingerprint": fingerprint, "in_place": config.in_place,
                  "rows": rows}
        if config.in_place:
            # Record first, then rename: a kill in between leaves a record whose byte count does not match
            # the (still original) file, so the rerun redoes it instead of trusting it.
            write_text_atomic(_record_path(item.done_dir, item.id), json.dumps(record))
            for w in writers:
                w.commit()
        else:
            for w in writers:
                w.commit()
            write_text_atomic(_record_path(item.done_dir, item.id), json.dumps(record))
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return rows


def _carried(row: pd.Series) -> tuple[tuple[str, Any], ...]:
    skip = {"id", "path", "root", "parent_id", "clip_start_s", "clip_end_s", *METADATA_COLUMNS}
    out = []
    for k, v in row.items():
        if k in skip:
            continue
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out.append((str(k), v))
    return tuple(out)


def _remove_stale_parts(out_dir: Path) -> int:
    """Delete ``.*.part`` temporaries a killed run left under ``out_dir``."""
    n = 0
    for p in out_dir.rglob(".*.part"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def _one_blas_thread() -> AbstractContextManager:
    """Limit BLAS to one thread while files are processed (inherited by forked workers), restored after.

    Each recording is already one process's job; OpenBLAS threads started by ``np.dot`` in the
    measurements only oversubscribe the cores: on 2 cores, 2 workers ran 2-4x slower without this.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: comes with scikit-learn
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def prepare(
    manifest: pd.DataFrame,
    out_dir: str | Path,
    config: PrepareConfig = PrepareConfig(),
    workers: int = 1,
    limit: int | None = None,
    progress: bool = False,
) -> PrepareReport:
    """Prepare every row of ``manifest`` (from ``read_manifest``) into ``out_dir``; resumable.

    Outputs mirror the rows' relative paths under ``out_dir`` (clips as ``<stem>__c0003.flac``), or in
    place under each row's own root when ``config.in_place``. Writes ``out_dir/manifest.csv`` (root =
    where the audio now lies, ``parent_id`` and for clips ``clip_start_s``/``clip_end_s`` in the parent's
    seconds), ``out_dir/skipped.csv`` (path, reason) and the run's config and versions.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    for col in ("id", "path", "root"):
        if col not in manifest.columns:
            raise ManifestError(f"manifest lacks column {col!r} (read it with audios.manifest.read_manifest)")
    rows_in = manifest.iloc[:limit] if limit else manifest
    roots = {Path(r).resolve() for r in rows_in["root"]}
    if not config.in_place and out_dir in roots:
        raise ConfigError(f"out_dir {out_dir} is the corpus root: outputs would overwrite the sources; "
                          "choose another folder, or ask for in_place explicitly")
    dup = rows_in["id"][rows_in["id"].duplicated()]
    if len(dup):
        raise ManifestError(f"manifest ids must be unique; {dup.iloc[0]!r} repeats")
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = _remove_stale_parts(out_dir)
    if stale:
        log.info("removed %d temporary file(s) left by an interrupted run", stale)
    fingerprint = config.fingerprint()
    files = noise_files(config.noise_dir) if config.noise == "folder" else []
    if config.noise == "folder" and not files:
        raise ConfigError(f"noise_dir={config.noise_dir!r} holds no audio files")
    write_run_info(out_dir, "prepare", {"prepare": config_to_dict(config), "workers": workers, "limit": limit,
                                        "n_inputs": len(rows_in)}, seed=config.seed)

    items: list[_Item] = []
    seen_out: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    for _, row in rows_in.iterrows():
        root = Path(row["root"]).resolve()
        src = root / row["path"]
        out_root = root if config.in_place else out_dir
        target = row["path"] if config.in_place else Path(row["path"]).with_suffix(f".{config.format}").as_posix()
        if target in seen_out:
            skipped.append((row["path"], f"output {target} would collide with {seen_out[target]}'s"))
            continue
        seen_out[target] = row["path"]
        items.append(_Item(str(row["id"]), str(src), str(row["path"]), str(out_root), str(out_dir / DONE_DIR),
                           _carried(row)))

    results: dict[str, list[dict]] = {}
    pending = []
    for item in items:
        rows = _load_done(item, fingerprint)
        if rows is None:
            pending.append(item)
        else:
            results[item.id] = rows
    n_resumed = len(results)
    log.info("prepare: %d recording(s), %d already done, %d to do", len(items), n_resumed, len(pending))
    with _one_blas_thread():
        outcomes = map_ordered(_process, [(it, config, fingerprint, files) for it in pending], workers=workers,
                               desc="prepare", progress=progress)
        for item, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, tuple):
                skipped.append((item.rel_path, f"{outcome[0]}: {outcome[1]}"))
                log.warning("skipped %s: %s: %s", item.src, *outcome)
            else:
                results[item.id] = outcome

    out_rows = []
    for item in items:
        for r in results.get(item.id, []):
            out_rows.append({k: v for k, v in r.items() if k != "file_sha256"} | {"root": item.out_root})
    table = _order_columns(pd.DataFrame(out_rows), clips=config.clip_s is not None)
    manifest_path = write_table(table, out_dir / "manifest.csv")
    order = {p: i for i, p in enumerate(rows_in["path"])}
    skipped.sort(key=lambda s: order.get(s[0], len(order)))
    write_table(pd.DataFrame(skipped, columns=["path", "reason"]), out_dir / "skipped.csv")
    duration = float(pd.to_numeric(rows_in.get("duration_s", pd.Series(dtype=float)), errors="coerce").sum())
    return PrepareReport(manifest_path, table, len(rows_in), n_resumed, skipped, duration,
                         time.perf_counter() - t0)


def _order_columns(table: pd.DataFrame, clips: bool) -> pd.DataFrame:
    lead = ["id", "path", "label", "generator", "speaker", "utterance", "subset", "parent_id"]
    if clips:
        lead += ["clip_start_s", "clip_end_s"]
    if table.empty:
        return pd.DataFrame(columns=[*lead, *METADATA_COLUMNS, "root"])
    known = [c for c in (*lead, *METADATA_COLUMNS) if c in table.columns]
    extra = [c for c in table.columns if c not in known and c != "root" and c not in COLUMN_ORDER]
    return table[known + extra + ["root"]]
