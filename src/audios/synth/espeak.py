"""Formant text-to-speech with espeak-ng (a system program: ``apt-get install espeak-ng``).

Each recording gets a rendering of its transcript (the manifest's ``text``/``transcript`` column) or,
without one, of a sentence drawn from the bundled ``sentences.txt``, in a voice drawn from ``voices``;
both draws use the recording's own seed, so reruns and worker counts give the same choice. The output
keeps the source's rate and active-speech level, not its length.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import soundfile as sf

from audios.audio import resample
from audios.errors import ConfigError
from audios.synth.base import Method, SynthContext, register

BINARIES = ("espeak-ng", "espeak")
# espeak-ng voice names; "+f3"/"+m3" are its built-in voice variants (different pitch and formants).
DEFAULT_VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en-gb-x-rp+m3")
_TIMEOUT_S = 60


def find_espeak() -> str | None:
    """Path of the espeak-ng (or espeak) binary, or None."""
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


@lru_cache(maxsize=1)
def bundled_sentences() -> tuple[str, ...]:
    """The plain English sentences shipped with the package (one per line)."""
    text = resources.files("audios.synth").joinpath("sentences.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def voice_tag(voice: str) -> str:
    """A voice name as a generator-name part: lowercase, '+' and '_' as '-'."""
    return voice.lower().replace("+", "-").replace("_", "-")


@dataclass(frozen=True)
class EspeakConfig:
    """Voices to draw from and the speaking rate."""

    voices: tuple[str, ...] = DEFAULT_VOICES
    speed_wpm: int = 160
    pitch: int = 50

    def __post_init__(self) -> None:
        if not self.voices:
            raise ConfigError("espeak.voices must name at least one voice")
        bad = [v for v in self.voices if not v or any(c.isspace() for c in v)]
        if bad:
            raise ConfigError(f"espeak.voices: {bad} are not voice names")
        if not 80 <= self.speed_wpm <= 450:
            raise ConfigError(f"espeak.speed_wpm={self.speed_wpm} must be in [80, 450]")
        if not 0 <= self.pitch <= 99:
            raise ConfigError(f"espeak.pitch={self.pitch} must be in [0, 99]")

    def generator(self) -> str:
        return f"espeak-{voice_tag(self.voices[0])}" if len(self.voices) == 1 else "espeak"

    def voice_for(self, context: SynthContext) -> str:
        return self.voices[np.random.default_rng(context.seed).integers(len(self.voices))]

    def generator_for(self, context: SynthContext) -> str:
        """The row's generator: the voice it was spoken in."""
        return f"espeak-{voice_tag(self.voice_for(context))}"


def speak(binary: str, text: str, voice: str, speed_wpm: int, pitch: int) -> tuple[np.ndarray, int]:
    """Run espeak-ng on ``text``: (mono float32, its sample rate). RuntimeError when it fails."""
    try:
        proc = subprocess.run([binary, "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), "--stdout", "--stdin"],
                              input=text.encode("utf-8"), capture_output=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"espeak-ng failed to run ({type(exc).__name__}: {exc})") from exc
    message = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"espeak-ng voice {voice!r} produced no audio ({message or f'exit {proc.returncode}'})")
    y, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return y.mean(axis=1), int(rate)


class EspeakSynthesizer:
    level_mode = "active"

    def __init__(self, config: EspeakConfig) -> None:
        self.config = config
        self.binary = _check(config)
        self.sentences = bundled_sentences()

    def __call__(self, x: np.ndarray, sample_rate: int, context: SynthContext) -> np.ndarray:
        cfg = self.config
        text = (context.text or "").strip()
        if not text:
            # A different stream from the voice draw, so voice and sentence vary independently.
            text = self.sentences[np.random.default_rng([context.seed, 1]).integers(len(self.sentences))]
        y, rate = speak(self.binary, text, cfg.voice_for(context), cfg.speed_wpm, cfg.pitch)
        return resample(y, rate, sample_rate)


def _check(config: EspeakConfig) -> str:
    binary = find_espeak()
    if binary is None:
        raise ConfigError("method espeak needs the espeak-ng program, which is not installed "
                          "(Debian/Ubuntu: apt-get install espeak-ng; macOS: brew install espeak-ng)")
    return binary


def check_voices(config: EspeakConfig) -> str:
    """The binary's path after checking every voice speaks; ConfigError naming a bad voice."""
    binary = _check(config)
    for voice in config.voices:
        try:
            speak(binary, "test", voice, config.speed_wpm, config.pitch)
        except RuntimeError as exc:
            raise ConfigError(f"espeak.voices: {exc}; list voices with `espeak-ng --voices`") from exc
    return binary


METHOD = register(Method("espeak", EspeakConfig, EspeakSynthesizer,
                         "espeak-ng formant text-to-speech of the transcript or a bundled sentence, several voices",
                         check_voices))
