"""Model registry: ``MODELS`` maps a lowercase-hyphenated name to a builder returning an ``nn.Module``.

Filled at import, then read-only; `get_model` names the known models when a lookup fails.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from torch import nn

from audios.errors import ConfigError
from audios.models.aasist import build_aasist, build_aasist_l
from audios.models.rawcnn import build_rawcnn
from audios.models.spectral import build_speccnn, build_specvit
from audios.models.sslhead import build_ssl_head

MODELS: MappingProxyType[str, Callable[..., nn.Module]] = MappingProxyType({
    "aasist": build_aasist,
    "aasist-l": build_aasist_l,
    "rawcnn": build_rawcnn,
    "speccnn": build_speccnn,
    "specvit": build_specvit,
    "ssl-head": build_ssl_head,
})


def get_model(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; an unknown name is a ConfigError listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None
