"""Encoders: one registry, one factory (``create_encoder``), as open_clip does it."""

from __future__ import annotations

from collections.abc import Callable

from .base import Encoder, EncoderInfo, l2_normalize

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
    except KeyError:
        raise ValueError(
            f"unknown encoder {name!r}; known encoders: {', '.join(list_encoders())}"
        ) from None
    return factory(**options)


def _hash_encoder(**options) -> Encoder:
    from .hashing import HashEncoder

    return HashEncoder(**options)


def _bridge_encoder(**options) -> Encoder:
    # Imported lazily: torch and the two models take seconds to load.
    from .bridge import BridgeEncoder

    return BridgeEncoder(**options)


def _precomputed_encoder(**options) -> Encoder:
    from .precomputed import PrecomputedEncoder

    return PrecomputedEncoder(**options)


register_encoder("hash", _hash_encoder)
register_encoder(DEFAULT_ENCODER, _bridge_encoder)
register_encoder("precomputed", _precomputed_encoder)

__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "EncoderInfo",
    "create_encoder",
    "l2_normalize",
    "list_encoders",
    "register_encoder",
]
