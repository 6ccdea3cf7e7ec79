"""Pydantic models for every request and response of the HTTP API."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Literal, get_type_hints

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, create_model, model_validator
from pydantic_core import PydanticCustomError

from ..collection.reports import CollectionStats
from ..query.filters import FIELDS as FILTER_FIELDS, ORIENTATIONS
from ..query.fusion import FUSIONS
from ..query.limits import MAX_ID, MAX_K, MAX_QUERY_CHARS, MAX_TERMS, MAX_TEXT_CHARS
from ..query.refine import REFINES
from ..query.request import DEFAULT_FUSION, DEFAULT_K
from ..settings import MAX_OVERSAMPLE, SCORING_MODES

#: Ids and sizes fit SQLite's 64-bit integers.
MAX_INT = MAX_ID
#: The longest query vector taken (far past any encoder's).
MAX_DIMS = 65536


def _plain_digits(value: object) -> object:
    # Text reaches an int as a path or query parameter, or as an id the web page sends as text
    # (ids past 2**53 do not survive a JavaScript number). Only plain decimal digits are taken:
    # pydantic's lax parsing read " 1", "+1", "01", "1.0" as 1 and "1_0" as 10.
    if not isinstance(value, str):
        return value
    if value.isascii() and value.isdigit() and (value == "0" or value[0] != "0"):
        # past 19 digits, past any 64-bit id (and int() refuses over 4,300 digits)
        return int(value) if len(value) <= 19 else MAX_INT + 1
    raise PydanticCustomError("plain_digits", "must be plain digits (0-9), like 12")


#: An int that may come as text: plain digits only.
Digits = BeforeValidator(_plain_digits)


def at_most(limit: int) -> BeforeValidator:
    """A list's length, checked before its items (pydantic checks ``max_length`` after them:
    a million terms took 45 s to validate before "at most 64" was said)."""

    def check(value: object) -> object:
        if isinstance(value, list) and len(value) > limit:
            raise PydanticCustomError("too_long", "holds {count} items; at most {limit} are allowed",
                                      {"count": f"{len(value):,}", "limit": f"{limit:,}"})
        return value

    return BeforeValidator(check)

ItemId = Annotated[int, Field(ge=0, le=MAX_INT, description="An item id of this collection (a number, or its digits as text)."), Digits]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]


class _Strict(BaseModel):
    # A misspelt field is an error, not a silently ignored option; a wrong JSON type ("k": "10",
    # "has_text": "yes") is refused, not coerced (strict), save an id's digits (ItemId).
    model_config = ConfigDict(extra="forbid", strict=True)


#: The JSON type of each filter field that is not a count (sizes and pixels are counts).
_FILTER_TYPES = {
    "path_glob": Annotated[str, Field(max_length=1000)],
    "path_prefix": Annotated[str, Field(max_length=4096)],
    "after": Annotated[str, Field(max_length=40)],
    "before": Annotated[str, Field(max_length=40)],
    "orientation": Literal[ORIENTATIONS],
    "has_text": bool,
}

#: The fields of :data:`glimpse.query.filters.FIELDS`, each optional, with their help.
Filters = create_model(
    "Filters", __base__=_Strict, __doc__="Metadata filters, applied before ranking (so k results come back when k match).",
    **{name: (_FILTER_TYPES.get(name, Count) | None, Field(None, description=help_text))
       for name, help_text in FILTER_FIELDS.items()},
)


class Term(_Strict):
    """One weighted term of a query: a text, an item of the collection, or an uploaded image."""

    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS)
    id: ItemId | None = None
    upload: int | None = Field(None, ge=0, le=100, description="Index of an image uploaded with the query (multipart only).")
    weight: float = Field(1.0, description="Not 0; negative weights push results away (checked by the engine, as every term's).")

    @model_validator(mode="after")
    def _one_kind(self) -> Term:
        if sum(v is not None for v in (self.text, self.id, self.upload)) != 1:
            raise ValueError("a term is exactly one of text, id or upload")
        return self


#: The two forms of ``terms``, each validated alone (pydantic would report both forms' errors
#: under its inner names); error messages leave the tags out of where they point.
TERMS_TAGS = ("query", "list")
Terms = Annotated[
    Annotated[str, Tag("query")] | Annotated[list[Term], at_most(MAX_TERMS), Field(max_length=MAX_TERMS), Tag("list")],
    Discriminator(lambda value: "query" if isinstance(value, str) else "list" if isinstance(value, list) else None,
                  custom_error_type="terms_type", custom_error_message="must be the query language as a string, or a list of terms"),
]


def _documented(**schema) -> dict:
    """What the schema says of a field whose value :class:`SearchRequest` checks (so it is checked once)."""
    return {"json_schema_extra": schema}


class SearchBody(_Strict):
    """What to search for. Give one of ``text``, ``like``, ``vector`` or ``terms`` (``text`` may
    also come with an uploaded image: a composed query). The fields and defaults are those of
    :class:`glimpse.query.request.SearchRequest`, which checks their values (here: JSON types
    only; the bounds are documented); :func:`glimpse.server.search.search_request` turns one
    into the other (an image comes as an upload)."""

    text: str | None = Field(None, description="Words, e.g. a cat asleep on a sofa.", **_documented(maxLength=MAX_TEXT_CHARS))
    like: ItemId | None = Field(None, description="More like this item id.")
    vector: Annotated[list[float], at_most(MAX_DIMS), Field(max_length=MAX_DIMS)] | None = Field(
        None, description="A raw query vector (the encoder's dims).")
    terms: Terms | None = Field(
        None, description='Weighted terms: the query language ("2:golden retriever" + #12 - "night", #N is an '
        f"item id; at most {MAX_QUERY_CHARS:,} characters) or a list of terms; at most {MAX_TERMS} terms. "
        "Image paths are not accepted over HTTP: upload the image or use an id.",
    )
    alpha: float | None = Field(None, description="Text weight of a composed image + text query.", **_documented(minimum=0, maximum=1))
    filters: Filters | None = None
    min_score: float | None = Field(None, description="Drop results scoring below this.", **_documented(minimum=-1, maximum=1))
    refine: str | None = Field(None, description="Refine the top 100 candidates: aqe or superglobal (off by default).",
                               **_documented(enum=[*REFINES, "none", None]))
    k: int = Field(DEFAULT_K, description="Number of results.", **_documented(minimum=1, maximum=MAX_K))
    exact: bool = Field(False, description="Score every float vector, not the binary codes.")
    oversample: int | None = Field(None, description="Code candidates per result to re-rank.", **_documented(minimum=1, maximum=MAX_OVERSAMPLE))
    rerank: bool | None = Field(None, description="Re-rank code candidates with the float vectors.")
    scoring: str | None = Field(None, description="How codes are scanned: auto (by query kind), hamming, cascade or asymmetric (default: the collection's setting).",
                                **_documented(enum=[*SCORING_MODES, None]))
    adapted: bool = Field(True, description="Use the collection's caption adaptation (glimpse adapt) if it has one.")
    fusion: str = Field(DEFAULT_FUSION, description="How words read in the images rank a text query: calibrated, rrf or none.",
                        **_documented(enum=list(FUSIONS)))


_NO_FILE = "{}; null where the collection holds precomputed vectors (its items are keys, with no image file)."


class Hit(BaseModel):
    id: int
    path: str
    score: float
    thumbnail: str | None = Field(description=_NO_FILE.format("URL of a JPEG thumbnail"))
    image: str | None = Field(description=_NO_FILE.format("URL of the original file"))


class SearchResponse(BaseModel):
    results: list[Hit]
    took_ms: float


class Word(BaseModel):
    """A text region read in the image."""

    text: str
    box: list[list[float]] = Field(description="Four (x, y) corners in pixels of the full image, clockwise from top-left.")
    confidence: float


class ItemInfo(BaseModel):
    id: int
    paths: list[str]
    width: int
    height: int
    bytes: int
    mtime: float
    taken: float | None = Field(None, description="EXIF capture time (seconds since the epoch), if the image has one.")
    words: list[Word] | None = Field(None, description="Words read in the image (glimpse enrich --ocr); null until read.")
    thumbnail: str | None = Field(description=_NO_FILE.format("URL of a JPEG thumbnail"))
    image: str | None = Field(description=_NO_FILE.format("URL of the original file"))


_STATS_TYPES = get_type_hints(CollectionStats)
_STATS_HELP = {"upgrade": "An encoder upgrade under way (glimpse upgrade): both encoders, share re-embedded, the map's measured quality."}

#: What ``/api/stats`` says: the collection's :class:`CollectionStats` (less the removed paths
#: that later index runs leave out), how this server searches it and what it accepts.
Stats = create_model(
    "Stats",
    **{f.name: (_STATS_TYPES[f.name], Field(None if f.name == "upgrade" else ..., description=_STATS_HELP.get(f.name)))
       for f in fields(CollectionStats) if f.name != "excluded"},
    backend=(dict, Field(description="The search backend in use: kind (flat or binary) and what it holds.")),
    writable=(bool, Field(description="Whether this server accepts writes (a write token is configured).")),
    max_upload_bytes=(int, ...),
    max_upload_pixels=(int, ...),
    max_request_pixels=(int, Field(description="The pixels all the images of one request may hold together.")),
)


class Health(BaseModel):
    status: Literal["ok"]
    images: int


class IngestError(BaseModel):
    path: str
    reason: str
    at: float


#: A path a client names (PATH_MAX on Linux).
ClientPath = Annotated[str, Field(max_length=4096, **_documented(minLength=1))]  # confine() refuses "" in its words


#: Paths one add or remove may name, and globs one add may give.
MAX_PATHS, MAX_GLOBS = 1000, 100
Paths = Annotated[list[ClientPath], at_most(MAX_PATHS),
                  Field(min_length=1, max_length=MAX_PATHS, description="Files or folders inside the server's roots.")]
Globs = Annotated[list[Annotated[str, Field(**_documented(minLength=1))]], at_most(MAX_GLOBS), Field(max_length=MAX_GLOBS)]


class AddPaths(_Strict):
    paths: Paths
    include: Globs = Field(default_factory=list)
    exclude: Globs = Field(default_factory=list)


class RemovePaths(_Strict):
    paths: Paths


class Job(BaseModel):
    """A write (add or remove), run by the server's one writer thread."""

    id: int
    kind: Literal["add", "remove"]
    state: Literal["queued", "running", "done", "failed"]
    done: int = Field(description="Files processed so far.")
    total: int | None = Field(description="Files to process, once known.")
    result: dict | None = Field(description="The report when done.")
    error: str | None = None


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, for people.")
    status: int
