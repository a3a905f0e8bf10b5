"""The convolutional front end of wav2vec 2.0 / HuBERT / WavLM, computed frame-major in short time chunks.

The stock feature encoder runs each of its seven convolutions over the whole padded batch: every layer writes a
(batch, 512, frames) tensor of up to hundreds of MB, and the normalisation and GELU that follow each make another
pass over it through main memory. On a CPU those passes cost about as much as the convolutions. ``ChunkedEncoder``
computes the same function one recording and one stretch of output frames at a time, so every intermediate stays
in cache, with each convolution written as the matrix products it is (frames as rows, channels as columns).

Each output frame depends on 400 input samples only (the receptive field), so a chunk of output frames needs just
its own stretch of input, and chunks give exactly what the whole sequence gives. The one global step is the group
norm after the first convolution (wav2vec2-base, HuBERT-base), which normalises each channel over all frames of
the padded input. Its statistics come in closed form from the input: with ``u_t`` the t-th window of ``k`` samples
and ``w_c`` channel c's kernel, the channel's mean is ``w_c . mean_t(u_t)`` and its mean square is
``w_c^T M w_c`` with ``M = mean_t(u_t u_t^T)``, a k-by-k matrix (computed in float64).

``int8=True`` runs the 512-channel convolutions (every layer after the first) in int8: weights quantised per
output channel, activations quantised per frame (one scale for each frame's channels), products in int32
(``torch._int_mm``), rescaled per frame and per channel. A scale per frame follows the signal's loudness over
time; one scale for a whole tensor, which PyTorch's dynamic quantisation uses, lets the loudest frame set the step
for every quiet one (tried: embedding cosine to fp32 fell to 0.85 on real recordings). A kernel of ``k`` taps and
stride ``s`` is the sum over taps ``j`` of (frames ``j, j+s, j+2s, ...``) times (tap ``j``'s weights), so each tap
is one integer product over frames that each keep their own scale.
"""

from __future__ import annotations

from typing import Any

# Output frames (20 ms each) computed per chunk: 32 frames keep the largest intermediate (the first layer's
# output, about 2,000 frames x 512 channels x 4 bytes = 4 MB) in cache.
CHUNK_FRAMES = 32
QMAX = 127.0


def _norm_kind(layer: Any) -> str | None:
    """'group' (per channel over time), 'layer' (per frame over channels), '' (none), None: not understood."""
    import torch

    norm = getattr(layer, "layer_norm", None)
    if norm is None:
        return ""
    if isinstance(norm, torch.nn.GroupNorm) and norm.num_groups == norm.num_channels and norm.affine:
        return "group"
    if isinstance(norm, torch.nn.LayerNorm) and norm.elementwise_affine:
        return "layer"
    return None


def chunked_encoder(encoder: Any, int8: bool = False, chunk_frames: int = CHUNK_FRAMES) -> Any:
    """A ``ChunkedEncoder`` computing what ``encoder`` computes, or None where its layout is not the one handled
    (then keep ``encoder``)."""
    import torch

    # Defined here, not at module level, so that importing audios.features (core install) does not import torch.
    class ChunkedEncoder(torch.nn.Module):
        """A drop-in replacement for a model's ``feature_extractor`` (inference only): same input (batch,
        samples), same output (batch, channels, frames), the same numbers to float32 rounding (fp32) or to within
        int8 rounding (``int8=True``)."""

        def __init__(self) -> None:
            super().__init__()
            self.body = _Chunked(encoder, int8, chunk_frames)

        def forward(self, input_values: Any) -> Any:
            return self.body.forward(input_values)

    return ChunkedEncoder() if _Chunked.supports(encoder) else None


class _Chunked:
    """The weights in the layout the chunked forward pass wants, and that pass (see the module doc)."""

    def __init__(self, encoder: Any, int8: bool, chunk_frames: int) -> None:
        import torch

        self.int8 = int8
        self.chunk_frames = chunk_frames
        self.layers: list[dict[str, Any]] = []
        with torch.no_grad():
            for index, layer in enumerate(encoder.conv_layers):
                conv = layer.conv
                k, s = int(conv.kernel_size[0]), int(conv.stride[0])
                weight = conv.weight.detach().float()  # (out, in, k)
                spec: dict[str, Any] = {
                    "k": k, "s": s, "norm": _norm_kind(layer), "act": layer.activation,
                    "bias": None if conv.bias is None else conv.bias.detach().float().clone(),
                }
                if spec["norm"] == "group":
                    spec["gamma"] = layer.layer_norm.weight.detach().float().clone()
                    spec["beta"] = layer.layer_norm.bias.detach().float().clone()
                    spec["eps"] = float(layer.layer_norm.eps)
                elif spec["norm"] == "layer":
                    spec["ln"] = layer.layer_norm
                taps = weight.permute(2, 1, 0).contiguous()  # (k, in, out): tap j maps a frame's channels to out
                if index == 0:
                    spec["w"] = taps.reshape(k * taps.shape[1], taps.shape[2]).contiguous()  # (k * in, out)
                elif int8:
                    scale = taps.abs().amax(dim=(0, 1)).clamp_min(1e-12) / QMAX  # per output channel
                    spec["wq"] = torch.round(taps / scale).clamp(-QMAX, QMAX).to(torch.int8).contiguous()
                    spec["wscale"] = scale
                else:
                    spec["taps"] = taps
                self.layers.append(spec)
            self.out_channels = int(weight.shape[0])

    @staticmethod
    def supports(encoder: Any) -> bool:
        """Whether ``encoder`` is the conv stack this class reproduces (1-channel input, group norm first only)."""
        layers = getattr(encoder, "conv_layers", None)
        if not layers:
            return False
        for index, layer in enumerate(layers):
            conv = getattr(layer, "conv", None)
            if conv is None or getattr(layer, "activation", None) is None:
                return False
            if conv.groups != 1 or conv.padding not in ((0,), 0) or conv.dilation not in ((1,), 1):
                return False
            if (index == 0) != (conv.in_channels == 1):
                return False
            kind = _norm_kind(layer)
            if kind is None or (kind == "group" and index != 0):
                return False
        return True

    def _sample_span(self, first: int, stop: int) -> tuple[int, int]:
        """The input samples that output frames [first, stop) of the last layer depend on."""
        for spec in reversed(self.layers):
            first, stop = first * spec["s"], (stop - 1) * spec["s"] + spec["k"]
        return first, stop

    def _group_affine(self, x: Any, spec: dict[str, Any]) -> tuple[Any, Any]:
        """Per channel a, c with group-norm(conv(x)) = conv(x) * a + c, from the input's window moments."""
        import torch

        k, s = spec["k"], spec["s"]
        frames = (x.shape[0] - k) // s + 1
        u = x.as_strided((frames, k), (s, 1)).double()
        mean_u = u.mean(dim=0)  # (k,)
        second = (u.T @ u) / frames  # (k, k)
        w = spec["w"].double()  # (k, out)
        mean = mean_u @ w
        square = ((second @ w) * w).sum(dim=0)
        if spec["bias"] is not None:
            b = spec["bias"].double()
            square = square + 2 * b * mean + b * b
            mean = mean + b
        var = (square - mean * mean).clamp_min(0.0)
        a = spec["gamma"].double() / torch.sqrt(var + spec["eps"])
        return a.float(), (spec["beta"].double() - mean * a).float()

    def _layer(self, h: Any, spec: dict[str, Any], index: int, affine: tuple[Any, Any] | None) -> Any:
        import torch

        k, s = spec["k"], spec["s"]
        n_out = (h.shape[0] - k) // s + 1
        if index == 0:  # h: samples (n,)
            y = h.as_strided((n_out, k), (s, 1)) @ spec["w"]
        else:  # h: frames (n, in)
            h = h.contiguous()

            def tap(t: Any, j: int) -> Any:
                """Rows j, j + s, j + 2s, ... of ``t``: a strided view, no copy (as_strided offsets are absolute)."""
                width = t.shape[1]
                return t.as_strided((n_out, width), (s * width, 1), t.storage_offset() + j * width)

            y = None
            if self.int8:
                scale = torch.linalg.vector_norm(h, ord=float("inf"), dim=1, keepdim=True).clamp_min_(1e-12).div_(QMAX)
                hq = (h / scale).round_().to(torch.int8)
                for j in range(k):
                    z = torch._int_mm(tap(hq, j), spec["wq"][j])
                    y = z * tap(scale, j) if y is None else y.addcmul_(z, tap(scale, j))
                y.mul_(spec["wscale"])
            else:
                for j in range(k):
                    y = tap(h, j) @ spec["taps"][j] if y is None else y.addmm_(tap(h, j), spec["taps"][j])
        if spec["bias"] is not None:
            y.add_(spec["bias"])
        if spec["norm"] == "group":
            y.mul_(affine[0]).add_(affine[1])
        elif spec["norm"] == "layer":
            y = spec["ln"](y)
        return spec["act"](y)

    def forward(self, input_values: Any) -> Any:
        import torch

        x = input_values.float()
        batch, samples = x.shape
        frames = samples
        for spec in self.layers:
            frames = (frames - spec["k"]) // spec["s"] + 1
        if frames < 1:
            raise ValueError(f"{samples} samples are too few for one frame of this feature encoder")
        with torch.inference_mode():
            out = torch.empty(batch, frames, self.out_channels, dtype=torch.float32)
            for b in range(batch):
                signal = x[b].contiguous()
                affine = self._group_affine(signal, self.layers[0]) if self.layers[0]["norm"] == "group" else None
                for first in range(0, frames, self.chunk_frames):
                    stop = min(first + self.chunk_frames, frames)
                    start, end = self._sample_span(first, stop)
                    h = signal[start:end]
                    for index, spec in enumerate(self.layers):
                        h = self._layer(h, spec, index, affine)
                    out[b, first:stop] = h
        return out.transpose(1, 2)
