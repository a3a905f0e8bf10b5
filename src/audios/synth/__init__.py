"""Copy-synthesis: make training spoofs from bona fide recordings (``audios synth``).

Importing the package fills ``METHODS`` with: world, griffinlim, vocoder, codec, espeak.
"""

from audios.synth import espeak, griffinlim, neural, world  # noqa: F401  (registration)
from audios.synth.base import METHODS, Method, SynthContext, get_method
from audios.synth.run import SynthConfig, SynthReport, match_level, synthesize_manifest

__all__ = ["METHODS", "Method", "SynthConfig", "SynthContext", "SynthReport", "get_method", "match_level",
           "synthesize_manifest"]
