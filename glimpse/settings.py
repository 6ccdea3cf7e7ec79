"""Option checks shared by the Python API, the CLI and HTTP: each raises one actionable ValueError.

Options are checked here once, before anything is saved, so no stored setting can break a
later search. :class:`CollectionSettings` is everything a collection was told, as stored in
its metadata and read in one place: its folders with their :class:`ScanOptions`, the paths
removed from them, its :class:`CodeSettings` (binary codes, with the state of their fit) and
its caption adaptation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .codes import DEFAULT_BINARIZER, create_binarizer, default_bits, default_oversample

#: How the codes are scanned (see :mod:`glimpse.backends.binary`); ``auto`` picks per query kind.
SCORINGS = ("hamming", "cascade", "asymmetric")
SCORING_MODES = ("auto", *SCORINGS)

#: A shortlist of ``k * oversample`` codes; past this the re-rank reads most of the vector
#: file for nothing (exact search, ``exact=True``, is the better tool then). ``ivf-rabitq``
#: sizes its re-rank per query and takes this as a cap only: text queries on 300,000 near-copies
#: wanted up to 30,000 rows for their top-10 (benchmarks/SEARCH_RESULTS.md, issue 15).
MAX_OVERSAMPLE = 10_000


def whole(value: object) -> int | None:
    """``value`` as an int when it is a whole number: a Python or numpy integer (the ids ``add_vectors``
    returns, a count from numpy), not a bool; else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return None
    return int(value)


def check_flag(name: str, value: object, optional: bool = False) -> bool | None:
    """A yes/no option as a bool (numpy's too; None too where ``optional``): a string is refused, as
    any non-empty one is true (``finish="no"`` finished an upgrade and dropped the old vectors)."""
    if optional and value is None:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, not {value!r:.120}")
    return bool(value)


def check_callback(name: str, value: object) -> None:
    """A progress callback: None or callable (else it fails at its first call, after work is committed)."""
    if value is not None and not callable(value):
        raise ValueError(f"{name} must be a function taking (done, total), or None, not {type(value).__name__}")


def check_count(name: str, value: object, low: int = 1, high: int | None = None) -> int:
    """An int option in [low, high], as an int."""
    number = whole(value)
    if number is None:
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if number < low or (high is not None and number > high):
        span = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {span}, got {number}")
    return number


def check_oversample(value: object) -> int:
    return check_count("oversample", value, 1, MAX_OVERSAMPLE)


def check_scoring(value: object, allow_auto: bool = True) -> str:
    modes = SCORING_MODES if allow_auto else SCORINGS
    if value not in modes:
        # at most 120 characters of what was sent, as query.limits.clip (which imports this module)
        raise ValueError(f"scoring must be one of {', '.join(modes)}, not {value!r:.120}")
    return value  # type: ignore[return-value]


def resolve_scoring(mode: str, text_only: bool) -> str:
    """``auto`` as a code scan: asymmetric for a query made only of text, whose binarized
    query would be far from every image's code; cascade for the rest. Other modes as given."""
    if mode == "auto":
        return "asymmetric" if text_only else "cascade"
    return mode


def check_ingest(batch_size: object, workers: object, include: object = (), exclude: object = ()) -> None:
    """``add``/``index`` options."""
    check_count("batch_size", batch_size, 1, 4096)
    check_count("workers", workers, 1, 256)
    check_scan_globs(include, exclude)


def check_paths(paths: object) -> list:
    """The paths (or keys) of ``add``/``index``/``remove`` as a list, each a str or os.PathLike.

    One string would be taken letter by letter: ``remove("/photos/a.jpg")`` forgot everything under
    ``/``, the first letter."""
    if isinstance(paths, (str, bytes, os.PathLike)) or not isinstance(paths, Iterable):
        raise ValueError(f"paths must be a list of paths, not {type(paths).__name__} {paths!r:.120}: "
                         "wrap one path in a list")
    paths = list(paths)
    for path in paths:
        if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
            raise ValueError(f"each path must be a str or os.PathLike (bytes: os.fsdecode them), got {path!r:.120}")
    return paths


def check_scan_globs(include: object = (), exclude: object = ()) -> None:
    """``include``/``exclude`` of ``add``/``index``."""
    for name, patterns in (("include", include), ("exclude", exclude)):
        # A str would be taken letter by letter; an empty glob (--include '') matches no file,
        # so an index run would drop every file of the folder and remember that.
        if isinstance(patterns, (str, bytes)) or not all(isinstance(p, str) and p.strip() for p in patterns):
            raise ValueError(f"{name} must be a list of non-empty globs such as '*.jpg', got {patterns!r:.120}")
        for pattern in patterns:
            check_glob(name, pattern)


# A character class: '[', an optional '!' or '^', a ']' taken as a member when first, then
# members up to the closing ']' within one path segment (as ingest's globs and SQLite GLOB read it).
_GLOB_CLASS = re.compile(r"\[[!^]?+\]?+[^\]/]*\]")


def check_glob(name: str, pattern: str) -> None:
    """ValueError when ``pattern`` opens a character class it never closes: '[invalid' would
    match nothing at all (SQLite) or a file named so (ingest), never what was meant."""
    start = pattern.find("[")
    while start != -1:
        whole = _GLOB_CLASS.match(pattern, start)
        if whole is None:
            raise ValueError(f"{name} glob '{pattern:.120}' opens a character class with '[' that no ']' closes "
                             "(write '[[]' for a literal '[')")
        start = pattern.find("[", whole.end())


@dataclass(frozen=True)
class CodeSettings:
    """Binary codes of a collection: what was asked for, and the fit that serves it.

    ``fit`` is the :attr:`~glimpse.codes.Binarizer.fit_id` of the fitted binarizer, stored in
    ``file``; codes files carry the same id, so codes are only ever scanned with the binarizer
    that made them. ``fit`` is None until the collection has enough images to fit one.
    """

    binarizer: str = DEFAULT_BINARIZER
    bits: int | None = None  # None: the kind's default (codes.default_bits)
    oversample: int | None = None  # None: the kind's default (codes.default_oversample)
    seed: int = 0
    scoring: str = "auto"
    rerank: bool = True
    fitted_on: int = 0  # images in the collection when the binarizer was fitted
    fit: str | None = None
    file: str | None = None
    fit_reason: str | None = None  # why that fit ran (the first, a doubling, rows of another distribution)

    def __post_init__(self) -> None:
        if self.bits is None:
            object.__setattr__(self, "bits", default_bits(self.binarizer))
        if self.oversample is None:
            object.__setattr__(self, "oversample", default_oversample(self.binarizer))

    def validate(self, dim: int | None = None) -> CodeSettings:
        """Check every option (and that the binarizer fits ``dim``-d vectors); returns self."""
        binarizer = create_binarizer(self.binarizer, bits=self.bits, seed=self.seed)  # name, bits, seed
        if dim is not None:
            binarizer.check_dim(dim)
        check_oversample(self.oversample)
        check_scoring(self.scoring)
        if not isinstance(self.rerank, bool):
            raise ValueError(f"rerank must be true or false, not {self.rerank!r}")
        return self

    def same_codes(self, other: CodeSettings) -> bool:
        """Whether ``other`` asks for the same binarizer (so its fit can be kept)."""
        return (self.binarizer, self.bits, self.seed) == (other.binarizer, other.bits, other.seed)

    def fitted(self, fit: str, file: str, images: int, reason: str) -> CodeSettings:
        return replace(self, fit=fit, file=file, fitted_on=images, fit_reason=reason)

    def keeping_fit(self, other: CodeSettings) -> CodeSettings:
        """These settings served by ``other``'s fit (the same codes asked for again: no refit)."""
        return replace(self, fit=other.fit, file=other.file, fitted_on=other.fitted_on, fit_reason=other.fit_reason)

    def unfitted(self) -> CodeSettings:
        return replace(self, fit=None, file=None, fitted_on=0, fit_reason=None)

    def to_meta(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, stored: dict | None) -> CodeSettings | None:
        if not stored:
            return None
        known = {k: v for k, v in stored.items() if k in cls.__dataclass_fields__}
        if known.get("fitted_on") and "file" not in stored:
            known["file"] = "binarizer.npz"  # collections made before fits had ids
        return cls(**known)


@dataclass(frozen=True)
class ScanOptions:
    """How a folder is scanned; remembered per folder for later ``index`` runs."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = False

    def to_json(self) -> dict:
        return {"include": list(self.include), "exclude": list(self.exclude), "follow_symlinks": self.follow_symlinks}

    @classmethod
    def from_json(cls, saved: dict | None) -> ScanOptions:
        saved = saved or {}
        return cls(tuple(saved.get("include", ())), tuple(saved.get("exclude", ())), bool(saved.get("follow_symlinks")))


@dataclass(frozen=True)
class CollectionSettings:
    """A collection's settings as its metadata stores them (one key each), read in one place."""

    folders: dict[str, ScanOptions] = field(default_factory=dict)  # the indexed folders, sorted
    excluded: tuple[str, ...] = ()  # removed paths that later index runs leave out
    codes: CodeSettings | None = None  # None: exact float search
    adapt: dict | None = None  # the caption adaptation's record (version, file, kind, ...)

    @property
    def roots(self) -> list[str]:
        return list(self.folders)

    @classmethod
    def from_meta(cls, meta: dict) -> CollectionSettings:
        options = meta.get("folder_options", {})
        return cls({root: ScanOptions.from_json(options.get(root)) for root in meta.get("roots", [])},
                   tuple(meta.get("excluded", [])), CodeSettings.from_meta(meta.get("codes")), meta.get("adapt") or None)
