"""Speaker embeddings from Resemblyzer's pretrained voice encoder: one 256-d unit vector per recording.

The encoder ships inside the ``resemblyzer`` package (``pretrained.pt``, a 3-layer LSTM over 40-band mel
frames trained for speaker verification with the GE2E loss; Wan et al., ICASSP 2018), so it works
offline. It is the default neural extractor when no SSL checkpoint is at hand.

Preprocessing follows Resemblyzer's own ``preprocess_wav`` on 16 kHz audio, using its functions: the
volume is raised (never lowered) to -30 dBFS RMS, then silences longer than the VAD allows are cut out
(webrtcvad, mode 3, 30 ms windows). If the VAD keeps less than 0.1 s (it can drop synthetic or
non-speech signals entirely) the untrimmed signal is used instead; ``trim_silences=False`` skips the VAD.

Embedding follows ``VoiceEncoder.embed_utterance``: the signal is cut into 1.6 s partial utterances
(``partials_per_s`` of them per second, the last one zero-padded when it is at least ``min_coverage``
full), each partial is embedded, and the mean of the partial embeddings is scaled to unit length. Unlike
``embed_utterance``, the partials of a whole batch of recordings go through the LSTM together.
Columns are ``emb_0..emb_255``.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from audios.errors import ConfigError
from audios.features.base import check_batch, positive

log = logging.getLogger(__name__)

RESEMBLYZER_RATE = 16000
EMBEDDING_DIMS = 256
MIN_TRIMMED_SAMPLES = 1600  # 0.1 s: below this the VAD has thrown away the signal, not its pauses
NORM_TARGET_DBFS = -30.0  # resemblyzer.hparams.audio_norm_target_dBFS


@dataclass(frozen=True)
class ResemblyzerConfig:
    """Preprocessing and partial-utterance settings (Resemblyzer's defaults)."""

    sample_rate: int = RESEMBLYZER_RATE
    trim_silences: bool = True
    partials_per_s: float = 1.3
    min_coverage: float = 0.75
    # Partial utterances (160 frames x 40 mels each) per LSTM forward pass.
    batch_partials: int = 128
    device: str = "cpu"

    def __post_init__(self) -> None:
        positive("ResemblyzerConfig", sample_rate=self.sample_rate, partials_per_s=self.partials_per_s,
                 batch_partials=self.batch_partials)
        if self.sample_rate != RESEMBLYZER_RATE:
            raise ConfigError(
                f"ResemblyzerConfig.sample_rate={self.sample_rate}: the encoder was trained on {RESEMBLYZER_RATE} Hz"
            )
        # A partial lasts 1.6 s; fewer than 1/1.6 partials a second would leave gaps.
        if not 0.625 <= self.partials_per_s <= 100:
            raise ConfigError(f"ResemblyzerConfig.partials_per_s={self.partials_per_s} must be in [0.625, 100]")
        if not 0 < self.min_coverage <= 1:
            raise ConfigError(f"ResemblyzerConfig.min_coverage={self.min_coverage} must be in (0, 1]")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"ResemblyzerConfig.device={self.device!r} must be 'cpu' or 'cuda[:n]'")


def _resemblyzer() -> Any:
    try:
        with warnings.catch_warnings():
            # webrtcvad imports pkg_resources, which warns that it is deprecated.
            warnings.simplefilter("ignore")
            import resemblyzer
            import resemblyzer.audio
    except ImportError as exc:
        raise ConfigError(
            "the resemblyzer extractor needs the resemblyzer package: pip install --no-deps resemblyzer "
            f"webrtcvad 'setuptools<81' (--no-deps: its `typing` requirement breaks Python 3.11) ({exc})"
        ) from exc
    return resemblyzer


@functools.lru_cache(maxsize=2)
def load_voice_encoder(device: str = "cpu") -> Any:
    """Resemblyzer's pretrained VoiceEncoder on ``device``, loaded once per process, in eval mode."""
    encoder = _resemblyzer().VoiceEncoder(device=device, verbose=False)
    encoder.eval()
    return encoder


class ResemblyzerExtractor:
    """Resemblyzer GE2E speaker embedding (256-d, unit length) of each recording."""

    name: ClassVar[str] = "resemblyzer"
    kind: ClassVar[str] = "vector"
    version: ClassVar[int] = 1
    decode_ahead: ClassVar[bool] = True  # decoding is cheap next to the model: overlap it (see extract.py)
    Config = ResemblyzerConfig

    def __init__(self, config: ResemblyzerConfig = ResemblyzerConfig()) -> None:
        self.config = config

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f"emb_{i}" for i in range(EMBEDDING_DIMS))

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        """Volume up to -30 dBFS (never down), then long silences cut by the VAD (see the module doc)."""
        audio = _resemblyzer().audio
        wav = audio.normalize_volume(x.astype(np.float64), NORM_TARGET_DBFS, increase_only=True).astype(np.float32)
        if self.config.trim_silences:
            trimmed = audio.trim_long_silences(wav)
            if trimmed.shape[0] >= MIN_TRIMMED_SAMPLES:
                return trimmed
            log.debug("VAD kept %d of %d samples; using the untrimmed signal", trimmed.shape[0], wav.shape[0])
        return wav

    def extract(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Mono float32 16 kHz signals -> one float64 unit vector of 256 dims each."""
        import torch

        signals = check_batch(batch)
        resemblyzer = _resemblyzer()
        encoder = load_voice_encoder(self.config.device)
        partials: list[np.ndarray] = []
        owner: list[int] = []
        for i, x in enumerate(signals):
            wav = self.preprocess(x)
            wav_slices, mel_slices = resemblyzer.VoiceEncoder.compute_partial_slices(
                wav.shape[0], self.config.partials_per_s, self.config.min_coverage
            )
            wav = np.pad(wav, (0, max(0, wav_slices[-1].stop - wav.shape[0])))
            mel = resemblyzer.audio.wav_to_mel_spectrogram(wav)  # (frames, 40)
            for s in mel_slices:
                partials.append(mel[s])
                owner.append(i)
        stacked = np.stack(partials)  # (partials, 160, 40)
        embeds = []
        step = self.config.batch_partials
        with torch.inference_mode():
            for start in range(0, stacked.shape[0], step):
                chunk = torch.from_numpy(stacked[start:start + step]).to(self.config.device)
                embeds.append(encoder(chunk).cpu().numpy().astype(np.float64))
        partial_embeds = np.concatenate(embeds)
        owners = np.asarray(owner)
        out = []
        for i in range(len(signals)):
            mean = partial_embeds[owners == i].mean(axis=0)
            out.append(mean / np.linalg.norm(mean))
        return out
