"""The embedded default corpus: synthetic stand-ins for speech, generated on the spot.

Used by ``make demo`` only when no real corpus is at hand. "Bona fide" clips are source-filter
syntheses (a jittered glottal pulse train through formant resonators, several "speakers" with their
own F0 and vocal-tract length); "spoof" clips are the same clips after magnitude-only copy-synthesis
(STFT magnitude re-phased by Griffin-Lim), the artefact family of early vocoders. Neither class is
human speech, so nothing learnt on it says anything about real deepfakes; it only exercises the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal

from audios.audio import write_audio_atomic
from audios.errors import ConfigError
from audios.manifest.io import write_table

# (F1, F2, F3) in Hz of five vowels for an adult male vocal tract (Peterson & Barney averages, rounded).
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


@dataclass(frozen=True)
class ToyCorpusConfig:
    # Ten speakers so that a speaker-disjoint 80/10/10 split has a speaker in each part.
    n_speakers: int = 10
    utterances_per_speaker: int = 4
    sample_rate: int = 16000
    min_duration_s: float = 1.5
    max_duration_s: float = 3.5
    griffin_lim_iters: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_speakers < 2 or self.utterances_per_speaker < 1:
            raise ConfigError("a toy corpus needs at least 2 speakers and 1 utterance each")
        if not 0 < self.min_duration_s <= self.max_duration_s:
            raise ConfigError(f"durations {self.min_duration_s}..{self.max_duration_s} s are not a valid range")


def synth_vowel_chain(rng: np.random.Generator, duration_s: float, sample_rate: int, f0_hz: float,
                      tract_scale: float) -> np.ndarray:
    """A sequence of vowels from a jittered pulse train through three formant resonators, with pauses."""
    n = int(duration_s * sample_rate)
    # F0 contour: slow declination plus vibrato-like drift, and 1 % cycle-to-cycle jitter.
    t = np.arange(n) / sample_rate
    f0 = f0_hz * (1.1 - 0.2 * t / duration_s) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    pulses = np.zeros(n)
    pos = 0.0
    while pos < n:
        pulses[int(pos)] = 1.0 + 0.1 * rng.standard_normal()
        pos += sample_rate / f0[int(pos)] * (1 + 0.01 * rng.standard_normal())
    excitation = signal.lfilter([1.0], [1.0, -0.97], pulses) + 0.02 * rng.standard_normal(n)
    out = np.zeros(n)
    seg = int(0.25 * sample_rate)
    for start in range(0, n, seg):
        stop = min(start + seg, n)
        formants = np.array(_VOWELS[rng.integers(len(_VOWELS))]) * tract_scale
        y = excitation[start:stop]
        for f, bw in zip(formants, (80, 100, 140), strict=True):
            r = np.exp(-np.pi * bw / sample_rate)
            y = signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / sample_rate), r * r], y)
        out[start:stop] = y * np.hanning(stop - start) if rng.random() > 0.15 else 0.0  # some pauses
    out /= np.max(np.abs(out)) + 1e-9
    return (0.5 * out).astype(np.float32)


def griffin_lim_resynth(x: np.ndarray, sample_rate: int, n_iter: int, rng: np.random.Generator) -> np.ndarray:
    """Keep the STFT magnitude, discard the phase, and re-estimate it by Griffin-Lim iterations."""
    nperseg, noverlap = 512, 384
    _, _, spec = signal.stft(x, fs=sample_rate, nperseg=nperseg, noverlap=noverlap)
    mag = np.abs(spec)
    phase = np.exp(2j * np.pi * rng.random(mag.shape))
    y = x
    for _ in range(n_iter):
        _, y = signal.istft(mag * phase, fs=sample_rate, nperseg=nperseg, noverlap=noverlap)
        _, _, s = signal.stft(y, fs=sample_rate, nperseg=nperseg, noverlap=noverlap)
        phase = np.exp(1j * np.angle(s))
    y = y[: len(x)]
    # Match the source's RMS so that loudness is no shortcut.
    y = y * np.sqrt(np.mean(x.astype(np.float64) ** 2) / (np.mean(y**2) + 1e-12))
    return np.clip(y, -1, 1).astype(np.float32)


def make_toy_corpus(out_dir: str | Path, config: ToyCorpusConfig = ToyCorpusConfig()) -> Path:
    """Write the toy corpus as ``bonafide/<speaker>/*.wav`` and ``spoof/griffinlim/*.wav`` plus manifest.csv."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(config.seed)
    rows = []
    for s in range(config.n_speakers):
        speaker = f"toy{s:02d}"
        f0 = rng.uniform(90, 220)
        tract = rng.uniform(0.9, 1.2)
        for u in range(config.utterances_per_speaker):
            utt = f"{speaker}_u{u:02d}"
            duration = rng.uniform(config.min_duration_s, config.max_duration_s)
            x = synth_vowel_chain(rng, duration, config.sample_rate, f0, tract)
            y = griffin_lim_resynth(x, config.sample_rate, config.griffin_lim_iters, rng)
            for label, gen, rel, audio in (
                ("bonafide", "human", f"bonafide/{speaker}/{utt}.wav", x),
                ("spoof", "griffinlim", f"spoof/griffinlim/{utt}.wav", y),
            ):
                write_audio_atomic(out_dir / rel, audio, config.sample_rate)
                rows.append({"path": rel, "label": label, "generator": gen, "speaker": speaker, "utterance": utt})
    write_table(pd.DataFrame(rows), out_dir / "manifest.csv")
    (out_dir / "README.md").write_text(
        "# audios toy corpus (synthetic)\n\nGenerated by `audios toy-corpus`. Not speech: formant-synthesised vowel "
        "chains stand in for bona fide recordings, and their Griffin-Lim copy-syntheses stand in for spoofs. "
        "Use it to exercise the pipeline only; results on it say nothing about real deepfakes.\n"
    )
    return out_dir
