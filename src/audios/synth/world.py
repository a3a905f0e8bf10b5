"""WORLD analysis/resynthesis (Morise et al., IEICE Trans. Inf. & Syst. E99-D(7), 2016) through pyworld.

F0 (DIO + StoneMask refinement, or Harvest), the CheapTrick spectral envelope and the D4C aperiodicity
are measured every ``frame_period_ms`` and fed straight back to the WORLD synthesizer, optionally with
F0 multiplied by ``f0_scale`` and the envelope's frequency axis stretched by ``sp_warp`` (> 1 moves
formants up, as a shorter vocal tract does).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from audios.errors import ConfigError
from audios.synth.base import Method, SynthContext, fit_length, format_number, register

F0_METHODS = ("dio", "harvest")


def import_pyworld() -> ModuleType:
    """pyworld's compiled module.

    pyworld <= 0.3.5 reads its version through ``pkg_resources``, which setuptools >= 81 no longer
    ships; when that import fails, load the extension module (which does all the work) directly.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            import pyworld

        return pyworld
    except ModuleNotFoundError as exc:
        if exc.name != "pkg_resources":
            raise ConfigError("method world needs pyworld (pip install pyworld)") from exc
    spec = importlib.util.find_spec("pyworld")
    folder = os.path.dirname(spec.origin) if spec and spec.origin else ""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    names = [f for f in (os.listdir(folder) if folder else []) if f.startswith("pyworld.") and f.endswith(suffixes)]
    if not names:
        raise ConfigError("method world needs pyworld (pip install pyworld); its compiled module was not found")
    ext = importlib.util.spec_from_file_location("pyworld.pyworld", os.path.join(folder, names[0]))
    module = importlib.util.module_from_spec(ext)
    ext.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class WorldConfig:
    """WORLD settings; the defaults resynthesise without modification."""

    f0_method: str = "dio"
    f0_scale: float = 1.0
    sp_warp: float = 1.0
    frame_period_ms: float = 5.0
    # Search range of the F0 estimators; 71-800 Hz is WORLD's default and covers adult and child speech.
    f0_floor_hz: float = 71.0
    f0_ceil_hz: float = 800.0

    def __post_init__(self) -> None:
        if self.f0_method not in F0_METHODS:
            raise ConfigError(f"world.f0_method={self.f0_method!r} must be one of {F0_METHODS}")
        if not 0.25 <= self.f0_scale <= 4:
            raise ConfigError(f"world.f0_scale={self.f0_scale} must be in [0.25, 4]")
        if not 0.5 <= self.sp_warp <= 2:
            raise ConfigError(f"world.sp_warp={self.sp_warp} must be in [0.5, 2]")
        if not 1 <= self.frame_period_ms <= 20:
            raise ConfigError(f"world.frame_period_ms={self.frame_period_ms} must be in [1, 20]")
        if not 0 < self.f0_floor_hz < self.f0_ceil_hz:
            raise ConfigError(f"world.f0_floor_hz={self.f0_floor_hz} must be positive and below "
                              f"f0_ceil_hz={self.f0_ceil_hz}")

    def generator(self) -> str:
        name = "world"
        if self.f0_method != "dio":
            name += f"-{self.f0_method}"
        if self.f0_scale != 1.0:
            name += f"-f0x{format_number(self.f0_scale)}"
        if self.sp_warp != 1.0:
            name += f"-warp{format_number(self.sp_warp)}"
        return name


def world_f0(pw: ModuleType, x: np.ndarray, sample_rate: int, config: WorldConfig) -> tuple[np.ndarray, np.ndarray]:
    """F0 track in Hz (0 = unvoiced) and frame times in s; ``x`` float64."""
    kw = {"f0_floor": config.f0_floor_hz, "f0_ceil": config.f0_ceil_hz, "frame_period": config.frame_period_ms}
    if config.f0_method == "harvest":
        return pw.harvest(x, sample_rate, **kw)
    f0, t = pw.dio(x, sample_rate, **kw)
    return pw.stonemask(x, f0, t, sample_rate), t


def warp_envelope(sp: np.ndarray, alpha: float) -> np.ndarray:
    """Stretch each frame's envelope along frequency by ``alpha`` (bin k takes the value at k/alpha).

    Interpolates the log envelope; above the source's top bin the last value is held. Shape kept.
    """
    if alpha == 1.0:
        return sp
    bins = np.arange(sp.shape[1], dtype=np.float64)
    src = np.clip(bins / alpha, 0, sp.shape[1] - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, sp.shape[1] - 1)
    frac = src - lo
    log_sp = np.log(np.maximum(sp, 1e-16))
    out = log_sp[:, lo] * (1 - frac) + log_sp[:, hi] * frac
    return np.ascontiguousarray(np.exp(out))


class WorldSynthesizer:
    level_mode = "rms"

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.pw = import_pyworld()

    def __call__(self, x: np.ndarray, sample_rate: int, context: SynthContext) -> np.ndarray:
        pw, cfg = self.pw, self.config
        xd = np.ascontiguousarray(x, dtype=np.float64)
        f0, t = world_f0(pw, xd, sample_rate, cfg)
        sp = pw.cheaptrick(xd, f0, t, sample_rate)
        ap = pw.d4c(xd, f0, t, sample_rate)
        y = pw.synthesize(np.ascontiguousarray(f0 * cfg.f0_scale), warp_envelope(sp, cfg.sp_warp), ap,
                          sample_rate, cfg.frame_period_ms)
        return fit_length(np.asarray(y, dtype=np.float32), x.size)


def _check(config: WorldConfig) -> None:
    import_pyworld()


METHOD = register(Method("world", WorldConfig, WorldSynthesizer,
                         "WORLD vocoder analysis/resynthesis (pyworld); F0 scaling and envelope warping", _check))
