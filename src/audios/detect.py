"""Detection: score files, folders and long recordings with any detector, window by window.

A detector turns mono float32 signals at its sample rate into scores on the ASVspoof convention
(higher = more bona fide). For calibrated detectors the score is a log-likelihood ratio and
``p_fake = 1 - sigmoid(score)`` is the posterior of "machine-generated" at a prior of 0.5.

Long recordings are cut into windows (length and hop from the detector, overridable). The file-level
score aggregates the window scores (``mean`` of window LLRs by default: robust for fully fake or fully
real files; ``min`` takes the most fake-looking window, which is more sensitive to partly spoofed
recordings at the cost of more false alarms). Windows whose score falls below the threshold are merged
into ``flagged_regions``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from audios.audio import AudioConfig, audio_info, is_audio_path, resample, stream_audio
from audios.errors import AudioError, ConfigError, EmptyAudioError, SilentAudioError, TooLongError, TooShortError

log = logging.getLogger(__name__)
BACKENDS = ("onnx", "torch")


def expit(x: Any) -> Any:
    """The logistic sigmoid, overflow-safe (kept here so detection needs no scipy)."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))

AGGREGATES = ("mean", "min", "median")
BUNDLED_DIR = Path(__file__).resolve().parent / "data" / "default_detector"


@dataclass(frozen=True)
class DetectConfig:
    """How a recording is windowed and how window scores become one verdict."""

    window_s: float | None = None  # None: the detector's own window
    hop_s: float | None = None  # None: the detector's own hop
    aggregate: str = "mean"
    max_duration_s: float = 3 * 3600.0
    batch_windows: int = 16
    # A ``audios.localize.SegmentConfig`` adds ``segments`` and ``segment_regions`` to each result; None: not.
    segments: Any = None

    def __post_init__(self) -> None:
        if self.segments is not None:
            from audios.localize import SegmentConfig

            if not isinstance(self.segments, SegmentConfig):
                raise ConfigError(f"segments must be a SegmentConfig or None, got {type(self.segments).__name__}")
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate={self.aggregate!r} must be one of {AGGREGATES}")
        if self.window_s is not None and self.window_s <= 0:
            raise ConfigError(f"window_s={self.window_s} must be positive")
        if self.hop_s is not None and self.hop_s <= 0:
            raise ConfigError(f"hop_s={self.hop_s} must be positive")
        if self.batch_windows < 1:
            raise ConfigError("batch_windows must be >= 1")


class Detector(Protocol):
    """Anything that scores signals; see the module docstring for the score convention."""

    name: str
    sample_rate: int
    window_s: float
    hop_s: float
    threshold: float

    def score_signals(self, signals: list[np.ndarray]) -> np.ndarray: ...

    def info(self) -> dict[str, Any]: ...


def _size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _card_summary(folder: Path) -> str:
    card = folder / "MODEL_CARD.md"
    if not card.exists():
        return ""
    lines = [ln.strip() for ln in card.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return " ".join(lines[:3])[:500]


class ClassicDetectorAdapter:
    """A classic back-end run (``model.joblib``): calibrated LLR scores."""

    kind = "classic"

    def __init__(self, path: str | Path, window_s: float = 4.0, hop_s: float = 2.0, name: str | None = None) -> None:
        from audios.classic.detector import ClassicDetector

        self._inner = ClassicDetector.load(path)
        self.path = self._inner.path
        self.name = name or f"classic-{self._inner.model}-{self._inner.extractor.name}"
        self.sample_rate = self._inner.audio_config.sample_rate
        self.window_s = window_s
        self.hop_s = hop_s
        self.threshold = self._inner.threshold_llr

    def score_signals(self, signals: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self._inner.calibrator.transform(self._inner.raw_scores(signals)), dtype=np.float64)

    def info(self) -> dict[str, Any]:
        est = self._inner.estimator
        n_params = None
        if hasattr(est, "coef_"):
            n_params = int(np.size(est.coef_) + np.size(getattr(est, "intercept_", 0)))
        elif hasattr(est, "steps") and hasattr(est.steps[-1][1], "coef_"):
            last = est.steps[-1][1]
            n_params = int(np.size(last.coef_) + np.size(getattr(last, "intercept_", 0)))
        return {"name": self.name, "kind": self.kind, "version": _version(), "threshold": self.threshold,
                "window_s": self.window_s, "hop_s": self.hop_s, "sample_rate": self.sample_rate,
                "calibrated": True, "size_bytes": _size_bytes(self.path), "n_params": n_params,
                "card": _card_summary(self.path.parent), "path": str(self.path)}


class PortableDetectorAdapter:
    """A portable detector folder (``audios.portable``): raw audio -> calibrated LLR in one graph.

    ``backend="onnx"`` runs ``model.onnx`` through ONNX Runtime (no PyTorch needed: the light install);
    ``backend="torch"`` rebuilds the same module in PyTorch from ``weights.npz``. Both give the same scores to
    about 1e-5.
    """

    kind = "portable"

    def __init__(self, path: str | Path, backend: str = "onnx", name: str | None = None) -> None:
        from audios.portable import read_detector_json

        if backend not in BACKENDS:
            raise ConfigError(f"backend={backend!r} must be one of {BACKENDS}")
        self.path = Path(path)
        self.backend = backend
        self._info = read_detector_json(self.path)
        self.name = name or self._info.get("name", self.path.name)
        self.sample_rate = int(self._info["sample_rate"])
        self.window_s = float(self._info["window_s"])
        self.hop_s = float(self._info["hop_s"])
        self.threshold = float(self._info["threshold"])
        if backend == "onnx":
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise ConfigError("the ONNX backend needs onnxruntime: pip install onnxruntime") from exc
            options = ort.SessionOptions()
            options.log_severity_level = 3
            threads = os.environ.get("AUDIOS_ONNX_THREADS")
            if threads:
                options.intra_op_num_threads = int(threads)
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
            self._session = ort.InferenceSession(str(self.path / "model.onnx"), options, providers=providers)
        else:
            from audios.portable import load_torch_net

            self._net = load_torch_net(self.path)

    def score_signals(self, signals: list[np.ndarray]) -> np.ndarray:
        out = np.empty(len(signals), dtype=np.float64)
        by_length: dict[int, list[int]] = {}
        for i, s in enumerate(signals):
            by_length.setdefault(len(s), []).append(i)
        for idx in by_length.values():  # one run per window length (all full windows share one)
            x = np.stack([np.asarray(signals[i], dtype=np.float32) for i in idx])
            out[idx] = self._run(x)
        return out

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            return np.asarray(self._session.run(["llr"], {"waveform": x})[0], dtype=np.float64)
        import torch

        with torch.inference_mode():
            return self._net(torch.from_numpy(x)).double().numpy()

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "backend": self.backend, "version": _version(),
                "threshold": self.threshold, "window_s": self.window_s, "hop_s": self.hop_s,
                "sample_rate": self.sample_rate, "calibrated": True,
                "size_bytes": (self.path / "model.onnx").stat().st_size,
                "n_params": len(self._info.get("feature_names", [])) + 1,
                "card": _card_summary(self.path), "path": str(self.path)}


class AasistDetectorAdapter:
    """A released AASIST/AASIST-L checkpoint. Its score is the logit difference (bona fide - spoof).

    The released models were trained on ASVspoof 2019 LA and are not calibrated for other data; threshold 0
    (the arg-max decision) is used, so ``p_fake`` is the network's own softmax, not a calibrated posterior.
    """

    kind = "aasist"

    def __init__(self, path: str | Path, variant: str = "aasist") -> None:
        import torch

        from audios.models.aasist import AASIST_N_SAMPLES, load_released_checkpoint

        self.path = Path(path)
        self._torch = torch
        self._model = load_released_checkpoint(self.path)
        self.name = f"{variant}-released"
        self.sample_rate = 16000
        # 64600 samples ≈ 4.04 s at 16 kHz, the input length the released models were trained on.
        self._n_samples = AASIST_N_SAMPLES
        self.window_s = AASIST_N_SAMPLES / 16000
        self.hop_s = self.window_s / 2
        self.threshold = 0.0

    def score_signals(self, signals: list[np.ndarray]) -> np.ndarray:
        from audios.models.aasist import prepare_waveform

        x = np.stack([prepare_waveform(s, self._n_samples) for s in signals])
        with self._torch.inference_mode():
            _, logits = self._model(self._torch.from_numpy(x))
        return (logits[:, 1] - logits[:, 0]).double().numpy()

    def info(self) -> dict[str, Any]:
        n_params = sum(p.numel() for p in self._model.parameters())
        return {"name": self.name, "kind": self.kind, "version": _version(), "threshold": self.threshold,
                "window_s": self.window_s, "hop_s": self.hop_s, "sample_rate": self.sample_rate,
                "calibrated": False, "size_bytes": _size_bytes(self.path), "n_params": int(n_params),
                "card": "Released AASIST weights (Jung et al. 2022), trained by the authors on ASVspoof 2019 LA; "
                        "uncalibrated on other data.", "path": str(self.path)}


class TrainedDetectorAdapter:
    """A deep model exported by ``audios train`` (``best.pt``): scores are logit differences (bona fide - spoof),
    thresholded at the validation EER threshold the trainer stored; not calibrated."""

    kind = "trained"

    def __init__(self, path: str | Path) -> None:
        import torch

        from audios.train.trainer import load_trained_model

        self.path = Path(path)
        self._torch = torch
        self._trained = load_trained_model(self.path)
        self.name = f"trained-{self._trained.name}"
        self.sample_rate = self._trained.sample_rate
        self.window_s = self._trained.clip_samples / self.sample_rate
        self.hop_s = self.window_s / 2
        self.threshold = self._trained.threshold

    def score_signals(self, signals: list[np.ndarray]) -> np.ndarray:
        from audios.train.trainer import eval_windows, logits_of, scores_of

        n = self._trained.clip_samples
        x = np.concatenate([eval_windows(np.asarray(s, dtype=np.float32), n, 1) for s in signals])
        with self._torch.inference_mode():
            return scores_of(logits_of(self._trained.model(self._torch.from_numpy(x)))).double().numpy()

    def info(self) -> dict[str, Any]:
        n_params = sum(p.numel() for p in self._trained.model.parameters())
        return {"name": self.name, "kind": self.kind, "version": _version(), "threshold": self.threshold,
                "window_s": self.window_s, "hop_s": self.hop_s, "sample_rate": self.sample_rate,
                "calibrated": False, "size_bytes": _size_bytes(self.path), "n_params": int(n_params),
                "card": _card_summary(self.path.parent) or f"{self._trained.name} trained by audios train "
                        f"(val EER {self._trained.val_eer:.3f})", "path": str(self.path)}


def _version() -> str:
    from audios import __version__

    return __version__


def load_detector(spec: str | None = None, backend: str = "onnx") -> Detector:
    """Build a detector from a spec.

    - ``None`` or ``"default"``: the bundled default detector shipped in the package (a portable detector:
      ONNX Runtime by default, ``backend="torch"`` for the same graph in PyTorch);
    - a portable detector folder (``detector.json`` + ``model.onnx``);
    - ``aasist=PATH`` / ``aasist-l=PATH``: a released AASIST checkpoint;
    - a run folder of ``audios train-classic`` or its ``model.joblib``;
    - a run folder of ``audios train`` or its ``best.pt``;
    - a fusion folder of ``audios fuse`` (``fusion.json``).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} must be one of {BACKENDS}")
    if spec in (None, "", "default"):
        if not (BUNDLED_DIR / "detector.json").exists():
            raise ConfigError(f"the bundled default detector is missing from {BUNDLED_DIR}; pass --model")
        return PortableDetectorAdapter(BUNDLED_DIR, backend=backend, name="audios-default")
    if "=" in spec:
        kind, path = spec.split("=", 1)
        if kind in ("aasist", "aasist-l"):
            return AasistDetectorAdapter(path, variant=kind)
        raise ConfigError(f"unknown model kind {kind!r} in {spec!r}; known: aasist=PATH, aasist-l=PATH")
    path = Path(spec)
    if path.is_dir() and (path / "detector.json").exists():
        return PortableDetectorAdapter(path, backend=backend)
    if path.is_dir() and (path / "fusion.json").exists():
        from audios.fusion import FusedDetector

        return FusedDetector(path)
    if path.is_dir() and (path / "model.joblib").exists() or path.suffix == ".joblib":
        return ClassicDetectorAdapter(path)
    if path.is_dir() and (path / "best.pt").exists():
        return TrainedDetectorAdapter(path / "best.pt")
    if path.suffix == ".pt" and path.is_file():
        return TrainedDetectorAdapter(path)
    if not path.exists():
        raise ConfigError(f"--model {spec!r}: no such file or folder (give a run folder, model.joblib, "
                          "aasist=PATH or nothing for the bundled detector)")
    raise ConfigError(f"--model {spec!r}: not a detector this version can load (expected model.joblib or aasist=PATH)")


def _windows(n: int, win: int, hop: int) -> list[tuple[int, int]]:
    """Window bounds covering ``n`` samples: full windows every ``hop``, plus a last one ending at ``n``."""
    if n <= win:
        return [(0, n)]
    starts = list(range(0, n - win + 1, hop))
    if starts[-1] + win < n:
        starts.append(n - win)
    return [(s, s + win) for s in starts]


def _merge_flagged(windows: list[dict[str, float]], flagged: list[bool]) -> list[dict[str, float]]:
    regions: list[dict[str, float]] = []
    for w, f in zip(windows, flagged, strict=True):
        if not f:
            continue
        if regions and w["start_s"] <= regions[-1]["end_s"]:
            regions[-1]["end_s"] = max(regions[-1]["end_s"], w["end_s"])
        else:
            regions.append({"start_s": w["start_s"], "end_s": w["end_s"]})
    return regions


def _aggregate(scores: np.ndarray, weights: np.ndarray, how: str) -> float:
    if how == "min":
        return float(scores.min())
    if how == "median":
        return float(np.median(scores))
    return float(np.average(scores, weights=weights))


def _score_windows(detector: Detector, chunks: Iterator[tuple[float, np.ndarray]], config: DetectConfig,
                   ) -> tuple[list[dict[str, float]], np.ndarray, np.ndarray]:
    bounds: list[dict[str, float]] = []
    scores: list[float] = []
    lengths: list[int] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            scores.extend(np.asarray(detector.score_signals(batch), dtype=np.float64).tolist())
            batch.clear()

    sr = detector.sample_rate
    for start_s, x in chunks:
        bounds.append({"start_s": round(start_s, 3), "end_s": round(start_s + len(x) / sr, 3)})
        lengths.append(len(x))
        batch.append(x)
        if len(batch) >= config.batch_windows:
            flush()
    flush()
    return bounds, np.asarray(scores), np.asarray(lengths, dtype=np.float64)


def _result(name: str, detector: Detector, bounds: list[dict[str, float]], scores: np.ndarray,
            lengths: np.ndarray, duration_s: float, t0: float, config: DetectConfig) -> dict[str, Any]:
    if not np.isfinite(scores).all():
        raise AudioError(name, "the detector produced a non-finite score")
    file_score = _aggregate(scores, lengths, config.aggregate)
    p_window = 1.0 - expit(scores)
    windows = [{**b, "p_fake": round(float(p), 6)} for b, p in zip(bounds, p_window, strict=True)]
    flagged = [bool(s < detector.threshold) for s in scores]
    return {
        "path": name,
        "p_fake": float(1.0 - expit(file_score)),
        "decision": "fake" if file_score < detector.threshold else "real",
        "score": file_score,
        "threshold": float(detector.threshold),
        "duration_s": round(duration_s, 3),
        "latency_ms": round((time.perf_counter() - t0) * 1000, 2),
        "windows": windows,
        "flagged_regions": _merge_flagged(windows, flagged),
    }


def _window_sizes(detector: Detector, config: DetectConfig) -> tuple[int, int]:
    sr = detector.sample_rate
    win = max(1, int(round((config.window_s or detector.window_s) * sr)))
    hop = max(1, int(round((config.hop_s or detector.hop_s) * sr)))
    return win, min(hop, win)  # a hop longer than the window would skip audio


def _check_signal(name: str, x: np.ndarray, sr: int) -> None:
    if x.size == 0:
        raise EmptyAudioError(name, "decodes to 0 samples")
    if not np.isfinite(x).all():
        from audios.errors import NonFiniteError

        raise NonFiniteError(name, "contains NaN or infinite samples")
    if x.size < 0.05 * sr:
        raise TooShortError(name, f"{x.size / sr * 1000:.1f} ms is too short to judge (minimum 50 ms)")
    if float(np.max(np.abs(x))) < 1e-4:
        raise SilentAudioError(name, "all samples are silent")


def detect_signal(detector: Detector, x: np.ndarray, sample_rate: int, name: str = "<signal>",
                  config: DetectConfig = DetectConfig()) -> dict[str, Any]:
    """Score an in-memory mono signal; returns the result dict described in the module docstring."""
    t0 = time.perf_counter()
    x = resample(np.asarray(x, dtype=np.float32), sample_rate, detector.sample_rate)
    _check_signal(name, x, detector.sample_rate)
    win, hop = _window_sizes(detector, config)
    sr = detector.sample_rate
    chunks = ((s / sr, x[s:e]) for s, e in _windows(len(x), win, hop))
    bounds, scores, lengths = _score_windows(detector, chunks, config)
    result = _result(name, detector, bounds, scores, lengths, len(x) / sr, t0, config)
    if config.segments is not None:
        from audios.localize import score_segments_signal

        result.update(score_segments_signal(detector, x, config.segments, name).as_result())
    return result


def _stream_windows(path: Path, sr: int, win: int, hop: int, audio_config: AudioConfig
                    ) -> Iterator[tuple[float, np.ndarray]]:
    """Windows of a file read block by block: memory is about one window plus one block, whatever the length.

    Same bounds as ``_windows``: full windows every ``hop``, then one window ending at the file's end.
    """
    buf = np.zeros(0, dtype=np.float32)  # samples from `offset` on
    last = np.zeros(0, dtype=np.float32)  # the most recent `win` samples of the stream
    offset = 0
    emitted_end = 0
    total = 0
    for block in stream_audio(path, audio_config, block_s=max(10.0, 2 * win / sr)):
        total += len(block)
        buf = np.concatenate([buf, block])
        last = np.concatenate([last, block])[-win:]
        while len(buf) >= win:
            yield offset / sr, buf[:win]
            emitted_end = offset + win
            buf = buf[hop:]
            offset += hop
    if total and emitted_end < total:
        yield max(0, total - win) / sr, last


def detect_path(detector: Detector, path: str | Path, config: DetectConfig = DetectConfig()) -> dict[str, Any]:
    """Score one file, streamed window by window; raises a typed AudioError for unusable audio."""
    t0 = time.perf_counter()
    path = Path(path)
    info = audio_info(path)
    if info.duration_s > config.max_duration_s:
        raise TooLongError(path, f"{info.duration_s:.0f} s is longer than the {config.max_duration_s:.0f} s limit")
    sr = detector.sample_rate
    win, hop = _window_sizes(detector, config)
    audio_config = AudioConfig(sample_rate=sr, max_duration_s=config.max_duration_s)
    peak = 0.0
    n = 0

    def checked() -> Iterator[tuple[float, np.ndarray]]:
        nonlocal peak, n
        for start_s, x in _stream_windows(path, sr, win, hop, audio_config):
            peak = max(peak, float(np.max(np.abs(x))) if x.size else 0.0)
            n = max(n, int(round(start_s * sr)) + len(x))
            # Headers can understate the length (browser WebM says 0 s): enforce the cap on decoded audio too.
            if n > config.max_duration_s * sr:
                raise TooLongError(path, f"decodes to more than the {config.max_duration_s:.0f} s limit")
            yield start_s, x

    bounds, scores, lengths = _score_windows(detector, checked(), config)
    if n == 0:
        raise EmptyAudioError(path, "decodes to 0 samples")
    if n < 0.05 * sr:
        raise TooShortError(path, f"{n / sr * 1000:.1f} ms is too short to judge (minimum 50 ms)")
    if peak < 1e-4:
        raise SilentAudioError(path, "all samples are silent")
    result = _result(str(path), detector, bounds, scores, lengths, n / sr, t0, config)
    if config.segments is not None:
        from audios.localize import score_segments_path

        # A second streamed pass: segments use their own (shorter) windows.
        result.update(score_segments_path(detector, path, config.segments, config.max_duration_s).as_result())
    return result


def expand_paths(inputs: list[str]) -> list[Path]:
    """Files, folders (recursive, audio files only, sorted) and glob patterns, in the order given."""
    import glob

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
                dirnames.sort()
                out.extend(Path(dirpath) / f for f in sorted(filenames) if is_audio_path(f))
        elif p.exists():
            out.append(p)
        elif any(ch in item for ch in "*?["):
            out.extend(Path(m) for m in sorted(glob.glob(item, recursive=True)) if is_audio_path(m))
        else:
            out.append(p)  # reported as unreadable by detect_path
    return out
