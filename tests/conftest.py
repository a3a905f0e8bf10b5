"""Shared fixtures: tiny generated audio written into tmp_path, and the dev corpus when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEV_CORPUS = SHARED / "corpus" / "dev"
AASIST_DIR = SHARED / "models" / "aasist"


def tone(freq_hz: float = 440.0, duration_s: float = 1.0, sample_rate: int = 16000, amplitude: float = 0.5,
         phase: float = 0.0) -> np.ndarray:
    """A pure sine, float32."""
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t + phase)).astype(np.float32)


def speechlike(duration_s: float = 1.0, sample_rate: int = 16000, f0_hz: float = 120.0, seed: int = 0,
               amplitude: float = 0.3) -> np.ndarray:
    """A crude voiced signal: harmonics of a wobbling F0 with an amplitude envelope and a little noise."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = f0_hz * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) * 0.8 + 0.2
    x = x * env + 0.01 * rng.standard_normal(n)
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


def write(path: Path, x: np.ndarray, sample_rate: int = 16000, **kwargs) -> Path:
    """Write audio, creating parent folders; format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sample_rate, **kwargs)
    return path


@pytest.fixture
def dev_corpus() -> Path:
    if not (DEV_CORPUS / "manifest.csv").exists():
        pytest.skip(f"dev corpus not found at {DEV_CORPUS} (it lives in ../shared/corpus/dev beside the checkout)")
    return DEV_CORPUS


@pytest.fixture
def aasist_dir() -> Path:
    if not (AASIST_DIR / "reference_io.npz").exists():
        pytest.skip(f"AASIST reference weights not found at {AASIST_DIR}")
    return AASIST_DIR
