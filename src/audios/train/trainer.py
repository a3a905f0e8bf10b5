"""One training engine for every deep model: a model is an ``nn.Module`` mapping (batch, samples) to logits.

Per epoch it trains on the ``train`` split, scores the ``val`` split (EER, loss, accuracy), writes a
checkpoint ``checkpoints/epoch_03_valeer_0.0412.pt`` (model, optimiser, scheduler, AMP scaler, config,
metrics, RNG states), ``history.csv``, ``steps.csv`` (every batch's loss) and ``training.png`` (loss, EER
and accuracy per epoch), and exports ``best.pt`` when the validation EER improves. At the end the best
model scores val and test into ``val_scores.csv`` and ``scores.csv`` (``id,score,label,generator``, read
by ``audios evaluate``) and writes ``metrics.json``.

Determinism: the seed is applied to Python, NumPy and torch when training starts, the model is built
right after, and every epoch re-seeds torch (dropout) and its shuffling generator from ``(seed, epoch)``
while every example draws its crop and augmentations from ``(seed, epoch, index)``. A resumed run
therefore repeats the uninterrupted one exactly on the same machine and device.

Multi-GPU: launch with ``torchrun --nproc_per_node=N -m audios train ...``. When ``WORLD_SIZE`` > 1 the
trainer joins the process group (NCCL on CUDA, Gloo otherwise), wraps the model in
DistributedDataParallel, gives each rank a ``DistributedSampler`` shard (seeded per epoch) and lets rank 0
alone validate and write files. ``batch_size`` is per process; ``device: cuda`` means ``cuda:$LOCAL_RANK``.
Checked with two CPU processes over Gloo; the NCCL path has not run on a multi-GPU machine yet.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from audios.config import build_config, config_to_dict
from audios.errors import AudiosError, ConfigError
from audios.evaluate.metrics import equal_error_rate
from audios.manifest import read_manifest
from audios.models import get_model
from audios.models.aasist import CheckpointError
from audios.parallel import progress_bar
from audios.runs import write_run_info, write_text_atomic
from audios.split import class_weights
from audios.train.augment import AugmentConfig
from audios.train.contrastive import LOSSES, VIEWS, TwoViewClipDataset, check_loss_setup, training_loss
from audios.train.data import BONAFIDE, SPOOF, Batch, ClipDataset, collate_clips, eval_windows, split_rows

log = logging.getLogger(__name__)

BALANCE_MODES = ("none", "class-weights", "sampler")
SCHEDULERS = ("cosine", "none")
DEVICES = ("cpu", "cuda", "mps", "auto")
CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d+)_valeer_(\d+\.\d+|nan)\.pt$")
BEST_FORMAT = "audios-trained-model/1"
HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_eer", "val_acc", "val_threshold", "lr",
                   "seconds", "checkpoint")


class TrainError(AudiosError):
    """Training cannot start or continue; ``path`` and ``reason`` say where and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on except the data path.

    model / model_config: a registered name (`audios.models.MODELS`) and keyword overrides of its config.
    clip_samples: samples per training clip and per evaluation window (32000 = 2 s at 16 kHz).
    eval_windows: at most this many consecutive windows scored per val/test recording, scores averaged.
    grad_accum: optimiser step every this many batches (effective batch = batch_size * grad_accum).
    balance: ``class-weights`` (inverse-frequency CE weights), ``sampler`` (class-balanced sampling with
        replacement) or ``none``.
    early_stopping_patience: stop after this many epochs without a lower val EER (0: never).
    device: ``cpu`` (default), ``cuda``, ``mps`` or ``auto`` (CUDA, then MPS, then CPU).
    amp: mixed precision (float16 autocast with a gradient scaler) when the device is CUDA.
    cache_audio: keep decoded recordings in memory (per worker) instead of decoding every epoch.
    loss: ``ce``, ``ce+supcon`` (``(1 - contrastive_weight) * CE + contrastive_weight * SupCon``) or ``supcon``
        (see `audios.train.contrastive`); the contrastive losses train on two ``views`` (``augment`` or ``crop``)
        per clip at ``contrastive_temperature``.
    """

    model: str = "rawcnn"
    model_config: dict[str, Any] = field(default_factory=dict)
    sample_rate: int = 16000
    clip_samples: int = 32000
    eval_windows: int = 1
    batch_size: int = 32
    eval_batch_size: int = 64
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    grad_accum: int = 1
    grad_clip: float = 5.0
    balance: str = "class-weights"
    early_stopping_patience: int = 5
    seed: int = 0
    device: str = "cpu"
    amp: bool = True
    num_workers: int = 0
    cache_audio: bool = False
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    augment: AugmentConfig = AugmentConfig()
    loss: str = "ce"
    contrastive_weight: float = 0.5
    contrastive_temperature: float = 0.07
    views: str = "augment"

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_config", dict(self.model_config or {}))
        get_model(self.model)  # unknown names list the known ones
        for name in ("sample_rate", "clip_samples", "eval_windows", "batch_size", "eval_batch_size", "epochs",
                     "grad_accum"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"TrainConfig.{name}: must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError(f"TrainConfig: need lr > 0, weight_decay >= 0 and grad_clip >= 0, got lr={self.lr}, "
                              f"weight_decay={self.weight_decay}, grad_clip={self.grad_clip}")
        if self.balance not in BALANCE_MODES:
            raise ConfigError(f"TrainConfig.balance: {self.balance!r} is not one of {list(BALANCE_MODES)}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"TrainConfig.scheduler: {self.scheduler!r} is not one of {list(SCHEDULERS)}")
        if self.device.split(":")[0] not in DEVICES:
            raise ConfigError(f"TrainConfig.device: {self.device!r} is not one of {list(DEVICES)} (or cuda:N)")
        if self.early_stopping_patience < 0 or self.num_workers < 0 or self.seed < 0:
            raise ConfigError("TrainConfig: early_stopping_patience, num_workers and seed must be >= 0")
        # Contrastive-loss fields (audios.train.contrastive).
        if self.loss not in LOSSES:
            raise ConfigError(f"TrainConfig.loss: {self.loss!r} is not one of {list(LOSSES)}")
        if self.views not in VIEWS:
            raise ConfigError(f"TrainConfig.views: {self.views!r} is not one of {list(VIEWS)}")
        if not 0.0 <= self.contrastive_weight <= 1.0 or not self.contrastive_temperature > 0:
            raise ConfigError(f"TrainConfig: need 0 <= contrastive_weight <= 1 and contrastive_temperature > 0, got "
                              f"{self.contrastive_weight} and {self.contrastive_temperature}")
        if self.loss != "ce" and self.views == "augment" and not self.augment.any_enabled:
            raise ConfigError("TrainConfig.views='augment' needs at least one augmentation switched on in "
                              "TrainConfig.augment (or use views: crop)")

    def build_model(self) -> nn.Module:
        """The untrained model (seed torch first for reproducible initial weights)."""
        try:
            return get_model(self.model)(**self.model_config)
        except TypeError as exc:
            raise ConfigError(f"TrainConfig.model_config: {exc}") from exc


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is a ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps': MPS is not available on this machine")
    return torch.device(name)


def logits_of(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The (batch, 2) logits of a model's output: the tensor itself, or the last item of a tuple (AASIST)."""
    return output[-1] if isinstance(output, tuple) else output


def scores_of(logits: torch.Tensor) -> torch.Tensor:
    """Bona fide score per row: ``logit[bona fide] - logit[spoof]`` (the log-odds under softmax)."""
    return logits[:, BONAFIDE] - logits[:, SPOOF]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for ``epoch`` derived from the run seed (independent streams per epoch)."""
    return int(np.random.SeedSequence([seed, epoch, 0x7EA1]).generate_state(2, np.uint32).astype(np.uint64)
               .dot(np.array([1 << 31, 1], dtype=np.uint64))) & ((1 << 63) - 1)


def checkpoint_name(epoch: int, val_eer: float) -> str:
    """``epoch_03_valeer_0.0412.pt`` (epochs count from 1)."""
    eer = "nan" if not math.isfinite(val_eer) else f"{val_eer:.4f}"
    return f"epoch_{epoch:02d}_valeer_{eer}.pt"


def _save_atomic(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or truncated files
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(path, f"cannot read checkpoint ({type(exc).__name__}: {first})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(path, "not an audios checkpoint (expected a dict)")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Exported model, for `audios detect`


@dataclass
class TrainedModel:
    """A trained model ready to score waveforms, as exported to ``best.pt``."""

    model: nn.Module
    name: str
    model_config: dict[str, Any]
    sample_rate: int
    clip_samples: int
    eval_windows: int
    threshold: float
    val_eer: float
    epoch: int

    @torch.no_grad()
    def score(self, x: np.ndarray) -> float:
        """Bona fide score of one mono waveform at ``sample_rate``: mean over its first ``eval_windows`` windows."""
        windows = torch.from_numpy(eval_windows(np.asarray(x, dtype=np.float32), self.clip_samples,
                                                self.eval_windows))
        device = next(self.model.parameters()).device
        return float(scores_of(logits_of(self.model(windows.to(device)))).mean())


def export_model(path: str | Path, model: nn.Module, config: TrainConfig, val_eer: float, threshold: float,
                 epoch: int) -> Path:
    """Write ``path`` (e.g. ``best.pt``): weights, model name and config, clip length, val EER and threshold."""
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    return _save_atomic({
        "format": BEST_FORMAT, "model": config.model, "model_config": dict(config.model_config),
        "sample_rate": config.sample_rate, "clip_samples": config.clip_samples, "eval_windows": config.eval_windows,
        "val_eer": float(val_eer), "threshold": float(threshold), "epoch": int(epoch), "state_dict": state,
    }, Path(path))


def load_trained_model(path: str | Path, device: str = "cpu") -> TrainedModel:
    """Inverse of `export_model`: rebuild the registered model, load its weights strictly; eval mode."""
    path = Path(path)
    data = _load_checkpoint(path)
    if data.get("format") != BEST_FORMAT:
        raise CheckpointError(path, f"not an exported audios model (format {data.get('format')!r}, "
                                    f"expected {BEST_FORMAT!r})")
    try:
        model = get_model(data["model"])(**data["model_config"])
        model.load_state_dict(data["state_dict"], strict=True)
    except (RuntimeError, TypeError, ConfigError) as exc:
        raise CheckpointError(path, f"weights do not fit model {data['model']!r}: {exc}") from exc
    return TrainedModel(model=model.to(resolve_device(device)).eval(), name=data["model"],
                        model_config=data["model_config"], sample_rate=int(data["sample_rate"]),
                        clip_samples=int(data["clip_samples"]), eval_windows=int(data["eval_windows"]),
                        threshold=float(data["threshold"]), val_eer=float(data["val_eer"]), epoch=int(data["epoch"]))


# ---------------------------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class SplitScores:
    """Per-recording scores of one split: ``indices`` (table rows scored), ``scores`` (mean window score),
    ``labels`` (1 bona fide), mean window CE ``loss`` and ``skipped`` (path, reason)."""

    indices: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    loss: float
    skipped: tuple[tuple[str, str], ...]

    def eer(self) -> tuple[float, float]:
        """(EER, threshold); NaN when a class is missing."""
        if self.labels.size == 0 or self.labels.min() == self.labels.max():
            return float("nan"), float("nan")
        r = equal_error_rate(self.scores, self.labels)
        return r.eer, r.threshold

    def accuracy(self, threshold: float = 0.0) -> float:
        """Fraction of recordings on the right side of ``threshold`` (0: the argmax decision)."""
        if self.labels.size == 0:
            return float("nan")
        return float(np.mean((self.scores >= threshold) == (self.labels == 1)))


@torch.no_grad()
def score_dataset(model: nn.Module, dataset: ClipDataset, batch_size: int, device: torch.device,
                  num_workers: int = 0, progress: bool = False, desc: str = "score") -> SplitScores:
    """Score every recording of ``dataset`` (eval mode) by the mean of its windows' scores."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_clips)
    indices, scores, labels, skipped = [], [], [], []
    loss_sum, n_windows = 0.0, 0
    bar = progress_bar(len(dataset), desc, progress)
    try:
        for batch in loader:
            skipped.extend(batch.skipped)
            bar.update(len(batch.indices) + len(batch.skipped))
            if batch.x.numel() == 0:
                continue
            logits = logits_of(model(batch.x.to(device))).float()
            loss_sum += float(F.cross_entropy(logits, batch.labels.to(device), reduction="sum"))
            n_windows += batch.x.shape[0]
            window_scores = scores_of(logits).cpu()
            sums = torch.zeros(len(batch.indices)).index_add_(0, batch.owner, window_scores)
            counts = torch.bincount(batch.owner, minlength=len(batch.indices))
            indices.append(batch.indices.numpy())
            scores.append((sums / counts).numpy())
            labels.append(dataset.labels[batch.indices.numpy()])
    finally:
        bar.close()
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
    return SplitScores(indices=cat(indices, np.int64), scores=cat(scores, np.float64), labels=cat(labels, np.int64),
                       loss=loss_sum / n_windows if n_windows else float("nan"), skipped=tuple(skipped))


def write_scores(path: Path, table: pd.DataFrame, result: SplitScores) -> Path:
    """``id,score,label,generator`` for the scored rows of ``table`` (the format ``audios evaluate`` reads)."""
    rows = table.iloc[result.indices]
    frame = pd.DataFrame({"id": rows["id"].astype(str).to_numpy(), "score": result.scores,
                          "label": rows["label"].to_numpy()})
    frame["generator"] = rows["generator"].astype(str).to_numpy() if "generator" in rows else ""
    return write_text_atomic(path, frame.to_csv(index=False, float_format="%.6f"))


# ---------------------------------------------------------------------------------------------------------------
# The engine


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: its folder, history, best epoch and EERs, and the files it wrote."""

    run_dir: Path
    history: pd.DataFrame
    best_epoch: int
    best_val_eer: float
    test_eer: float
    stopped_early: bool
    finished: bool
    n_skipped: int

    def summary(self) -> str:
        last = self.history.iloc[-1] if len(self.history) else None
        lines = [f"run: {self.run_dir}", f"epochs run: {int(last['epoch']) if last is not None else 0}"
                 + (" (stopped early)" if self.stopped_early else "") + ("" if self.finished else " (paused)"),
                 f"best epoch: {self.best_epoch}, val EER {self.best_val_eer:.4f}"]
        if self.finished:
            lines.append(f"test EER: {self.test_eer:.4f}" if math.isfinite(self.test_eer) else "test EER: n/a")
            lines.append(f"best model: {self.run_dir / 'best.pt'}")
        if self.n_skipped:
            lines.append(f"skipped files: {self.n_skipped} (see skipped.csv)")
        return "\n".join(lines)


@dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1
    owned: bool = False  # the trainer started the process group, so it ends it

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Distributed()
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), owned=owned)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in (run_dir / "checkpoints").glob("epoch_*.pt"):
        m = CHECKPOINT_PATTERN.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def plot_history(history: pd.DataFrame, path: Path) -> Path:
    """One PNG with three panels, one point per epoch: loss (train, val), val EER, accuracy (train, val)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure registry

    panels = {"loss": [("train_loss", "train"), ("val_loss", "val")], "EER": [("val_eer", "val")],
              "accuracy": [("train_acc", "train"), ("val_acc", "val")]}
    fig = Figure(figsize=(12, 3.2))
    for ax, (name, series) in zip(fig.subplots(1, 3), panels.items()):
        for column, label in series:
            ax.plot(history["epoch"], history[column], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


class _Run:
    """State of one training run (fresh or resumed)."""

    def __init__(self, manifest: Path, config: TrainConfig, run_dir: Path, progress: bool) -> None:
        self.manifest, self.config, self.run_dir, self.progress = manifest, config, run_dir, progress
        self.device = resolve_device(config.device)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per process
            torch.cuda.set_device(self.device)
        self.dist = _init_distributed(self.device)
        self.table = read_manifest(manifest)
        self.tables = {name: split_rows(self.table, name, manifest)
                       for name in (config.train_split, config.val_split, config.test_split)}
        train, val = self.tables[config.train_split], self.tables[config.val_split]
        if len(train) == 0:
            raise TrainError(manifest, f"no rows in split {config.train_split!r}")
        if len(val) == 0:
            raise TrainError(manifest, f"no rows in split {config.val_split!r} (needed for the EER and early stopping)")
        for name, rows in ((config.train_split, train), (config.val_split, val)):
            if rows["label"].nunique() < 2:
                raise TrainError(manifest, f"split {name!r} holds only {rows['label'].iloc[0]!r} rows; need both classes")
        c = config
        if c.loss == "ce":
            self.train_set = ClipDataset(train, c.clip_samples, c.sample_rate, train=True, augment=c.augment,
                                         seed=c.seed, cache_audio=c.cache_audio)
        else:  # contrastive losses: two views per clip
            self.train_set = TwoViewClipDataset(train, c.clip_samples, c.sample_rate, train=True, augment=c.augment,
                                                seed=c.seed, cache_audio=c.cache_audio, views=c.views)
        self.val_set = ClipDataset(val, c.clip_samples, c.sample_rate, max_windows=c.eval_windows,
                                   cache_audio=c.cache_audio)
        weights = class_weights(train)
        self.class_weight = torch.tensor([weights["spoof"], weights["bonafide"]], dtype=torch.float32)

        seed_everything(c.seed)
        model = c.build_model().to(self.device)
        check_loss_setup(c.loss, model)
        self.model: nn.Module = model
        if self.dist.world_size > 1:
            self.model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=c.epochs)
                          if c.scheduler == "cosine" else None)
        self.use_amp = c.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.history: list[dict[str, Any]] = []
        self.steps: list[list[float]] = []  # (epoch, batch, loss) of every training batch
        self.skipped: dict[str, str] = {}
        self.start_epoch = 1

    # -- checkpoints -------------------------------------------------------------------------------------------
    def state(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "epoch": epoch, "manifest": str(self.manifest), "config": config_to_dict(self.config),
            "metrics": metrics, "history": [dict(r) for r in self.history],
            "steps": [list(r) for r in self.steps], "skipped": dict(self.skipped),
            "model": _unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }

    def restore(self, data: dict[str, Any], path: Path) -> None:
        try:
            _unwrap(self.model).load_state_dict(data["model"], strict=True)
            self.optimizer.load_state_dict(data["optimizer"])
            if self.scheduler is not None and data.get("scheduler") is not None:
                self.scheduler.load_state_dict(data["scheduler"])
            self.scaler.load_state_dict(data["scaler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(path, f"does not fit the run's model or optimiser: {exc}") from exc
        self.history = [dict(r) for r in data.get("history", [])]
        self.steps = [list(r) for r in data.get("steps", [])]
        self.skipped = dict(data.get("skipped", {}))
        torch.set_rng_state(data["rng"]["torch"])
        if torch.cuda.is_available() and data["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(data["rng"]["cuda"])
        self.start_epoch = int(data["epoch"]) + 1

    # -- one epoch ---------------------------------------------------------------------------------------------
    def _train_loader(self, epoch: int) -> DataLoader:
        c = self.config
        generator = torch.Generator().manual_seed(epoch_seed(c.seed, epoch))
        if self.dist.world_size > 1:
            from torch.utils.data.distributed import DistributedSampler

            if c.balance == "sampler":
                raise ConfigError("TrainConfig.balance='sampler' is not supported with DistributedDataParallel; "
                                  "use class-weights")
            sampler: Any = DistributedSampler(self.train_set, seed=c.seed, shuffle=True)
            sampler.set_epoch(epoch)
        elif c.balance == "sampler":
            w = self.class_weight[torch.from_numpy(self.train_set.labels)].double()
            sampler = WeightedRandomSampler(w, num_samples=len(self.train_set), replacement=True, generator=generator)
        else:
            sampler = RandomSampler(self.train_set, generator=generator)
        return DataLoader(self.train_set, batch_size=c.batch_size, sampler=sampler, num_workers=c.num_workers,
                          collate_fn=collate_clips, drop_last=False,
                          pin_memory=self.device.type == "cuda")

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        c = self.config
        torch.manual_seed(epoch_seed(c.seed, epoch))
        self.train_set.set_epoch(epoch)
        self.model.train()
        weight = self.class_weight.to(self.device) if c.balance == "class-weights" else None
        loss_sum, correct, seen = 0.0, 0, 0
        self.optimizer.zero_grad(set_to_none=True)
        loader = self._train_loader(epoch)
        n_batches = len(loader)
        bar = progress_bar(n_batches, f"epoch {epoch}", self.progress)
        bar.unit = "batch"
        try:
            for step, batch in enumerate(loader, 1):
                self._record_skipped(batch)
                if batch.x.numel() > 0:
                    x, y = batch.x.to(self.device, non_blocking=True), batch.labels.to(self.device)
                    with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                        output = self.model(x)
                        logits = logits_of(output).float()
                    loss = training_loss(output, logits, y, weight, c.loss, c.contrastive_weight,
                                         c.contrastive_temperature)
                    self.scaler.scale(loss / c.grad_accum).backward()
                    batch_loss = float(loss.detach())
                    self.steps.append([epoch, step, batch_loss])
                    loss_sum += batch_loss * y.numel()
                    correct += int((logits.argmax(1) == y).sum())
                    seen += y.numel()
                if step % c.grad_accum == 0 or step == n_batches:
                    self._step()
                bar.update()
        finally:
            bar.close()
        if self.dist.world_size > 1:  # totals over all ranks' shards
            import torch.distributed as dist

            totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=self.device)
            dist.all_reduce(totals)
            loss_sum, correct, seen = float(totals[0]), int(totals[1]), int(totals[2])
        if seen == 0:
            raise TrainError(self.manifest, f"epoch {epoch}: no readable training file")
        return loss_sum / seen, correct / seen

    def _step(self) -> None:
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _record_skipped(self, batch: Batch | SplitScores) -> None:
        for path, reason in batch.skipped:
            self.skipped.setdefault(path, reason)

    def validate(self) -> SplitScores:
        result = score_dataset(_unwrap(self.model), self.val_set, self.config.eval_batch_size, self.device,
                               self.config.num_workers, self.progress, desc="val")
        self._record_skipped(result)
        return result

    # -- files -------------------------------------------------------------------------------------------------
    def write_tables(self) -> None:
        frame = pd.DataFrame(self.history, columns=list(HISTORY_COLUMNS))
        write_text_atomic(self.run_dir / "history.csv", frame.to_csv(index=False))
        steps = pd.DataFrame(self.steps, columns=["epoch", "batch", "loss"]).astype({"epoch": int, "batch": int})
        write_text_atomic(self.run_dir / "steps.csv", steps.to_csv(index=False))
        plot_history(frame, self.run_dir / "training.png")
        if self.skipped:
            skipped = pd.DataFrame(sorted(self.skipped.items()), columns=["path", "reason"])
            write_text_atomic(self.run_dir / "skipped.csv", skipped.to_csv(index=False))

    def best(self) -> tuple[int, float]:
        """(epoch, val EER) of the lowest finite val EER so far, the earliest on ties; (0, nan) if none."""
        finite = [(r["val_eer"], r["epoch"]) for r in self.history if math.isfinite(r["val_eer"])]
        if not finite:
            return 0, float("nan")
        eer, epoch = min(finite)
        return int(epoch), float(eer)

    def epochs_since_best(self) -> int:
        best_epoch, _ = self.best()
        return (int(self.history[-1]["epoch"]) - best_epoch) if self.history else 0

    def run(self, stop_after_epochs: int | None) -> TrainResult:
        c = self.config
        stopped_early = bool(c.early_stopping_patience) and self.history and \
            self.epochs_since_best() >= c.early_stopping_patience
        done_now = 0
        epoch = self.start_epoch
        while epoch <= c.epochs and not stopped_early:
            if stop_after_epochs is not None and done_now >= stop_after_epochs:
                break
            started = time.perf_counter()
            train_loss, train_acc = self.train_epoch(epoch)
            lr = self.optimizer.param_groups[0]["lr"]
            if self.scheduler is not None:
                self.scheduler.step()
            if self.dist.main:
                val = self.validate()
                val_eer, threshold = val.eer()
                metrics = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val.loss,
                           "val_eer": val_eer, "val_acc": val.accuracy(), "val_threshold": threshold, "lr": lr}
                name = checkpoint_name(epoch, val_eer)
                metrics["seconds"] = round(time.perf_counter() - started, 3)
                metrics["checkpoint"] = f"checkpoints/{name}"
                previous_best = self.best()[1]
                self.history.append(metrics)
                _save_atomic(self.state(epoch, metrics), self.run_dir / "checkpoints" / name)
                if math.isfinite(val_eer) and not (val_eer >= previous_best):
                    export_model(self.run_dir / "best.pt", self.model, c, val_eer, threshold, epoch)
                self.write_tables()
                log.info("epoch %d: train loss %.4f, val loss %.4f, val EER %.4f", epoch, train_loss, val.loss,
                         val_eer)
            self._share_last_row()
            done_now += 1
            epoch += 1
            stopped_early = bool(c.early_stopping_patience) and self.epochs_since_best() >= c.early_stopping_patience
        finished = epoch > c.epochs or stopped_early
        test_eer = float("nan")
        if finished and self.dist.main:
            test_eer = self.finish()
        best_epoch, best_eer = self.best()
        return TrainResult(run_dir=self.run_dir, history=pd.DataFrame(self.history, columns=list(HISTORY_COLUMNS)),
                           best_epoch=best_epoch, best_val_eer=best_eer, test_eer=test_eer,
                           stopped_early=bool(stopped_early), finished=finished, n_skipped=len(self.skipped))

    def _share_last_row(self) -> None:
        """Give every rank rank 0's newest history row, so all of them agree on early stopping."""
        if self.dist.world_size > 1:
            import torch.distributed as dist

            row = [self.history[-1] if self.dist.main else None]
            dist.broadcast_object_list(row, src=0)
            if not self.dist.main:
                self.history.append(row[0])

    def finish(self) -> float:
        """Score val and test with the best model; write scores CSVs and metrics.json. Returns the test EER."""
        c = self.config
        best_path = self.run_dir / "best.pt"
        if not best_path.exists():  # no finite val EER ever: export the last epoch so detect has a model
            export_model(best_path, self.model, c, float("nan"), 0.0, int(self.history[-1]["epoch"]))
        best = load_trained_model(best_path, device=str(self.device))
        metrics: dict[str, Any] = {"best_epoch": best.epoch, "val_eer": best.val_eer, "threshold": best.threshold}
        val = score_dataset(best.model, self.val_set, c.eval_batch_size, self.device, c.num_workers, self.progress,
                            desc="val")
        write_scores(self.run_dir / "val_scores.csv", self.tables[c.val_split], val)
        test_table = self.tables[c.test_split]
        test_eer = float("nan")
        if len(test_table):
            test_set = ClipDataset(test_table, c.clip_samples, c.sample_rate, max_windows=c.eval_windows)
            test = score_dataset(best.model, test_set, c.eval_batch_size, self.device, c.num_workers, self.progress,
                                 desc="test")
            self._record_skipped(test)
            write_scores(self.run_dir / "scores.csv", test_table, test)
            test_eer = test.eer()[0]
            metrics.update({"test_eer": test_eer, "test_acc_at_val_threshold": test.accuracy(best.threshold),
                            "test_loss": test.loss, "test_files": int(test.scores.size)})
        self.write_tables()
        write_text_atomic(self.run_dir / "metrics.json", json.dumps(_json_safe(metrics), indent=2))
        return test_eer


def _json_safe(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def train(manifest: str | Path, config: TrainConfig, run_dir: str | Path, *, progress: bool = False,
          stop_after_epochs: int | None = None) -> TrainResult:
    """Train ``config.model`` on the splits of ``manifest`` into a new ``run_dir``.

    ``stop_after_epochs`` pauses after that many epochs (a time-sliced job); `resume` continues it.
    """
    run_dir = Path(run_dir)
    if _checkpoints(run_dir):
        raise TrainError(run_dir, "already holds checkpoints; resume it or choose another folder")
    manifest = Path(manifest).resolve()
    run = _Run(manifest, config, run_dir, progress)
    if run.dist.main:
        write_run_info(run_dir, "train", {"manifest": str(manifest), **config_to_dict(config)}, seed=config.seed)
    try:
        return run.run(stop_after_epochs)
    finally:
        run.dist.close()


def resume(run_dir: str | Path, *, device: str | None = None, progress: bool = False,
           stop_after_epochs: int | None = None) -> TrainResult:
    """Continue ``run_dir`` from its last checkpoint with the config stored there (``device`` may change)."""
    run_dir = Path(run_dir)
    found = _checkpoints(run_dir)
    if not found:
        raise TrainError(run_dir, "no checkpoints/epoch_*.pt to resume from")
    path = found[-1][1]
    data = _load_checkpoint(path)
    config = build_config(TrainConfig, data["config"])
    if device is not None:
        config = dataclasses.replace(config, device=device)
    run = _Run(Path(data["manifest"]), config, run_dir, progress)
    run.restore(data, path)
    log.info("resuming %s from %s", run_dir, path.name)
    try:
        return run.run(stop_after_epochs)
    finally:
        run.dist.close()


def load_train_config(path: str | Path | None, overrides: list[str] | None = None,
                      **fields: Any) -> TrainConfig:
    """A TrainConfig from YAML plus ``key=value`` overrides plus explicit fields (last wins)."""
    from audios.config import load_config

    extra = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in fields.items() if v is not None]
    return load_config(TrainConfig, path, list(overrides or []) + extra)


__all__: list[str] = [
    "TrainConfig", "TrainError", "TrainResult", "TrainedModel", "SplitScores", "checkpoint_name", "export_model",
    "load_train_config", "load_trained_model", "logits_of", "plot_history", "resolve_device", "resume",
    "score_dataset", "scores_of", "seed_everything", "train", "write_scores",
]
