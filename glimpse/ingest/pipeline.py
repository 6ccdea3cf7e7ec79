"""Read, hash and decode files in worker threads, ahead of the model."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np
from PIL import Image

from .decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image
from .scan import FileEntry


@dataclass
class Prepared:
    entry: FileEntry
    hash: str | None = None
    array: np.ndarray | None = None  # the encoder's prepared input; None when not decoded
    width: int = 0
    height: int = 0
    error: str | None = None


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def prepare_files(
    entries: Iterable[FileEntry],
    prepare: Callable[[Image.Image], np.ndarray],
    needs_decode: Callable[[str], bool] = lambda h: True,
    target: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 2,
    prefetch: int = 256,
) -> Iterator[Prepared]:
    """Yield one ``Prepared`` per entry, in order, while workers run ahead.

    ``needs_decode(hash)`` lets the caller skip decoding content it already has.
    Errors never raise: they come back in ``Prepared.error``.
    """

    def work(entry: FileEntry) -> Prepared:
        out = Prepared(entry)
        try:
            data = entry.path.read_bytes()
        except OSError as exc:
            out.error = f"cannot read file: {exc.strerror or exc}"
            return out
        out.hash = content_hash(data)
        if not needs_decode(out.hash):
            return out
        try:
            image = decode_image(data, target=target, max_pixels=max_pixels)
            out.width, out.height = image.info["original_size"]
            out.array = prepare(image)
        except DecodeError as exc:
            out.error = exc.reason
        except Exception as exc:
            out.error = f"cannot prepare image: {exc}"
        return out

    it = iter(entries)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = [pool.submit(work, e) for e in islice(it, prefetch)]
        head = 0
        while head < len(pending):
            result = pending[head].result()
            pending[head] = None  # free memory as we go
            head += 1
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(work, nxt))
            yield result
