"""The OCR enrichment pass: read the words in each image with RapidOCR (offline ONNX models).

It runs after the embedding, over the items not read yet, one item per transaction (words and
the done marker together), so the collection is searchable throughout and a killed pass resumes
where it stopped. The original file is read again through the ingest reader, and its content hash
must still be the item's: a file changed since indexing is left for the next ``index``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..extras import require
from ..storage.words import Word, WordIndex
from ..ingest import DecodeError, content_hash, decode_image, stat_entry
from ..ingest.pipeline import _read_file, _Skip

ENGINE = "rapidocr-onnxruntime 1.4.4"
#: Short side the image is decoded at for OCR; the detector works at 736 px, larger only costs time.
OCR_SIDE = 1024

#: Reads the words in one RGB image; boxes in that image's pixels.
Reader = Callable[[Image.Image], list[Word]]


@dataclass
class EnrichReport:
    """What one ``enrich`` run did, by item."""

    read: int = 0  # items the OCR read this run
    with_text: int = 0  # of those, items where it found words
    already: int = 0  # read by an earlier run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): no file could be read; retried next run


def rapidocr_reader() -> Reader:
    """The default reader; MissingExtraError naming the extra when rapidocr is not installed."""
    require("ocr", "reading the words in images")
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()

    def read(image: Image.Image) -> list[Word]:
        result, _ = engine(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))
        return [Word(text, [[float(x), float(y)] for x, y in box], float(score))
                for box, text, score in (result or []) if text.strip()]

    return read


def read_words(reader: Reader, paths: Sequence[tuple[str, str]]) -> tuple[list[Word] | None, str | None]:
    """The words of the first of ``paths`` ((path, content hash)) that still holds the item.

    Boxes are in pixels of the full image, as the item's width and height count them.
    Returns (words, None), or (None, why no file could be read).
    """
    reason = "no file"
    for path, want in paths:
        try:
            data, _ = _read_file(stat_entry(path))
            if content_hash(data) != want:
                reason = f"{path} changed since it was indexed (index again)"
                continue
            image = decode_image(data, target=OCR_SIDE)
        except OSError as exc:
            reason = f"{path}: {exc.strerror or exc}"
            continue
        except (_Skip, DecodeError) as exc:
            reason = f"{path}: {exc.reason}"
            continue
        full_w, full_h = image.info.get("original_size", image.size)
        sx, sy = full_w / image.width, full_h / image.height
        words = reader(image)
        return [Word(w.text, [[x * sx, y * sy] for x, y in w.box], w.confidence) for w in words], None
    return None, reason


def run_pass(
    words: WordIndex,
    todo: Sequence[tuple[int, Sequence[tuple[str, str]]]],
    reader: Reader,
    report: EnrichReport,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Read each item of ``todo`` ((id, [(path, hash)])) and commit its words with its done marker."""
    for done, (item_id, paths) in enumerate(todo, 1):
        found, error = read_words(reader, paths)
        if found is None:
            # Not marked read: the next run tries again (the next ``index`` settles changed files).
            report.failed.append((paths[0][0] if paths else f"#{item_id}", error))
        else:
            words.save(item_id, found, ENGINE)
            report.read += 1
            report.with_text += bool(found)
        if progress:
            progress(done, len(todo))
