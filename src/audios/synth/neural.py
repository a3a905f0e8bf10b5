"""Neural copy-synthesis through ``transformers``: a mel-spectrogram vocoder and a neural audio codec.

``vocoder``: the recording's log-mel spectrogram is computed exactly as the vocoder was trained on it
and fed to the vocoder. Supported: SpeechT5's HiFi-GAN (``microsoft/speecht5_hifigan``, Ao et al.,
ACL 2022), whose features are those of ``SpeechT5FeatureExtractor``: 16 kHz audio, 64 ms Hann windows
(1024 samples) with a 16 ms hop (256 samples, the product of the generator's upsample rates), 1024-point
FFT magnitude (not power), 80 Slaney-normalised Slaney-scale mel bands from 80 to 7600 Hz, log10 with a
1e-10 floor. The model's ``mean``/``scale`` buffers normalise these inside the model.

``codec``: the recording is encoded to discrete codes and decoded again by EnCodec (Défossez et al.,
TMLR 2023; ``facebook/encodec_24khz``) at ``bandwidth_kbps``, or by DAC (Kumar et al., NeurIPS 2023;
``descript/dac_16khz``) with as many codebooks as fit in ``bandwidth_kbps``
(each costs frame rate x log2(codebook size) bit/s).

Both resample the source to the model's rate and the output back (soxr HQ). ``model`` is a hub id or a
local folder; both go through ``from_pretrained``, so a folder written by ``save_pretrained`` behaves
exactly as a downloaded checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np

from audios.audio import resample
from audios.errors import ConfigError
from audios.synth.base import Method, SynthContext, fit_length, format_number, register

VOCODER_TYPES = ("speecht5_hifigan",)
CODEC_TYPES = ("encodec", "dac")


def model_tag(model: str) -> str:
    """The model's short name for generator names: the last part of a hub id or folder, lowercased."""
    return PurePath(model.rstrip("/")).name.lower() or "model"


def _load_config(field: str, model: str) -> Any:
    try:
        from transformers import AutoConfig
    except ImportError as exc:
        raise ConfigError(f"{field}: neural synthesis needs transformers (pip install transformers)") from exc
    try:
        return AutoConfig.from_pretrained(model)
    except Exception as exc:  # hub/network/file errors come in many types; all mean "cannot load"
        raise ConfigError(f"{field}={model!r}: cannot load the model's config ({type(exc).__name__}: {exc}); "
                          "give a hub id (network or cache needed) or a folder written by save_pretrained") from exc


def _load_model(field: str, model: str, cls: Any) -> Any:
    try:
        return cls.from_pretrained(model).eval()
    except Exception as exc:
        raise ConfigError(f"{field}={model!r}: cannot load the model ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class VocoderConfig:
    """Which vocoder, and the mel analysis its features need (SpeechT5 HiFi-GAN's by default)."""

    model: str = "microsoft/speecht5_hifigan"
    # The window is win_hops hops long (4 x 16 ms = 64 ms for SpeechT5).
    win_hops: int = 4
    fmin_hz: float = 80.0
    fmax_hz: float = 7600.0
    mel_floor: float = 1e-10

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("vocoder.model must name a hub id or a folder")
        if not 1 <= self.win_hops <= 16:
            raise ConfigError(f"vocoder.win_hops={self.win_hops} must be in [1, 16]")
        if not 0 <= self.fmin_hz < self.fmax_hz:
            raise ConfigError(f"vocoder.fmin_hz={self.fmin_hz} must be >= 0 and below fmax_hz={self.fmax_hz}")
        if not 0 < self.mel_floor < 1:
            raise ConfigError(f"vocoder.mel_floor={self.mel_floor} must be in (0, 1)")

    def generator(self) -> str:
        return f"vocoder-{model_tag(self.model)}"


def log_mel(x: np.ndarray, sample_rate: int, n_mels: int, hop: int, win: int, fmin_hz: float, fmax_hz: float,
            floor: float) -> np.ndarray:
    """(n,) float32 -> (frames, n_mels) log10 mel magnitude; centred frames, frames = 1 + n // hop."""
    import librosa

    n_fft = 1 << (win - 1).bit_length()
    mag = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", center=True,
                              pad_mode="reflect"))
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin_hz,
                                fmax=min(fmax_hz, sample_rate / 2), htk=False, norm="slaney")
    return np.log10(np.maximum(basis @ mag, floor)).T.astype(np.float32)


class VocoderSynthesizer:
    level_mode = "rms"

    def __init__(self, config: VocoderConfig) -> None:
        from transformers import SpeechT5HifiGan

        self.config = config
        hf = _check_vocoder(config)
        self.model = _load_model("vocoder.model", config.model, SpeechT5HifiGan)
        self.rate = int(hf.sampling_rate)
        self.n_mels = int(hf.model_in_dim)
        self.hop = int(np.prod(hf.upsample_rates))

    def __call__(self, x: np.ndarray, sample_rate: int, context: SynthContext) -> np.ndarray:
        import torch

        cfg = self.config
        z = resample(x, sample_rate, self.rate)
        mel = log_mel(z, self.rate, self.n_mels, self.hop, cfg.win_hops * self.hop, cfg.fmin_hz, cfg.fmax_hz,
                      cfg.mel_floor)
        with torch.inference_mode():
            y = self.model(torch.from_numpy(mel)).numpy()
        return fit_length(resample(y.astype(np.float32), self.rate, sample_rate), x.size)


def _check_vocoder(config: VocoderConfig) -> Any:
    hf = _load_config("vocoder.model", config.model)
    if hf.model_type not in VOCODER_TYPES:
        raise ConfigError(f"vocoder.model={config.model!r} is a {hf.model_type!r} model; supported vocoders: "
                          f"{list(VOCODER_TYPES)}")
    return hf


@dataclass(frozen=True)
class CodecConfig:
    """Which codec and at what bit rate."""

    model: str = "facebook/encodec_24khz"
    bandwidth_kbps: float = 6.0

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("codec.model must name a hub id or a folder")
        if not 0 < self.bandwidth_kbps <= 100:
            raise ConfigError(f"codec.bandwidth_kbps={self.bandwidth_kbps} must be in (0, 100]")

    def generator(self) -> str:
        return f"codec-{model_tag(self.model)}-{format_number(self.bandwidth_kbps)}kbps"


def dac_quantizers(hf: Any, bandwidth_kbps: float) -> int:
    """How many DAC codebooks fit in ``bandwidth_kbps`` (at least one, at most all)."""
    frame_rate = hf.sampling_rate / hf.hop_length
    per_codebook = frame_rate * math.log2(hf.codebook_size)
    return int(min(hf.n_codebooks, max(1, math.floor(bandwidth_kbps * 1000 / per_codebook + 1e-9))))


def _check_codec(config: CodecConfig) -> Any:
    hf = _load_config("codec.model", config.model)
    if hf.model_type not in CODEC_TYPES:
        raise ConfigError(f"codec.model={config.model!r} is a {hf.model_type!r} model; supported codecs: "
                          f"{list(CODEC_TYPES)}")
    if hf.model_type == "encodec":
        allowed = [float(b) for b in hf.target_bandwidths]
        if float(config.bandwidth_kbps) not in allowed:
            raise ConfigError(f"codec.bandwidth_kbps={config.bandwidth_kbps} is not one of this EnCodec's "
                              f"bandwidths {allowed}")
    return hf


class CodecSynthesizer:
    level_mode = "rms"

    def __init__(self, config: CodecConfig) -> None:
        from transformers import DacModel, EncodecModel

        self.config = config
        hf = _check_codec(config)
        self.kind = hf.model_type
        cls = EncodecModel if self.kind == "encodec" else DacModel
        self.model = _load_model("codec.model", config.model, cls)
        self.rate = int(hf.sampling_rate)
        self.channels = int(getattr(hf, "audio_channels", 1) or 1)
        self.n_quantizers = dac_quantizers(hf, config.bandwidth_kbps) if self.kind == "dac" else None

    def __call__(self, x: np.ndarray, sample_rate: int, context: SynthContext) -> np.ndarray:
        import torch

        z = torch.from_numpy(resample(x, sample_rate, self.rate))
        inp = z.reshape(1, 1, -1).expand(1, self.channels, -1).contiguous()  # (batch, channels, time)
        with torch.inference_mode():
            if self.kind == "encodec":
                out = self.model(inp, bandwidth=float(self.config.bandwidth_kbps)).audio_values
            else:
                out = self.model(inp, n_quantizers=self.n_quantizers).audio_values
        y = out.reshape(out.shape[0], -1, out.shape[-1]).mean(dim=1)[0].numpy()  # channels averaged to mono
        return fit_length(resample(y.astype(np.float32), self.rate, sample_rate), x.size)


VOCODER = register(Method("vocoder", VocoderConfig, VocoderSynthesizer,
                          "neural vocoder copy-synthesis from log-mel features (transformers SpeechT5 HiFi-GAN)",
                          _check_vocoder))
CODEC = register(Method("codec", CodecConfig, CodecSynthesizer,
                        "encode/decode through a neural audio codec (transformers EnCodec or DAC)", _check_codec))
