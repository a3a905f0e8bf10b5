"""Manifests: one row per recording with its label, provenance and measured properties."""

from audios.manifest.build import ManifestResult, build_manifest
from audios.manifest.io import audio_paths, read_manifest, write_table

__all__ = ["ManifestResult", "audio_paths", "build_manifest", "read_manifest", "write_table"]
