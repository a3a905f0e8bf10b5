"""SSL head: a wav2vec 2.0 / HuBERT / WavLM encoder with a projection head and a bona fide/spoof classifier.

The encoder is any ``transformers`` waveform checkpoint, a hub id (``facebook/wav2vec2-base``) or a folder
written by ``save_pretrained``, loaded with ``AutoModel.from_pretrained``; ``pretrained=False`` builds the same
architecture from its config alone with random weights (for benchmarks and tests without downloads).

Forward: each clip is normalised to zero mean and unit variance (the Wav2Vec2FeatureExtractor formula),
encoded, mean-pooled over frames to ``h`` (hidden size, 768 for base models), then

* projection: ``Linear(H, H) -> ReLU -> Linear(H, proj_dim)``, L2-normalised: the embedding a supervised
  contrastive loss reads (Khosla et al. 2020, "Supervised Contrastive Learning", use such an MLP head and
  normalise its output onto the unit sphere);
* classifier: ``Dropout -> Linear(H, classifier_hidden) -> ReLU -> Dropout -> Linear(., 2)`` on ``h``
  (a single ``Linear(H, 2)`` when ``classifier_hidden`` is 0).

The model returns ``(projection, logits)`` like AASIST returns ``(hidden, logits)``; the trainer's
``logits_of`` takes the last item. ``detach_classifier=True`` feeds the classifier a stop-gradient copy
of ``h``, so cross-entropy trains the classifier alone and only the contrastive loss shapes the encoder
(SupCon's two stages, run jointly); the trainer's ``loss: supcon`` requires it.

Freezing (``freeze``): ``frozen`` trains the heads only (the encoder also stays in eval mode: no dropout,
no SpecAugment masking); ``last-1`` / ``last-2`` also train the last one or two transformer layers and,
in pre-norm checkpoints (``do_stable_layer_norm``), the encoder's final layer norm that follows them;
``full`` trains every parameter, the CNN feature encoder included.
Class convention (ASVspoof): logit 0 is spoof, logit 1 is bona fide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audios.config import build_config
from audios.errors import ConfigError

log = logging.getLogger(__name__)

name = "ssl-head"

FREEZE_STRATEGIES = ("frozen", "last-1", "last-2", "full")
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


@dataclass(frozen=True)
class SslHeadConfig:
    """encoder: hub id or folder; pretrained: load its weights (False: random weights from its config);
    freeze: one of ``FREEZE_STRATEGIES``; proj_dim: width of the contrastive embedding;
    classifier_hidden: hidden width of the classifier (0: linear); dropout: in the classifier;
    normalize: zero-mean unit-variance input per clip; detach_classifier: classifier on stop-gradient features.
    """

    encoder: str = "facebook/wav2vec2-base"
    pretrained: bool = True
    freeze: str = "last-2"
    proj_dim: int = 128
    classifier_hidden: int = 128
    dropout: float = 0.1
    normalize: bool = True
    detach_classifier: bool = False
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, str) or not self.encoder.strip():
            raise ConfigError(f"SslHeadConfig.encoder={self.encoder!r} must be a hub id or a folder")
        if self.freeze not in FREEZE_STRATEGIES:
            raise ConfigError(f"SslHeadConfig.freeze={self.freeze!r} is not one of {list(FREEZE_STRATEGIES)}")
        if self.proj_dim <= 0 or self.classifier_hidden < 0:
            raise ConfigError(f"SslHeadConfig: need proj_dim > 0 and classifier_hidden >= 0, got "
                              f"proj_dim={self.proj_dim}, classifier_hidden={self.classifier_hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"SslHeadConfig.dropout: must lie in [0, 1), got {self.dropout}")
        if self.sample_rate <= 0:
            raise ConfigError(f"SslHeadConfig.sample_rate: must be positive, got {self.sample_rate}")


Config = SslHeadConfig


def load_encoder(name_or_path: str, pretrained: bool = True) -> nn.Module:
    """The ``transformers`` waveform model ``name_or_path`` (weights loaded, or random when not ``pretrained``)."""
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(name_or_path)
        model = AutoModel.from_pretrained(name_or_path) if pretrained else AutoModel.from_config(config)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SslHeadConfig.encoder={name_or_path!r}: cannot load it ({exc})") from exc
    if not hasattr(model, "_get_feat_extract_output_lengths") or not hasattr(model, "encoder"):
        raise ConfigError(f"SslHeadConfig.encoder={name_or_path!r}: {type(model).__name__} is not a "
                          "wav2vec2-style waveform model")
    return model


class SslHead(nn.Module):
    """Waveform (batch, samples) -> (projection (batch, proj_dim), unit norm; logits (batch, 2))."""

    def __init__(self, config: SslHeadConfig = SslHeadConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder = load_encoder(config.encoder, config.pretrained)
        hidden = int(self.encoder.config.hidden_size)
        self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, config.proj_dim))
        if config.classifier_hidden:
            self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(hidden, config.classifier_hidden),
                                            nn.ReLU(), nn.Dropout(config.dropout),
                                            nn.Linear(config.classifier_hidden, 2))
        else:
            self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(hidden, 2))
        self.min_samples = self._min_samples()
        apply_freezing(self, config.freeze)

    @property
    def classifier_detached(self) -> bool:
        """True when cross-entropy cannot reach the encoder (the trainer's ``loss: supcon`` needs it)."""
        return self.config.detach_classifier

    def _min_samples(self) -> int:
        n = 1
        while int(self.encoder._get_feat_extract_output_lengths(n)) < 1:
            n += 1
        return n

    def train(self, mode: bool = True) -> SslHead:
        super().train(mode)
        if self.config.freeze == "frozen":
            self.encoder.eval()  # a frozen encoder is a fixed feature extractor: no dropout or masking
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 2:
            raise ValueError(f"SslHead expects a (batch, samples) waveform, got shape {tuple(x.shape)}")
        if x.size(1) < self.min_samples:
            raise ValueError(f"SslHead needs at least {self.min_samples} samples, got {x.size(1)}")
        if self.config.normalize:
            x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, unbiased=False, keepdim=True) + NORM_EPS)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.freeze != "frozen"):
            frames = self.encoder(input_values=x).last_hidden_state  # (batch, frames, hidden)
        h = frames.mean(dim=1)  # (batch, hidden)
        z = F.normalize(self.projection(h), dim=1)  # (batch, proj_dim), unit length
        logits = self.classifier(h.detach() if self.config.detach_classifier else h)  # (batch, 2)
        return z, logits


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The transformer layers of a wav2vec2 / HuBERT / WavLM model, first to last."""
    layers = getattr(getattr(encoder, "encoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ConfigError(f"{type(encoder).__name__}: no transformer layers found at .encoder.layers")
    return layers


def trainable_encoder_modules(encoder: nn.Module, freeze: str) -> list[nn.Module]:
    """The encoder sub-modules that ``freeze`` leaves trainable (the whole encoder for ``full``)."""
    if freeze == "full":
        return [encoder]
    if freeze == "frozen":
        return []
    k = int(freeze.split("-")[1])
    layers = encoder_layers(encoder)
    if k > len(layers):
        raise ConfigError(f"SslHeadConfig.freeze={freeze!r}: the encoder has only {len(layers)} layer(s)")
    chosen: list[nn.Module] = list(layers[-k:])
    # Pre-norm checkpoints apply the encoder's layer norm after the last layer; post-norm ones before the first.
    if getattr(encoder.config, "do_stable_layer_norm", False) and hasattr(encoder.encoder, "layer_norm"):
        chosen.append(encoder.encoder.layer_norm)
    return chosen


def apply_freezing(model: SslHead, freeze: str) -> None:
    """Set ``requires_grad`` on every parameter of ``model`` as ``freeze`` says; the heads always train."""
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    for module in trainable_encoder_modules(model.encoder, freeze):
        for p in module.parameters():
            p.requires_grad_(True)
    for p in [*model.projection.parameters(), *model.classifier.parameters()]:
        p.requires_grad_(True)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("ssl-head %s: %d of %d parameters trainable", freeze, n_train, sum(p.numel() for p in model.parameters()))


def build_ssl_head(**overrides: Any) -> SslHead:
    """SSL head with the default config, fields overridden by keyword."""
    return SslHead(build_config(SslHeadConfig, dict(overrides)))


__all__ = ["FREEZE_STRATEGIES", "SslHead", "SslHeadConfig", "apply_freezing", "build_ssl_head", "encoder_layers",
           "load_encoder", "trainable_encoder_modules"]
