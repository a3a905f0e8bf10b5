"""Supervised contrastive training: the SupCon loss, two views per clip, and the trainer's loss hook.

Khosla et al. 2020, "Supervised Contrastive Learning" (NeurIPS), eq. 2 (the L_out form): for a batch of
L2-normalised embeddings ``z`` with labels ``y``, every anchor ``i`` has positives ``P(i)`` = the other
embeddings with its label, and

    L = mean_i  -1/|P(i)| * sum_{p in P(i)} log( exp(z_i . z_p / t) / sum_{a != i} exp(z_i . z_a / t) )

with temperature ``t``. Anchors without a positive are left out of the mean. Each clip contributes two
views (``TwoViewClipDataset``), so every anchor has at least its other view as a positive; with two classes
all clips of the same class are positives too.

Views: ``augment`` draws one crop (25 % longer than a clip, as the plain dataset does) and augments it twice
independently (then crops each to a clip); ``crop`` takes two independent random crops of the recording (each
augmented when augmentation is on), i.e. two time slices of its spectrogram.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from audios.errors import AudioError, ConfigError
from audios.train.augment import augment_waveform
from audios.train.data import AUGMENT_MARGIN, ClipDataset, example_rng, random_crop

log = logging.getLogger(__name__)

LOSSES = ("ce", "supcon", "ce+supcon")
VIEWS = ("augment", "crop")


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) of embeddings ``z`` (n, d) with labels (n,).

    ``z`` is L2-normalised here (a no-op for unit rows). Returns a scalar; 0 when no anchor has a positive.
    """
    if z.dim() != 2 or labels.dim() != 1 or z.shape[0] != labels.shape[0]:
        raise ValueError(f"supcon_loss: need z (n, d) and labels (n,), got {tuple(z.shape)} and {tuple(labels.shape)}")
    if not temperature > 0:
        raise ValueError(f"supcon_loss: temperature must be positive, got {temperature}")
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0]
    logits = z @ z.T / temperature  # (n, n)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    # log softmax over a != i: the anchor itself is removed from the denominator.
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = positives.sum(dim=1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return z.sum() * 0.0
    pos_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return -(pos_log_prob[has_pos] / n_pos[has_pos]).mean()


class TwoViewClipDataset(ClipDataset):
    """A training ClipDataset whose examples hold two views of one clip: ``x`` is (2, clip_samples)."""

    def __init__(self, *args: Any, views: str = "augment", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if views not in VIEWS:
            raise ConfigError(f"TrainConfig.views={views!r} is not one of {list(VIEWS)}")
        if not self.train:
            raise ConfigError("TwoViewClipDataset is for training examples (train=True)")
        if views == "augment" and self.augment is None:
            raise ConfigError("TrainConfig.views='augment' needs at least one augmentation switched on in "
                              "TrainConfig.augment (or use views: crop)")
        self.views = views

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            x = self._load(index)
        except AudioError as exc:
            log.info("skipping %s", exc)
            return {"index": index, "path": str(self.paths[index]), "error": exc.reason}
        rng = example_rng(self.seed, self.epoch, index)
        sr, n = self.audio_config.sample_rate, self.clip_samples
        if self.views == "augment":
            base = random_crop(x, int(n * AUGMENT_MARGIN), rng)
            pair = [random_crop(augment_waveform(base, sr, self.augment, rng), n, rng) for _ in range(2)]
        elif self.augment is not None:
            pair = [random_crop(augment_waveform(random_crop(x, int(n * AUGMENT_MARGIN), rng), sr, self.augment, rng),
                                n, rng) for _ in range(2)]
        else:
            pair = [random_crop(x, n, rng) for _ in range(2)]
        return {"index": index, "x": torch.from_numpy(_stack(pair)), "label": int(self.labels[index])}


def _stack(pair: list[Any]) -> Any:
    import numpy as np

    return np.stack(pair).astype(np.float32, copy=False)


def check_loss_setup(loss: str, model: torch.nn.Module) -> None:
    """Refuse a loss the model cannot serve: contrastive losses need an embedding, ``supcon`` a detached classifier."""
    if loss == "ce":
        return
    if loss == "supcon" and not getattr(model, "classifier_detached", False):
        raise ConfigError("TrainConfig.loss='supcon' trains the encoder with the contrastive loss alone; it needs a "
                          "model whose classifier reads detached features (ssl-head with detach_classifier: true). "
                          "Use loss: ce+supcon otherwise")


def training_loss(output: Any, logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None,
                  loss: str, contrastive_weight: float, temperature: float) -> torch.Tensor:
    """The trainer's per-batch loss.

    ``ce``: cross-entropy on ``logits``. ``ce+supcon``: ``(1 - w) * CE + w * SupCon`` on the embedding
    ``output[0]``. ``supcon``: ``SupCon + CE``, where the model detaches its classifier's input so CE only
    trains the classifier.
    """
    ce = F.cross_entropy(logits, labels, weight=weight)
    if loss == "ce":
        return ce
    if not isinstance(output, tuple) or len(output) < 2:
        raise ConfigError(f"TrainConfig.loss={loss!r} needs a model returning (embedding, logits); this one returns "
                          "logits only")
    contrastive = supcon_loss(output[0], labels, temperature)
    if loss == "supcon":
        return contrastive + ce
    return (1.0 - contrastive_weight) * ce + contrastive_weight * contrastive


__all__ = ["LOSSES", "VIEWS", "TwoViewClipDataset", "check_loss_setup", "supcon_loss", "training_loss"]
