"""Turn what a user asks into one query vector: a text, an image, both, an item, weighted terms.

Every form ends as one vector plus the item ids that must not come back: the reference image
of a composed query when it is in the collection (matched by content hash), the item of a
more-like-this query, and positive image or item terms. A plain image query keeps its own
image: "find this photo" should find it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..encoders import Encoder, to_float32, unit_length
from ..storage.originals import open_regular
from ..storage.vectors import DamagedVectorError
from ..ingest import DEFAULT_MAX_BYTES, DecodeError, decode_image
from ..ingest.names import shown
from ..ingest.pipeline import content_hash
from .compose import DEFAULT_ALPHA, combine, compose
from .language import Term, parse_query, terms_from_python
from .limits import blank, check_item_id, check_text, clip

ImageLike = str | os.PathLike | bytes | Image.Image


@dataclass(frozen=True)
class QuerySources:
    """What the collection lends a query: stored vectors, hashes, and the text adaptation."""

    item_vector: Callable[[int], np.ndarray]  # raises ValueError for an unknown id
    item_for_hash: Callable[[str], int | None]
    text_map: Callable[[np.ndarray], np.ndarray] | None = None  # adapt: text vectors -> image space


@dataclass
class Query:
    vector: np.ndarray  # float32 (dim,), unit length
    exclude: set[int] = field(default_factory=set)  # item ids kept out of the results
    kind: str = "text"  # text | image | composed | item | terms | vector
    text_only: bool = False  # made only of text (a text query, or terms that are all text): scored as text


def load_query_image(image: ImageLike, target: int | None = None) -> Image.Image:
    """A path, raw bytes or a Pillow image -> RGB image, with the same safety as ingest."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    data = _image_bytes(image)
    try:
        return decode_image(data, target=target)
    except DecodeError as exc:
        raise ValueError(f"query image is not usable: {exc.reason}") from None


def build_query(
    encoder: Encoder,
    sources: QuerySources,
    *,
    text: str | None = None,
    image: ImageLike | None = None,
    vector: np.ndarray | None = None,
    like: int | None = None,
    terms: str | list[tuple[object, float]] | None = None,
    alpha: float | None = None,
) -> Query:
    """One query from exactly one form: text and/or image (composed), vector, like, or terms."""
    forms = [name for name, given in (("text/image", text is not None or image is not None),
                                      ("vector", vector is not None), ("like", like is not None),
                                      ("terms", terms is not None)) if given]
    if len(forms) != 1:
        raise ValueError("give exactly one query: text and/or image, vector, like, or terms"
                         + (f" (got {' + '.join(forms)})" if forms else ""))
    if alpha is not None and (text is None or image is None):
        raise ValueError("alpha weighs the text of a composed query: give both text and image")
    if vector is not None:
        try:
            raw = np.asarray(vector)
        except (TypeError, ValueError):  # ragged nesting
            raw = np.asarray(None)
        if raw.dtype.kind not in "iuf":  # casting would drop an imaginary part, or read text or True as numbers
            raise ValueError(f"the query vector must hold real numbers, got {clip(repr(vector))}")
        q = to_float32(raw).reshape(-1)  # too large for float32 becomes inf, refused below
        _check_dim(q, encoder.dim)
        if not np.isfinite(q).all():
            raise ValueError("the query vector holds NaN or infinite values")
        if not q.any():  # as add_vectors refuses such a row: every image would score 0
            raise ValueError("the query vector is all zeros: it has no direction to search by")
        return Query(unit_length(q), kind="vector")  # unit length, so scores are cosines
    if like is not None:
        like = check_item_id(like)
        return Query(sources.item_vector(like), {like}, kind="item")
    if terms is not None:
        parsed = parse_query(terms) if isinstance(terms, str) else terms_from_python(terms)
        return _terms_query(encoder, sources, parsed)
    if image is None:
        return Query(_text_vector(encoder, text, sources.text_map), kind="text", text_only=True)
    picture, exclude = _image_vector(encoder, sources, image)
    if text is None:  # "find this photo": the photo itself is a fair first answer
        return Query(picture, kind="image")
    t = _text_vector(encoder, text, sources.text_map)
    return Query(compose(picture, t, DEFAULT_ALPHA if alpha is None else float(alpha)), exclude, kind="composed")


def _terms_query(encoder: Encoder, sources: QuerySources, terms: list[Term]) -> Query:
    vectors, exclude = [], set()
    texts = [t.value for t in terms if t.kind == "text"]
    for t in texts:
        if blank(str(t)):
            raise ValueError("a text term is empty")
        check_text(t, "a text term")
    text_vectors = iter(_adapted(encoder.encode_texts(texts), sources.text_map) if texts else [])
    for term in terms:
        if term.kind == "text":
            vectors.append(next(text_vectors))
        elif term.kind == "item":
            vectors.append(sources.item_vector(int(term.value)))
            if term.weight > 0:
                exclude.add(int(term.value))
        else:
            v, hit = _image_vector(encoder, sources, term.value)
            vectors.append(v)
            if term.weight > 0:
                exclude |= hit
    return Query(combine(vectors, [t.weight for t in terms]), exclude, kind="terms",
                 text_only=all(t.kind == "text" for t in terms))


def _text_vector(encoder: Encoder, text: str, text_map) -> np.ndarray:
    if not isinstance(text, str):
        raise ValueError(f"the text query must be a string, not {type(text).__name__}")
    if blank(text):
        raise ValueError("the text query is empty")
    check_text(text)
    return _adapted(encoder.encode_texts([text]), text_map)[0]


def _adapted(vectors: np.ndarray, text_map) -> np.ndarray:
    return vectors if text_map is None else text_map(vectors)


def _image_vector(encoder: Encoder, sources: QuerySources, image: ImageLike) -> tuple[np.ndarray, set[int]]:
    """The image's vector, and its item id when the same content is in the collection."""
    if isinstance(image, Image.Image):
        return encoder.encode_images([image.convert("RGB")])[0], set()
    data = _image_bytes(image)
    item = sources.item_for_hash(content_hash(data))
    if item is not None:  # the stored vector is what the collection ranks against: use it
        try:
            return sources.item_vector(item), {item}
        except DamagedVectorError:  # left out of results until repaired; the image is at hand
            return encoder.encode_images([load_query_image(data, target=encoder.image_size)])[0], {item}
    return encoder.encode_images([load_query_image(data, target=encoder.image_size)])[0], set()


def _image_bytes(image: str | os.PathLike | bytes) -> bytes:
    if isinstance(image, bytes):
        return image
    if not isinstance(image, (str, os.PathLike)):
        raise ValueError(f"a query image must be a path, bytes or a PIL image, not {type(image).__name__}")
    path = Path(image).expanduser()
    try:
        with open_regular(path) as f:  # a FIFO or device named as the query must not hang it
            data = f.read(DEFAULT_MAX_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read query image {shown(str(path))}: {exc.strerror or exc}") from None
    if len(data) > DEFAULT_MAX_BYTES:
        raise ValueError(f"query image {shown(str(path))} is larger than {DEFAULT_MAX_BYTES >> 20:,} MiB")
    return data


def _check_dim(q: np.ndarray, dim: int) -> None:
    if q.shape[0] != dim:
        raise ValueError(f"query vector has {q.shape[0]} dims; this collection uses {dim}")
