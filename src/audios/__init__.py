"""audios: tell human speech from AI-generated speech."""

__version__ = "0.1.0"
