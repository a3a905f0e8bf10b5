"""Self-supervised speech embeddings: wav2vec 2.0, HuBERT or WavLM through ``transformers``, one vector each.

``model`` is a hub id (``facebook/wav2vec2-base``, ``microsoft/wavlm-base-plus``, ...) or a local folder
written by ``save_pretrained``; both go through ``AutoFeatureExtractor.from_pretrained`` and
``AutoModel.from_pretrained``, so an offline folder exercises exactly the path a hub id takes. The
columns are ``emb_0..emb_{d-1}`` for ``d`` = the model's hidden size (768 for the base models): the mean
over frames of the chosen layer. ``pool="mean+std"`` appends the per-dimension standard deviation over
frames as ``emb_d..emb_{2d-1}``.

Layers: ``layer="last"`` is the model's ``last_hidden_state``; an int ``k`` picks ``hidden_states[k]``
(0 is the transformer's input, the CNN features after projection and positional convolution; ``k`` the
output of transformer layer ``k``), a list of ints averages those hidden states frame by frame, and
``"all"`` averages every hidden state with equal weights (SUPERB's weighted layer sum with uniform
weights). In pre-norm checkpoints (``do_stable_layer_norm``, the large models) ``last_hidden_state`` has
the encoder's final layer norm applied and, in transformers 5, ``hidden_states[-1]`` does not; in
post-norm checkpoints (the base models) the two are the same.

Input: each signal is normalised to zero mean and unit variance over the whole recording (eps 1e-7,
Wav2Vec2FeatureExtractor's formula) when the checkpoint's feature extractor says ``do_normalize``
(without a ``preprocessor_config.json``: normalise, as Wav2Vec2FeatureExtractor does by default).
Signals longer than ``max_window_s`` are cut into the fewest equal windows; each window is embedded on
its own and the recording's mean (and std) are taken over the frames of all its windows together, i.e.
the window statistics are combined weighted by their frame counts.

Batching: windows are bucketed by length (``audios.features.batching``) into forward passes of at most
``batch_seconds`` of padded audio, zero-padded on the right, each padding at most ``max_padding`` of
its samples. Padded frames never enter the pooling: the
valid frame count of each window is ``model._get_feat_extract_output_lengths(samples)``. An
``attention_mask`` is passed only when the checkpoint's feature extractor returns one
(``return_attention_mask``; without a preprocessor config: when the CNN uses layer norm,
``feat_extract_norm="layer"``). Checkpoints with a group-norm CNN (wav2vec2-base, hubert-base) were
trained without attention masks and transformers advises not to pass one; their first convolution
normalises each channel over the whole padded sequence, so their embeddings shift slightly with the
padding a batch adds (cosine to the unpadded embedding stays near 1; bucketing keeps padding small).
``pad_unmasked=False`` runs such checkpoints one window at a time instead, which makes every embedding
independent of its batch. Masked layer-norm checkpoints (the large wav2vec2/HuBERT/WavLM models) give the
same embedding in any batch.

``quantize="int8"`` applies PyTorch dynamic int8 quantisation to the ``nn.Linear`` layers (weights int8,
activations quantised on the fly; see ``quantize_int8``) and, with ``cnn="chunked"`` (the default), runs the
convolutional front end in int8 with a scale per frame (``audios.features.ssl_cnn``), which speeds up CPU inference;
the positional convolution stays fp32. ``quantize="bf16"`` runs the forward pass under bfloat16 autocast (weights
stay fp32): fast on CPUs with AVX512-BF16 or AMX and on GPUs, slower on CPUs without them. ``quantization_cosine``
measures how close either stays to fp32.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from audios.errors import ConfigError, TooShortError
from audios.features.base import check_batch, positive
from audios.features.batching import bucket_batches, split_windows
from audios.features.ssl_cnn import chunked_encoder

log = logging.getLogger(__name__)

POOLS = ("mean", "mean+std")
QUANTIZE = ("none", "int8", "bf16")
CNN_MODES = ("chunked", "stock")
LAYER_WORDS = ("last", "all")
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


@dataclass(frozen=True)
class SslConfig:
    """Which checkpoint, layer(s) and pooling; how to window, batch and run it."""

    model: str = "facebook/wav2vec2-base"
    layer: int | tuple[int, ...] | str = "last"
    pool: str = "mean"
    sample_rate: int = 16000
    # Longer inputs are cut into windows: self-attention cost grows with the square of the length.
    max_window_s: float = 20.0
    # Padded audio per forward pass, in seconds summed over the batch (memory ~ batch * length).
    batch_seconds: float = 80.0
    # A window joins a forward pass only if padding it to the pass's longest window wastes at most this.
    max_padding: float = 0.1
    quantize: str = "none"
    device: str = "cpu"
    # Models without attention masks see the zero padding (see the module doc); False runs their
    # windows one at a time, so each embedding is independent of its batch, at some cost in speed.
    pad_unmasked: bool = True
    # "chunked": the CNN front end computed frame-major in short time chunks on the CPU (same numbers in fp32, about
    # 1.2x faster; int8 mode runs its convolutions in int8, see ssl_cnn.py); "stock": as transformers runs it.
    cnn: str = "chunked"

    def __post_init__(self) -> None:
        positive("SslConfig", sample_rate=self.sample_rate, max_window_s=self.max_window_s,
                 batch_seconds=self.batch_seconds)
        if not 0 <= self.max_padding < 1:
            raise ConfigError(f"SslConfig.max_padding={self.max_padding} must be in [0, 1)")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"SslConfig.model={self.model!r} must be a hub id or a folder")
        layer = self.layer
        if isinstance(layer, list):
            object.__setattr__(self, "layer", tuple(layer))
            layer = self.layer
        if isinstance(layer, str):
            if layer not in LAYER_WORDS:
                raise ConfigError(f"SslConfig.layer={layer!r} must be 'last', 'all', an index or a list of indices")
        elif isinstance(layer, tuple):
            if not layer or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in layer):
                raise ConfigError(f"SslConfig.layer={layer!r}: a list of layers must hold indices >= 0")
            if len(set(layer)) != len(layer):
                raise ConfigError(f"SslConfig.layer={layer!r} repeats a layer")
        elif isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise ConfigError(f"SslConfig.layer={layer!r} must be 'last', 'all', an index >= 0 or a list")
        if self.pool not in POOLS:
            raise ConfigError(f"SslConfig.pool={self.pool!r} must be one of {POOLS}")
        if self.quantize not in QUANTIZE:
            raise ConfigError(f"SslConfig.quantize={self.quantize!r} must be one of {QUANTIZE}")
        if self.quantize == "int8" and self.device != "cpu":
            raise ConfigError(f"SslConfig.quantize='int8' runs on the CPU only, not device={self.device!r}")
        if self.cnn not in CNN_MODES:
            raise ConfigError(f"SslConfig.cnn={self.cnn!r} must be one of {CNN_MODES}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"SslConfig.device={self.device!r} must be 'cpu' or 'cuda[:n]'")


@dataclass(frozen=True)
class _Loaded:
    """A checkpoint ready to run: the model and what its feature extractor asks for."""

    model: Any
    hidden_size: int
    n_hidden_states: int  # num_hidden_layers + 1
    normalize: bool
    attention_mask: bool
    min_samples: int


def _min_samples(model: Any) -> int:
    """Fewest input samples for which the CNN yields one frame (400 for the wav2vec2 stack)."""
    n = 1
    while int(model._get_feat_extract_output_lengths(n)) < 1:
        n += 1
    return n


def _read_model_config(name: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SslConfig.model={name!r}: cannot load its config ({exc})") from exc


@functools.lru_cache(maxsize=8)
def _hidden_size(name: str) -> tuple[int, int]:
    """(hidden size, number of hidden states) of a checkpoint, from its config alone."""
    config = _read_model_config(name)
    try:
        return int(config.hidden_size), int(config.num_hidden_layers) + 1
    except AttributeError as exc:
        raise ConfigError(f"SslConfig.model={name!r}: config has no hidden_size/num_hidden_layers") from exc


@functools.lru_cache(maxsize=2)
def load_ssl_model(name: str, quantize: str = "none", device: str = "cpu", cnn: str = "chunked") -> _Loaded:
    """Load (once per process) checkpoint ``name`` in eval mode, int8-quantised when asked. ``cnn="chunked"``
    swaps the convolutional front end for ``ssl_cnn``'s chunked one on the CPU in fp32 and int8 (bf16 keeps the
    stock one, whose convolutions autocast runs in bfloat16)."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2FeatureExtractor

    config = _read_model_config(name)
    try:
        model = AutoModel.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SslConfig.model={name!r}: cannot load the model ({exc})") from exc
    if not hasattr(model, "_get_feat_extract_output_lengths"):
        raise ConfigError(
            f"SslConfig.model={name!r}: {type(model).__name__} is not a wav2vec2-style waveform model"
        )
    try:
        processor = AutoFeatureExtractor.from_pretrained(name)
    except (OSError, ValueError):
        # No preprocessor_config.json: what Wav2Vec2FeatureExtractor does by default, with the mask
        # rule transformers uses for these models (layer-norm CNNs were trained with attention masks).
        processor = Wav2Vec2FeatureExtractor(
            do_normalize=True, return_attention_mask=getattr(config, "feat_extract_norm", "") == "layer"
        )
    rate = getattr(processor, "sampling_rate", 16000)
    if rate != 16000:
        log.warning("%s: feature extractor expects %s Hz audio", name, rate)
    model.eval()
    if quantize == "int8":
        model = quantize_int8(model)
    if cnn == "chunked" and device == "cpu" and quantize in ("none", "int8"):
        chunked = chunked_encoder(model.feature_extractor, int8=quantize == "int8")
        if chunked is None:
            log.info("%s: feature encoder layout not handled by ssl_cnn; keeping the stock one", name)
        else:
            model.feature_extractor = chunked
    model.to(device)
    return _Loaded(
        model=model, hidden_size=int(config.hidden_size), n_hidden_states=int(config.num_hidden_layers) + 1,
        normalize=bool(getattr(processor, "do_normalize", True)),
        attention_mask=bool(getattr(processor, "return_attention_mask", False)),
        min_samples=_min_samples(model),
    )


def quantize_int8(model: Any) -> Any:
    """A dynamically int8-quantised copy of ``model``: every ``nn.Linear``, or, where the model reads a
    projection's ``.weight`` tensor itself (WavLM's attention passes q/k/v/out weights to
    ``F.multi_head_attention_forward``), every ``nn.Linear`` except those attention projections."""
    import torch

    def quantized(spec: set) -> Any:
        with warnings.catch_warnings():
            # torch.ao.quantization is deprecated in favour of torchao but still works in this torch.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            q = torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
        with torch.inference_mode():
            q(torch.zeros(1, 2 * _min_samples(model)).uniform_(-1, 1, generator=torch.Generator().manual_seed(0)))
        return q

    try:
        return quantized({torch.nn.Linear})
    except (TypeError, RuntimeError) as exc:
        names = {name for name, module in model.named_modules()
                 if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in ATTENTION_PROJECTIONS}
        log.info("%s: int8 on every Linear failed (%s); keeping attention projections in fp32",
                 type(model).__name__, exc)
        return quantized(names)


class SslExtractor:
    """Pooled hidden states of a wav2vec 2.0 / HuBERT / WavLM checkpoint: one vector per recording."""

    name: ClassVar[str] = "ssl"
    kind: ClassVar[str] = "vector"
    version: ClassVar[int] = 2  # 2: int8 runs the CNN in int8 too (ssl_cnn.py)
    decode_ahead: ClassVar[bool] = True  # decoding is cheap next to the model: overlap it (see extract.py)
    Config = SslConfig

    def __init__(self, config: SslConfig = SslConfig()) -> None:
        self.config = config

    # Only the config travels to worker processes; each loads (and caches) the model itself.
    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]

    @property
    def dims(self) -> int:
        """Hidden size of the checkpoint (read from its config, without loading weights)."""
        return _hidden_size(self.config.model)[0]

    @property
    def columns(self) -> tuple[str, ...]:
        width = self.dims * (2 if self.config.pool == "mean+std" else 1)
        return tuple(f"emb_{i}" for i in range(width))

    def _layers(self, n_hidden_states: int) -> tuple[int, ...] | None:
        """Hidden-state indices to average, or None for the model's final output."""
        layer = self.config.layer
        if layer == "last":
            return None
        if layer == "all":
            return tuple(range(n_hidden_states))
        chosen = (layer,) if isinstance(layer, int) else tuple(layer)
        for k in chosen:
            if k >= n_hidden_states:
                raise ConfigError(
                    f"SslConfig.layer={layer!r}: {self.config.model} has hidden states 0..{n_hidden_states - 1}"
                )
        return chosen

    def extract(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Mono float32 signals at ``config.sample_rate`` -> one float64 vector of ``len(columns)`` each."""
        signals = check_batch(batch)
        loaded = load_ssl_model(self.config.model, self.config.quantize, self.config.device, self.config.cnn)
        layers = self._layers(loaded.n_hidden_states)
        c = self.config
        segments: list[tuple[int, np.ndarray]] = []  # (signal index, normalised window)
        for i, x in enumerate(signals):
            if x.shape[0] < loaded.min_samples:
                raise TooShortError(
                    f"batch[{i}]", f"{x.shape[0]} samples; {c.model} needs at least {loaded.min_samples}"
                )
            if loaded.normalize:
                x64 = x.astype(np.float64)
                x = ((x64 - x64.mean()) / np.sqrt(x64.var() + NORM_EPS)).astype(np.float32)
            for start, stop in split_windows(x.shape[0], int(c.max_window_s * c.sample_rate)):
                segments.append((i, x[start:stop]))
        # Per signal: frame count, sum and sum of squares over frames (float64), pooled across windows.
        count = np.zeros(len(signals))
        total = np.zeros((len(signals), loaded.hidden_size))
        squares = np.zeros((len(signals), loaded.hidden_size))
        lengths = [seg.shape[0] for _, seg in segments]
        budget = int(c.batch_seconds * c.sample_rate)
        max_items = None if loaded.attention_mask or c.pad_unmasked else 1
        for group in bucket_batches(lengths, budget, max_items, c.max_padding):
            for k, (n, s, ss) in zip(group, self._forward([segments[j][1] for j in group], loaded, layers),
                                     strict=True):
                i = segments[k][0]
                count[i] += n
                total[i] += s
                squares[i] += ss
        mean = total / count[:, None]
        if c.pool == "mean":
            return list(mean)
        std = np.sqrt(np.maximum(squares / count[:, None] - mean**2, 0.0))
        return list(np.concatenate([mean, std], axis=1))

    def _forward(self, windows: list[np.ndarray], loaded: _Loaded, layers: tuple[int, ...] | None
                 ) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(valid frames, sum over them, sum of squares) of the selected representation, per window."""
        import torch

        lengths = torch.tensor([w.shape[0] for w in windows])
        padded = np.zeros((len(windows), int(lengths.max())), dtype=np.float32)
        for row, w in enumerate(windows):
            padded[row, :w.shape[0]] = w
        device = self.config.device
        inputs = {"input_values": torch.from_numpy(padded).to(device)}
        if loaded.attention_mask:
            inputs["attention_mask"] = (torch.arange(padded.shape[1])[None, :] < lengths[:, None]).long().to(device)
        precision = torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                                   enabled=self.config.quantize == "bf16")
        with torch.inference_mode(), precision:
            out = loaded.model(**inputs, output_hidden_states=layers is not None)
            if layers is None:
                hidden = out.last_hidden_state  # (batch, frames, dims)
            else:
                hidden = torch.stack([out.hidden_states[k] for k in layers]).mean(dim=0)
            frames = loaded.model._get_feat_extract_output_lengths(lengths).to(torch.long)
            frames = torch.clamp(frames, max=hidden.shape[1])
            valid = (torch.arange(hidden.shape[1])[None, :] < frames[:, None]).to(hidden.dtype).to(hidden.device)
            h = hidden.double() * valid[..., None].double()
            sums = h.sum(dim=1).cpu().numpy()
            squares = (h * h).sum(dim=1).cpu().numpy()
        return [(int(frames[r]), sums[r], squares[r]) for r in range(len(windows))]


def quantization_cosine(config: SslConfig, batch: list[np.ndarray], mode: str = "int8") -> np.ndarray:
    """Cosine similarity, per signal, between the fp32 embeddings of ``batch`` and those in ``mode`` (int8 or
    bf16)."""
    if mode not in QUANTIZE[1:]:
        raise ConfigError(f"quantization_cosine: mode={mode!r} must be one of {QUANTIZE[1:]}")
    fp32 = SslExtractor(replace(config, quantize="none")).extract(batch)
    other = SslExtractor(replace(config, quantize=mode, device="cpu" if mode == "int8" else config.device)
                         ).extract(batch)
    return np.array([float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(fp32, other, strict=True)])

