"""Encoders: one registry, one factory (``create_encoder``), as open_clip does it."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from .base import Encoder, EncoderInfo, l2_normalize, to_float32, unit_length

_REGISTRY: dict[str, Callable[..., Encoder]] = {}

DEFAULT_ENCODER = "lite0-minilm"


def register_encoder(name: str, factory: Callable[..., Encoder]) -> None:
    _REGISTRY[name] = factory


def list_encoders() -> list[str]:
    return sorted(_REGISTRY)


def create_encoder(name: str = DEFAULT_ENCODER, **options) -> Encoder:
    """Build an encoder by registered name; options go to its constructor."""
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name (a list, say)
        raise ValueError(
            f"unknown encoder {name!r}; known encoders: {', '.join(list_encoders())}"
        ) from None
    try:
        return factory(**options)
    except TypeError as exc:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if bad is None:
            raise
        raise ValueError(f"encoder {name!r} does not take the option {bad.group(1)!r}") from None


def _hash_encoder(**options) -> Encoder:
    from .hashing import HashEncoder

    return HashEncoder(**options)


def _bridge_encoder(**options) -> Encoder:
    # Imported lazily: torch and the two models take seconds to load.
    from .bridge import BridgeEncoder

    return BridgeEncoder(**options)


def _open_clip_encoder(**options) -> Encoder:
    from .open_clip import OpenClipEncoder

    return OpenClipEncoder(**options)


def _hf_encoder(**options) -> Encoder:
    from .hf import HfEncoder

    return HfEncoder(**options)


def _precomputed_encoder(**options) -> Encoder:
    from .precomputed import PrecomputedEncoder

    return PrecomputedEncoder(**options)


register_encoder("hash", _hash_encoder)
for _lite in (0, 1, 2):  # EfficientNet-Lite0/1/2; the sizes are in bridge.LITE_IMAGE_SIZES
    register_encoder(f"lite{_lite}-minilm", partial(_bridge_encoder, lite=_lite))
register_encoder("open_clip", _open_clip_encoder)
register_encoder("hf", _hf_encoder)
register_encoder("precomputed", _precomputed_encoder)

__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "EncoderInfo",
    "create_encoder",
    "l2_normalize",
    "to_float32",
    "unit_length",
    "list_encoders",
    "register_encoder",
]
