"""PNG chunks: dropping oversized metadata, or everything but the pixels, before Pillow decodes."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator

from PIL import PngImagePlugin

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_PIXEL_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}


def png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, start, end) of each chunk, ``end`` past its checksum (maybe past the data when
    truncated); stops after IEND."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        yield kind, pos, end
        if kind == b"IEND" or end > len(data):
            return
        pos = end


def png_keeping(data: bytes, keep: Callable[[bytes, int], bool], fix_crc: bool) -> bytes:
    """The PNG with only the chunks ``keep(type, length)`` accepts (a truncated tail is left
    as it is, for the decoder to report), checksums recomputed if ``fix_crc``."""
    view = memoryview(data)
    out: list[bytes | memoryview] = [view[: len(PNG_SIGNATURE)]]
    for kind, start, end in png_chunks(data):
        if end > len(data):
            out.append(view[start:])
            break
        if keep(kind, end - start - 12):
            out.append(view[start : end - 4])
            out.append(struct.pack(">I", zlib.crc32(view[start + 4 : end - 4])) if fix_crc else view[end - 4 : end])
    return b"".join(out)


def oversized_metadata(kind: bytes, length: int) -> bool:
    # Ancillary chunks have a lowercase first letter; fdAT holds animation frames, not metadata.
    return bool(kind[0] & 0x20) and kind != b"fdAT" and length > PngImagePlugin.MAX_TEXT_CHUNK


def pixels_only(kind: bytes, _length: int) -> bool:
    return kind in PNG_PIXEL_CHUNKS
