"""Deployable variants of a trained model: ONNX, dynamic int8 quantisation and magnitude pruning.

Each variant is written next to the others and reported with its size on disk, its latency per 4 s clip and,
when a labelled manifest split is given, its EER and the change from the fp32 model.

* ONNX (``model.onnx``): the model's logits ``(batch, 2)`` for a waveform ``(batch, clip_samples)``, with a
  dynamic batch axis (the clip length is fixed, as in training), opset 17 by default, exported with the
  TorchScript-based exporter (no extra packages). It is checked with onnxruntime against PyTorch on a batch
  of a size other than the traced one; a max absolute logit difference above ``tolerance`` (1e-4) is an error.
* int8 (``model_int8.pt``): ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` and ``nn.LSTM``
  (weights stored as int8, activations quantised on the fly; convolutions stay fp32). Load with
  `load_int8_model`.
* pruned (``model_pruned.pt``): global L1 (magnitude) unstructured pruning of the weights of every
  ``Conv1d``/``Conv2d``/``Linear`` at ``prune_amount``, made permanent (the masks are folded into plain
  weights), so the file is an ordinary exported model that ``audios detect`` loads. Dense storage keeps
  its size; the report adds the gzip-compressed size, which the zeros do shrink.

Latency per 4 s clip: a 4 s signal is cut into the model's windows the way scoring cuts it
(`audios.train.data.eval_windows`: ``4 s // clip`` windows, or one tiled window when the clip is longer)
and scored as one batch; the median of ``latency_runs`` timed runs after two warm-up runs, on the CPU.
"""

from __future__ import annotations

import copy
import gzip
import json
import logging
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audios.errors import AudiosError, ConfigError
from audios.models import get_model
from audios.models.aasist import CheckpointError
from audios.runs import write_text_atomic
from audios.train.compare import _markdown
from audios.train.data import ClipDataset, eval_windows, split_rows
from audios.train.trainer import (
    TrainedModel,
    _load_checkpoint,
    _save_atomic,
    load_trained_model,
    logits_of,
    score_dataset,
)

log = logging.getLogger(__name__)

INT8_FORMAT = "audios-int8-model/1"
PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
LATENCY_CLIP_S = 4.0


class ExportError(AudiosError):
    """An exported variant is unusable (e.g. ONNX disagrees with PyTorch); ``path`` and ``reason`` say why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class ExportConfig:
    """Which variants to write and how to measure them.

    onnx / int8: write those variants; prune_amount: fraction of prunable weights zeroed (0: no pruned
    variant); opset: ONNX opset (>= 17); tolerance: largest accepted ONNX-vs-PyTorch logit difference;
    latency_runs: timed runs per variant; split: manifest split the EERs are measured on.
    """

    onnx: bool = True
    int8: bool = False
    prune_amount: float = 0.0
    opset: int = 17
    tolerance: float = 1e-4
    latency_runs: int = 20
    split: str = "test"
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not 0.0 <= self.prune_amount < 1.0:
            raise ConfigError(f"ExportConfig.prune_amount must lie in [0, 1), got {self.prune_amount}")
        if self.opset < 17:
            raise ConfigError(f"ExportConfig.opset must be >= 17, got {self.opset}")
        if not self.tolerance > 0 or self.latency_runs <= 0 or self.batch_size <= 0:
            raise ConfigError("ExportConfig: tolerance, latency_runs and batch_size must be positive")
        if not (self.onnx or self.int8 or self.prune_amount):
            raise ConfigError("ExportConfig: choose at least one of onnx, int8 or prune_amount > 0")


@dataclass(frozen=True)
class VariantReport:
    """One model file: its size (and gzip size), latency p50 per 4 s clip, EER and EER change, and a note."""

    variant: str
    path: Path
    size_bytes: int
    gzip_bytes: int
    latency_ms: float
    eer: float
    eer_change: float
    note: str

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["path"] = str(self.path)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    reports: tuple[VariantReport, ...]
    onnx_max_abs_diff: float
    sparsity: float

    def table(self) -> str:
        import pandas as pd

        rows = [{"variant": r.variant, "file": r.path.name, "size MB": round(r.size_bytes / 1e6, 3),
                 "gzip MB": round(r.gzip_bytes / 1e6, 3), "latency ms / 4 s": round(r.latency_ms, 2),
                 "EER": r.eer, "EER change": r.eer_change, "note": r.note} for r in self.reports]
        return _markdown(pd.DataFrame(rows))

    def summary(self) -> str:
        return self.table() + f"\nwritten to {self.out_dir}: export.json, export.md"


# ---------------------------------------------------------------------------------------------------------------
# Variants


class _Logits(nn.Module):
    """The logits of a model whose output may be a tuple (AASIST, ssl-head): waveform -> (batch, 2)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))


def export_onnx(model: nn.Module, path: str | Path, clip_samples: int, opset: int = 17) -> Path:
    """Write ``model``'s logits graph to ``path`` with a dynamic batch axis (input ``waveform``, output ``logits``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, clip_samples).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(_Logits(model).eval(), (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["waveform"], output_names=["logits"],
                          dynamic_axes={"waveform": {0: "batch"}, "logits": {0: "batch"}})
    os.chmod(path, 0o644)
    return path


class OnnxModel(nn.Module):
    """An onnxruntime session behind the ``nn.Module`` call interface: waveform tensor -> logits tensor."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(["logits"], {"waveform": x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)


def onnx_max_abs_diff(model: nn.Module, onnx_model: OnnxModel, clip_samples: int, batch: int = 3) -> float:
    """Largest |logit difference| between PyTorch and onnxruntime on a seeded random batch."""
    x = torch.zeros(batch, clip_samples).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = logits_of(model.eval()(x)).float()
    return float((onnx_model(x) - ref).abs().max())


def quantize_int8(model: nn.Module) -> nn.Module:
    """A dynamically int8-quantised copy of ``model`` (every ``nn.Linear`` and ``nn.LSTM``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao, still works
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear, nn.LSTM},
                                                      dtype=torch.qint8)


def prune_magnitude(model: nn.Module, amount: float) -> tuple[nn.Module, float]:
    """A copy of ``model`` with the ``amount`` smallest-magnitude weights of all Conv/Linear layers (pooled
    globally) set to zero, made permanent; returns it and the achieved fraction of zeros in those weights."""
    from torch.nn.utils import prune

    pruned = copy.deepcopy(model)
    targets = [(m, "weight") for m in _prunable_modules(pruned)]
    if not targets:
        raise ConfigError(f"{type(model).__name__}: no Conv/Linear weights to prune")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in targets:
        prune.remove(module, name)
    return pruned, weight_sparsity(pruned)


def _prunable_modules(model: nn.Module) -> list[nn.Module]:
    """Conv/Linear layers whose weight is a plain parameter (a weight-normed convolution computes its weight)."""
    return [m for m in model.modules()
            if isinstance(m, PRUNABLE) and isinstance(getattr(m, "weight", None), nn.Parameter)]


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries among the weights of the prunable (Conv/Linear) layers."""
    weights = [m.weight for m in _prunable_modules(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else 0.0


def load_int8_model(path: str | Path, device: str = "cpu") -> TrainedModel:
    """Inverse of the int8 export: rebuild the model, quantise it the same way and load the int8 weights."""
    path = Path(path)
    if device != "cpu":
        raise ConfigError(f"int8 models run on the CPU only, not device={device!r}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or truncated files
        raise CheckpointError(path, f"cannot read int8 model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != INT8_FORMAT:
        raise CheckpointError(path, f"not an audios int8 model (expected format {INT8_FORMAT!r})")
    model = quantize_int8(get_model(data["model"])(**data["model_config"]))
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(path, f"int8 weights do not fit model {data['model']!r}: {exc}") from exc
    return TrainedModel(model=model.eval(), name=data["model"], model_config=data["model_config"],
                        sample_rate=int(data["sample_rate"]), clip_samples=int(data["clip_samples"]),
                        eval_windows=int(data["eval_windows"]), threshold=float(data["threshold"]),
                        val_eer=float(data["val_eer"]), epoch=int(data["epoch"]))


# ---------------------------------------------------------------------------------------------------------------
# Measurements


def latency_ms(model: Callable[[torch.Tensor], Any], windows: torch.Tensor, runs: int = 20) -> float:
    """Median wall time in ms of ``model(windows)`` over ``runs`` runs after two warm-up runs (no grad)."""
    with torch.no_grad():
        for _ in range(2):
            model(windows)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(windows)
            times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def clip_windows(clip_samples: int, sample_rate: int, seconds: float = LATENCY_CLIP_S) -> torch.Tensor:
    """The windows a ``seconds``-long clip is scored as (seeded noise), shape (windows, clip_samples)."""
    x = np.random.default_rng(0).uniform(-0.3, 0.3, int(seconds * sample_rate)).astype(np.float32)
    return torch.from_numpy(eval_windows(x, clip_samples, max_windows=10**6))


def _file_sizes(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=6))


def _split_eer(model: nn.Module, trained: TrainedModel, manifest: Path | None, config: ExportConfig) -> float:
    if manifest is None:
        return float("nan")
    from audios.manifest import read_manifest

    rows = split_rows(read_manifest(manifest), config.split, manifest)
    if len(rows) == 0:
        raise ConfigError(f"{manifest}: no rows in split {config.split!r}")
    dataset = ClipDataset(rows, trained.clip_samples, trained.sample_rate, max_windows=trained.eval_windows)
    return score_dataset(model, dataset, config.batch_size, torch.device("cpu")).eer()[0]


def export_variants(checkpoint: str | Path, out_dir: str | Path, config: ExportConfig = ExportConfig(), *,
                    manifest: str | Path | None = None) -> ExportResult:
    """Write the variants ``config`` asks for of the exported model ``checkpoint`` into ``out_dir`` and measure
    each against the fp32 model (size, latency per 4 s clip, EER on ``manifest``'s split when given)."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    manifest = Path(manifest) if manifest is not None else None
    trained = load_trained_model(checkpoint)
    fp32 = trained.model.eval()
    windows = clip_windows(trained.clip_samples, trained.sample_rate)
    reports: list[VariantReport] = []

    def report(variant: str, path: Path, model: nn.Module, note: str) -> VariantReport:
        size, zipped = _file_sizes(path)
        eer = _split_eer(model, trained, manifest, config)
        base_eer = reports[0].eer if reports else eer
        r = VariantReport(variant=variant, path=path, size_bytes=size, gzip_bytes=zipped,
                          latency_ms=latency_ms(model, windows, config.latency_runs), eer=eer,
                          eer_change=eer - base_eer, note=note)
        reports.append(r)
        log.info("%s: %d bytes, %.2f ms per 4 s clip, EER %s", variant, size, r.latency_ms, eer)
        return r

    report("fp32", checkpoint, fp32, f"{int(windows.shape[0])} window(s) of {trained.clip_samples} samples per 4 s")
    max_diff = float("nan")
    if config.onnx:
        path = export_onnx(fp32, out_dir / "model.onnx", trained.clip_samples, config.opset)
        onnx_model = OnnxModel(path)
        max_diff = onnx_max_abs_diff(fp32, onnx_model, trained.clip_samples)
        if not max_diff <= config.tolerance:
            raise ExportError(path, f"onnxruntime logits differ from PyTorch by {max_diff:.3g} "
                                    f"(tolerance {config.tolerance:g})")
        report("onnx", path, onnx_model, f"opset {config.opset}, max |logit diff| vs PyTorch {max_diff:.2e}")
    source = _load_checkpoint(checkpoint)
    meta = {k: v for k, v in source.items() if k not in ("format", "state_dict")}
    if config.int8:
        q = quantize_int8(fp32)
        path = _save_atomic({"format": INT8_FORMAT, **meta, "state_dict": q.state_dict()}, out_dir / "model_int8.pt")
        report("int8", path, q, "dynamic int8: Linear/LSTM weights int8")
    sparsity = float("nan")
    if config.prune_amount:
        pruned, sparsity = prune_magnitude(fp32, config.prune_amount)
        state = {k: v.detach().cpu() for k, v in pruned.state_dict().items()}
        path = _save_atomic({**source, "state_dict": state}, out_dir / "model_pruned.pt")
        report("pruned", path, pruned.eval(), f"global L1 {config.prune_amount:g}: {sparsity:.3f} of Conv/Linear "
                                              "weights zero")
    result = ExportResult(out_dir=out_dir, reports=tuple(reports), onnx_max_abs_diff=max_diff, sparsity=sparsity)
    info = {"checkpoint": str(checkpoint), "manifest": str(manifest) if manifest else None, "split": config.split,
            "latency_clip_s": LATENCY_CLIP_S, "threads": torch.get_num_threads(),
            "onnx_max_abs_diff": None if math.isnan(max_diff) else max_diff,
            "sparsity": None if math.isnan(sparsity) else sparsity, "variants": [r.as_dict() for r in reports]}
    write_text_atomic(out_dir / "export.json", json.dumps(info, indent=2))
    write_text_atomic(out_dir / "export.md", f"Variants of {checkpoint}\n\n" + result.table())
    return result


__all__ = ["ExportConfig", "ExportError", "ExportResult", "OnnxModel", "VariantReport", "clip_windows",
           "export_onnx", "export_variants", "latency_ms", "load_int8_model", "onnx_max_abs_diff",
           "prune_magnitude", "quantize_int8", "weight_sparsity"]
