"""Features: a registry of extractors (``EXTRACTORS``) and ``extract_features`` from a manifest to a feature table."""

from audios.features.base import (
    EXTRACTORS,
    Extractor,
    config_hash,
    describe_extractor,
    extractor_from_description,
    get_extractor,
)

__all__ = [
    "EXTRACTORS", "Extractor", "config_hash", "describe_extractor", "extractor_from_description", "get_extractor",
]
