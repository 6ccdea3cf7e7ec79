"""Binary codes for Hamming scans: one registry, one factory (``create_binarizer``).

Every binarizer fits on float vectors, encodes them into packed uint8 codes in FAISS bit
order (see ``base``), maps float queries into the code space for asymmetric scoring, and
saves to / loads from one .npz file::

    b = create_binarizer("itq", bits=256, seed=0).fit(vectors)
    codes = b.encode(vectors)            # uint8 (n, 32) -> faiss.IndexBinaryFlat(256).add(codes)
    b.save(path); b = load_binarizer(path)

Kinds: ``sign`` (random rotation, the baseline), ``itq`` (PCA + ITQ rotation) and
``learned`` (multi-bit residual MLP after BEBR; needs torch to fit, numpy only to encode);
``ivf-rabitq`` (a coarse quantiser and RaBitQ residual codes, searched by
:class:`glimpse.backends.ivfcodes.IVFCodesIndex`).
See ``benchmarks/BINARIZERS_NOTES.md`` for measurements and why the default is the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .base import (
    FILE_FORMAT,
    Binarizer,
    hamming_distances,
    pack_bits,
    read_file,
    unpack_codes,
)

_CLASSES: dict[str, Callable[[], type[Binarizer]]] = {}

#: Coarse lists + RaBitQ residual codes: the one kind that kept recall@10 >= 0.95 for image and
#: text queries on clusters of near-copies, where one global code (``learned``, the previous
#: default) fell to 0.10 (benchmarks/SEARCH_RESULTS.md, issue 15).
DEFAULT_BINARIZER = "ivf-rabitq"

#: Per kind: (bits, oversample) when the user names neither. ``ivf-rabitq`` codes take
#: ``bits / 8 + 16`` bytes per image with their factors and id (224 bits: 44 bytes), and
#: its shortlist is sized per query, so ``oversample`` is only its cap: at 300,000 near-copies
#: (``mix``) a cap of k x 1000 rows held text queries at 0.940, k x 2000 at 0.966
#: (benchmarks/SEARCH_RESULTS.md).
_DEFAULTS = {"ivf-rabitq": (224, 2000)}


def default_bits(name: str, dim: int | None = None) -> int:
    """The kind's bits when the user names none; ``ivf-rabitq`` projects, so never more than ``dim``."""
    bits = _DEFAULTS.get(name, (256, 30))[0]
    if name == "ivf-rabitq" and dim is not None:
        bits = max(8, min(bits, dim - dim % 8))
    return bits


def default_oversample(name: str) -> int:
    return _DEFAULTS.get(name, (256, 30))[1]


def register_binarizer(name: str, cls_loader: Callable[[], type[Binarizer]]) -> None:
    """Register a kind; ``cls_loader`` returns its class (imported lazily)."""
    _CLASSES[name] = cls_loader


def list_binarizers() -> list[str]:
    return sorted(_CLASSES)


def _class(name: str) -> type[Binarizer]:
    try:
        loader = _CLASSES[name]
    except KeyError:
        raise ValueError(
            f"unknown binarizer {name!r}; known binarizers: {', '.join(list_binarizers())}"
        ) from None
    return loader()


def create_binarizer(name: str = DEFAULT_BINARIZER, bits: int = 256, seed: int = 0,
                     **options) -> Binarizer:
    """An unfitted binarizer by registered name; options go to its constructor."""
    return _class(name)(bits=bits, seed=seed, **options)


def load_binarizer(path: str | os.PathLike[str]) -> Binarizer:
    """Load any saved binarizer: reads the stored kind and dispatches to its class."""
    header, _ = read_file(path)
    return _class(header["kind"]).load(path)


def _sign() -> type[Binarizer]:
    from .sign import SignBinarizer

    return SignBinarizer


def _itq() -> type[Binarizer]:
    from .itq import ITQBinarizer

    return ITQBinarizer


def _learned() -> type[Binarizer]:
    from .learned import LearnedBinarizer

    return LearnedBinarizer


def _ivf_rabitq() -> type[Binarizer]:
    from .rabitq import RaBitQFit

    return RaBitQFit


register_binarizer("sign", _sign)
register_binarizer("itq", _itq)
register_binarizer("learned", _learned)
register_binarizer("ivf-rabitq", _ivf_rabitq)

__all__ = [
    "DEFAULT_BINARIZER",
    "FILE_FORMAT",
    "Binarizer",
    "create_binarizer",
    "default_bits",
    "default_oversample",
    "hamming_distances",
    "list_binarizers",
    "load_binarizer",
    "pack_bits",
    "register_binarizer",
    "unpack_codes",
]
