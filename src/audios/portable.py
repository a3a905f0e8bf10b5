"""The portable detector: one graph from raw 16 kHz audio to a calibrated score, for PyTorch, ONNX Runtime and the web.

The bundled default detector has to run where PyTorch is not installed (``pip install audios``, a web page, a
browser extension). So its whole front end is written with operations every runtime has (convolution, matrix
products, element-wise maths, a cumulative sum) and exported, front end included, as one ONNX graph:

    waveform (batch, samples) float32 at 16 kHz  ->  llr (batch,) float32, > 0 bona fide, < 0 spoof

Front end (``PortableFrontEnd``), per window:

* Short-time power spectrum with the same framing as ``audios.features.frames.power_spectrogram``: signal
  zero-padded by n_fft/2 at both ends, periodic Hann window of ``win_length`` centred in ``n_fft``, hop
  ``hop_length``; the DFT is a strided convolution with fixed cosine/sine kernels (no STFT operator needed).
* Frames with no energy (total power <= 1e-12, e.g. digital silence) are left out of every statistic.
* Per frame: spectral centroid, bandwidth (2nd moment about the centroid), flatness (geometric / arithmetic mean
  of the power), 85 % roll-off frequency, Shannon entropy (bits) of the mel power distribution, zero-crossing
  rate; 13 MFCCs (Slaney mel, log, orthonormal DCT-II), their regression deltas (t-2..t+2, edges repeated) and
  20 LFCCs (linear-frequency triangular filters, log, DCT) — the LFCC front end of the ASVspoof baselines.
* The window's feature vector is the mean and the standard deviation over its active frames of each of those:
  2 x (6 + 13 + 13 + 20) = 104 values, of which ``PortableConfig.groups`` picks what the graph outputs (the
  bundled detector: the 26 MFCC means and stds, the group that did best on validation).

Back end (``PortableDetectorNet``): standardisation, a linear score (a logistic regression fitted by
``audios train-classic`` on these features) and the affine calibration to a log-likelihood ratio, folded into the
graph. Scores and thresholds mean the same as for every other detector (``audios.detect``).

Files of a portable detector folder: ``model.onnx`` (the graph), ``weights.npz`` (the head's tensors; with the
front-end settings in ``detector.json`` they rebuild the PyTorch module without ONNX), ``detector.json`` (rate,
windows, threshold, feature names, provenance).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from audios.errors import ConfigError

SILENT_FRAME_POWER = 1e-12
LOG_FLOOR = 1e-10
DELTA_WIDTH = 2
HEAD_KEYS = ("mean", "weight", "bias")
FEATURE_GROUPS = ("measures", "mfcc", "dmfcc", "lfcc")
FRAME_MEASURES = ("centroid", "bandwidth", "flatness", "rolloff", "entropy", "zcr")


@dataclass(frozen=True)
class PortableConfig:
    """Analysis settings of the portable front end (samples at ``sample_rate``)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    n_mfcc: int = 13
    n_lfcc_filters: int = 20
    n_lfcc: int = 20
    rolloff_percent: float = 0.85
    # Which summaries the graph outputs (all are computed): measures (centroid, bandwidth, flatness, roll-off,
    # entropy, zcr), mfcc, dmfcc (MFCC deltas), lfcc. The bundled detector keeps only mfcc, chosen on validation.
    groups: tuple[str, ...] = FEATURE_GROUPS

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        unknown = [g for g in self.groups if g not in FEATURE_GROUPS]
        if unknown or not self.groups or len(set(self.groups)) != len(self.groups):
            raise ConfigError(f"PortableConfig.groups={list(self.groups)}: give distinct names from {FEATURE_GROUPS}")
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "n_mfcc", "n_lfcc_filters",
                     "n_lfcc"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"PortableConfig.{name}={getattr(self, name)} must be positive")
        if self.win_length > self.n_fft:
            raise ConfigError(f"PortableConfig.win_length={self.win_length} exceeds n_fft={self.n_fft}")
        if self.n_mfcc > self.n_mels or self.n_lfcc > self.n_lfcc_filters:
            raise ConfigError("PortableConfig: more cepstral coefficients than filters")
        if not 0 < self.rolloff_percent < 1:
            raise ConfigError(f"PortableConfig.rolloff_percent={self.rolloff_percent} must be in (0, 1)")

    @property
    def all_feature_names(self) -> tuple[str, ...]:
        """Every summary the front end computes, in its internal order (all groups)."""
        per_frame = [*FRAME_MEASURES, *(f"mfcc_{i}" for i in range(self.n_mfcc)),
                     *(f"dmfcc_{i}" for i in range(self.n_mfcc)), *(f"lfcc_{i}" for i in range(self.n_lfcc))]
        return tuple(f"{n}_mean" for n in per_frame) + tuple(f"{n}_std" for n in per_frame)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The summaries the graph outputs: those of ``groups``, in the internal order."""
        return tuple(n for n in self.all_feature_names if feature_group(n) in self.groups)


def feature_group(name: str) -> str:
    head = name.split("_")[0]
    return head if head in ("mfcc", "dmfcc", "lfcc") else "measures"


# --- fixed matrices (numpy, so the formulas are testable without torch) ------------------------------------------

def dft_kernels(n_fft: int, win_length: int) -> np.ndarray:
    """(2 * (n_fft//2 + 1), n_fft): windowed cosine rows then windowed (negative) sine rows."""
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left:left + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    angle = 2 * np.pi * k * n / n_fft
    return np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((m - 15.0) * (math.log(6.4) / 27.0)), m * (200.0 / 3))


def triangular_filters(edges_hz: np.ndarray, sample_rate: int, n_fft: int) -> np.ndarray:
    """Triangles from consecutive edge triples over the rfft bins: (len(edges) - 2, n_fft // 2 + 1)."""
    bins_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lo, centre, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    return np.maximum(0.0, np.minimum((bins_hz - lo) / (centre - lo), (hi - bins_hz) / (hi - centre)))


def slaney_mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Mel filters, 0 Hz to Nyquist, each scaled to unit area (Slaney normalisation)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    return triangular_filters(edges, sample_rate, n_fft) * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II as a (n_in, n_out) matrix: ``x @ D`` = scipy.fft.dct(x, norm='ortho')[..., :n_out]."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    d = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    d[:, 0] /= math.sqrt(2.0)
    return d


# --- the PyTorch modules ------------------------------------------------------------------------------------------

def _torch():
    try:
        import torch
    except ImportError as exc:  # the light install has no torch: say what to install
        raise ConfigError("the PyTorch path of the portable detector needs torch: pip install 'audios[train]' "
                          "(the light install runs the same graph through ONNX Runtime)") from exc
    return torch


def build_frontend(config: PortableConfig = PortableConfig()) -> Any:
    """The front end as an ``nn.Module``: (batch, samples) float32 -> (batch, len(feature_names)) float32."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional
    c = config

    class PortableFrontEnd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            n_bins = c.n_fft // 2 + 1
            f32 = torch.float32
            self.register_buffer("dft", torch.tensor(dft_kernels(c.n_fft, c.win_length), dtype=f32)[:, None, :])
            self.register_buffer("freqs", torch.tensor(np.linspace(0, c.sample_rate / 2, n_bins), dtype=f32))
            self.register_buffer("mel", torch.tensor(slaney_mel_filters(c.sample_rate, c.n_fft, c.n_mels).T,
                                                     dtype=f32))
            lin = triangular_filters(np.linspace(0.0, c.sample_rate / 2, c.n_lfcc_filters + 2), c.sample_rate, c.n_fft)
            self.register_buffer("lin", torch.tensor(lin.T, dtype=f32))
            self.register_buffer("dct_mel", torch.tensor(dct_matrix(c.n_mels, c.n_mfcc), dtype=f32))
            self.register_buffer("dct_lin", torch.tensor(dct_matrix(c.n_lfcc_filters, c.n_lfcc), dtype=f32))
            self.register_buffer("zcr_kernel", torch.full((1, 1, c.n_fft), 1.0 / c.n_fft, dtype=f32))
            w = np.zeros((1, 1, 2 * DELTA_WIDTH + 1))
            w[0, 0] = np.arange(-DELTA_WIDTH, DELTA_WIDTH + 1) / (2 * sum(n * n for n in range(1, DELTA_WIDTH + 1)))
            self.register_buffer("delta_kernel", torch.tensor(w, dtype=f32))
            keep = [i for i, n in enumerate(c.all_feature_names) if feature_group(n) in c.groups]
            self.register_buffer("keep", torch.tensor(keep, dtype=torch.long))
            self.select = len(keep) < len(c.all_feature_names)

        def forward(self, waveform: torch.Tensor) -> torch.Tensor:
            pad = c.n_fft // 2
            x = F.pad(waveform[:, None, :], (pad, pad))  # (B, 1, T + n_fft)
            spec = F.conv1d(x, self.dft, stride=c.hop_length)  # (B, 2K, frames)
            re, im = torch.chunk(spec, 2, dim=1)
            power = (re * re + im * im).transpose(1, 2)  # (B, frames, K)
            active = (power.sum(-1) > SILENT_FRAME_POWER).to(power.dtype)  # (B, frames)
            n_active = active.sum(1).clamp(min=1.0)

            mag = torch.sqrt(power)
            mag_sum = mag.sum(-1).clamp(min=1e-20)
            centroid = (mag * self.freqs).sum(-1) / mag_sum
            spread = (self.freqs[None, None, :] - centroid[..., None]) ** 2
            bandwidth = torch.sqrt((mag * spread).sum(-1) / mag_sum)
            floored = power.clamp(min=LOG_FLOOR)
            flatness = torch.exp(torch.log(floored).mean(-1)) / floored.mean(-1)
            cum = torch.cumsum(mag, dim=-1)
            below = (cum < c.rolloff_percent * cum[..., -1:]).to(power.dtype).sum(-1)
            rolloff = below * (c.sample_rate / c.n_fft)
            mel = power @ self.mel
            p = mel / mel.sum(-1, keepdim=True).clamp(min=1e-30)
            entropy = -(p * torch.log2(p.clamp(min=1e-30))).sum(-1)
            # Zero-crossing rate of the raw signal, framed like the spectrum (sign changes / n_fft).
            positive = (x >= 0).to(power.dtype)
            crossings = torch.abs(positive[..., 1:] - positive[..., :-1])
            crossings = F.pad(crossings, (1, 0))
            zcr = F.conv1d(crossings, self.zcr_kernel, stride=c.hop_length)[:, 0, :]
            frames = power.shape[1]
            zcr = zcr[:, :frames]

            mfcc = torch.log(mel + LOG_FLOOR) @ self.dct_mel  # (B, frames, n_mfcc)
            lfcc = torch.log(power @ self.lin + LOG_FLOOR) @ self.dct_lin
            # Deltas per coefficient: depthwise conv over frames with edge padding.
            m = mfcc.transpose(1, 2).reshape(-1, 1, frames)  # (B * n_mfcc, 1, frames)
            m = F.pad(m, (DELTA_WIDTH, DELTA_WIDTH), mode="replicate")
            dmfcc = F.conv1d(m, self.delta_kernel).reshape(-1, c.n_mfcc, frames).transpose(1, 2)

            per_frame = torch.cat([torch.stack([centroid, bandwidth, flatness, rolloff, entropy, zcr], dim=-1),
                                   mfcc, dmfcc, lfcc], dim=-1)  # (B, frames, D)
            weight = active[..., None]
            mean = (per_frame * weight).sum(1) / n_active[:, None]
            var = (((per_frame - mean[:, None, :]) ** 2) * weight).sum(1) / n_active[:, None]
            out = torch.cat([mean, torch.sqrt(var)], dim=-1)
            return out[:, self.keep] if self.select else out

    return PortableFrontEnd().eval()


def build_detector_net(config: PortableConfig, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                       intercept: float, slope: float, offset: float) -> Any:
    """Front end + standardisation + linear score + calibration: (batch, samples) -> (batch,) LLR."""
    torch = _torch()
    nn = torch.nn
    d = len(config.feature_names)
    for name, v in (("mean", mean), ("scale", scale), ("coef", coef)):
        if np.shape(v) != (d,):
            raise ConfigError(f"portable detector: {name} has shape {np.shape(v)}, expected ({d},)")

    class PortableDetectorNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frontend = build_frontend(config)
            f32 = torch.float32
            # llr = slope * (coef . (f - mean) / scale + intercept) + offset. The mean is subtracted first, not
            # folded into the bias: features such as the centroid are in the thousands, and folding would cancel
            # two large float32 numbers.
            w = np.asarray(coef, dtype=np.float64) / np.asarray(scale, dtype=np.float64)
            self.register_buffer("mean", torch.tensor(np.asarray(mean, dtype=np.float64), dtype=f32))
            self.register_buffer("weight", torch.tensor(slope * w, dtype=f32))
            self.register_buffer("bias", torch.tensor(slope * float(intercept) + offset, dtype=f32))

        def forward(self, waveform: torch.Tensor) -> torch.Tensor:
            return (self.frontend(waveform) - self.mean) @ self.weight + self.bias

    return PortableDetectorNet().eval()


# --- the feature extractor (``audios features -e portable``) -------------------------------------------------------

class PortableExtractor:
    """The portable front end as a feature extractor: one vector per recording (needs torch)."""

    name: ClassVar[str] = "portable"
    kind: ClassVar[str] = "vector"
    version: ClassVar[int] = 1
    Config = PortableConfig

    def __init__(self, config: PortableConfig = PortableConfig()) -> None:
        self.config = config
        self._net = build_frontend(config)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.config.feature_names

    def extract(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        from audios.features.base import check_batch

        torch = _torch()
        out = []
        with torch.inference_mode():
            for x in check_batch(batch):
                f = self._net(torch.as_tensor(np.asarray(x, dtype=np.float32))[None])[0]
                out.append(f.double().numpy())
        return out


# --- building, saving and loading a detector folder ----------------------------------------------------------------

@dataclass(frozen=True)
class PortableHead:
    """The back end of a portable detector, in the units of the front end's features."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    slope: float
    offset: float
    threshold_llr: float


def head_from_classic(model_path: str | Path) -> tuple[PortableConfig, PortableHead]:
    """Read a ``train-classic`` logistic-regression run on ``portable`` features into a ``PortableHead``."""
    from audios.classic.detector import ClassicDetector

    det = ClassicDetector.load(model_path)
    if det.extractor.name != "portable":
        raise ConfigError(f"{model_path}: trained on {det.extractor.name!r} features; the portable detector needs "
                          "a model trained on `portable` features")
    est = det.estimator
    steps = dict(getattr(est, "steps", []))
    scaler, clf = steps.get("scaler"), steps.get("clf")
    if scaler is None or clf is None or not hasattr(clf, "coef_") or np.shape(clf.coef_)[0] != 1:
        raise ConfigError(f"{model_path}: expected StandardScaler + logistic regression (`--model logreg`)")
    head = PortableHead(mean=np.asarray(scaler.mean_, dtype=np.float64), scale=np.asarray(scaler.scale_),
                        coef=np.asarray(clf.coef_[0], dtype=np.float64), intercept=float(clf.intercept_[0]),
                        slope=float(det.calibrator.slope_), offset=float(det.calibrator.offset_),
                        threshold_llr=float(det.threshold_llr))
    return det.extractor.config, head


def export_portable(config: PortableConfig, head: PortableHead, out_dir: str | Path, name: str = "audios-default",
                    window_s: float = 4.0, hop_s: float = 2.0, extra: dict[str, Any] | None = None,
                    opset: int = 17) -> dict[str, Any]:
    """Write ``model.onnx``, ``weights.npz`` and ``detector.json`` into ``out_dir``; returns the detector.json dict.

    The ONNX graph is checked against the PyTorch module on seeded random windows of several lengths before
    anything is written; a difference above 1e-4 in the LLR raises.
    """
    torch = _torch()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = build_detector_net(config, head.mean, head.scale, head.coef, head.intercept, head.slope, head.offset)
    example = torch.zeros(1, int(window_s * config.sample_rate))
    onnx_path = out_dir / "model.onnx"
    tmp = onnx_path.with_suffix(".onnx.tmp")
    torch.onnx.export(net, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["waveform"],
                      output_names=["llr"], dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "llr": {0: "batch"}})
    max_diff = _check_onnx(net, tmp, config.sample_rate)
    if max_diff > 1e-4:
        raise ConfigError(f"{onnx_path}: ONNX Runtime differs from PyTorch by {max_diff:.3g} (limit 1e-4)")
    tmp.replace(onnx_path)
    # Only the head: the front end's fixed matrices are rebuilt from the config (same formulas, same float32).
    state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items() if k in HEAD_KEYS}
    np.savez(out_dir / "weights.npz", **state)
    info = {
        "name": name, "format": "audios-portable", "format_version": 1, "sample_rate": config.sample_rate,
        "window_s": window_s, "hop_s": hop_s, "threshold": head.threshold_llr, "aggregate": "mean",
        "min_duration_s": 0.05, "silence_peak": 1e-4, "input": "waveform", "output": "llr",
        "frontend": asdict(config), "feature_names": list(config.feature_names),
        "onnx_opset": opset, "onnx_max_abs_diff_vs_torch": max_diff, **(extra or {}),
    }
    (out_dir / "detector.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def _check_onnx(net: Any, path: Path, sample_rate: int) -> float:
    import onnxruntime as ort

    torch = _torch()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for n in (800, sample_rate, 4 * sample_rate + 123):
        x = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
        x[1, : n // 3] = 0.0  # a silent stretch exercises the frame mask
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        got = session.run(["llr"], {"waveform": x})[0]
        worst = max(worst, float(np.max(np.abs(got - ref))))
    return worst


def load_torch_net(folder: str | Path) -> Any:
    """Rebuild the PyTorch module of a portable detector folder from ``weights.npz`` + ``detector.json``."""
    torch = _torch()
    folder = Path(folder)
    info = read_detector_json(folder)
    config = PortableConfig(**info["frontend"])
    d = len(config.feature_names)
    net = build_detector_net(config, np.zeros(d), np.ones(d), np.zeros(d), 0.0, 1.0, 0.0)
    with np.load(folder / "weights.npz") as z:
        state = {k: torch.from_numpy(np.asarray(z[k])) for k in z.files}
    if sorted(state) != sorted(HEAD_KEYS):
        raise ConfigError(f"{folder / 'weights.npz'}: holds {sorted(state)}, expected {sorted(HEAD_KEYS)}")
    net.load_state_dict(state, strict=False)
    return net.eval()


def read_detector_json(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "detector.json"
    if not path.exists():
        raise ConfigError(f"{path}: missing (a portable detector folder holds model.onnx, weights.npz, detector.json)")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if info.get("format") != "audios-portable":
        raise ConfigError(f"{path}: format {info.get('format')!r} is not 'audios-portable'")
    return info
