"""Opening and creating a collection, with the encoder that filled it (or a clear refusal)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path


from ..encoders import DEFAULT_ENCODER, Encoder, EncoderInfo, create_encoder
from ..settings import check_flag
from ..storage import Metadata
from .facade import Collection
from .layout import DB_NAME, LEFT_BEHIND


class EncoderMismatchError(ValueError):
    pass


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")  # RFC 3986

#: Openers of collections named by a URI, by scheme (glimpse.milvus registers its two).
URI_OPENERS: dict[str, Callable[..., Collection]] = {}


def open_collection(
    path: str | os.PathLike,
    encoder: str | Encoder | None = None,
    *,
    create: bool = True,
    **encoder_options,
) -> Collection:
    """Open (or create) the collection in directory ``path``.

    ``encoder`` is a registered name or an :class:`Encoder`; by default, the one the
    collection was built with, or the default encoder for a new collection. Opening a
    collection with a different encoder than the one that filled it is an error: their
    vectors are not comparable.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"the collection path must be a str or os.PathLike, not {type(path).__name__}")
    check_flag("create", create)
    if not str(path).strip():  # Path("") is the current folder: -c "" (an unset variable) made a collection there
        raise ValueError("the collection path is empty: give a folder (or a milvus URI)")
    scheme = str(path).split("://", 1)[0] if "://" in str(path) else None
    if scheme in URI_OPENERS:  # milvus-lite:///file.db, milvus://host:port/NAME
        return URI_OPENERS[scheme](str(path), encoder, create=create, **encoder_options)
    if scheme is not None and _SCHEME.fullmatch(scheme) and not os.path.lexists(path):  # a typo, not a folder "mlvus:"
        raise ValueError(f"{str(path)!r} is neither a folder nor a collection URI: use a folder, "
                         "milvus-lite:///path/photos.db or milvus://HOST:PORT/NAME")
    return open_directory(Path(path), encoder, create, encoder_options, Collection)


def open_directory(path: Path, encoder: str | Encoder | None, create: bool, encoder_options: dict,
                   make: Callable[[Path, Encoder, Metadata], Collection]) -> Collection:
    """:func:`open_collection` on a directory; ``make`` builds the Collection (or a subclass)."""
    root = path.expanduser().absolute()
    if root.exists() and not root.is_dir():  # mkdir would say only "File exists"
        raise ValueError(f"{root} is a file, not a collection folder: give a folder path")
    db_path = root / DB_NAME
    if db_path.exists() and not db_path.is_file():  # SQLite would say only "unable to open database file"
        raise ValueError(f"{db_path} is not a file: the collection's metadata is not there; restore it from a "
                         "backup, or index into a new collection")
    if not db_path.exists():
        if not create:
            raise FileNotFoundError(f"no glimpse collection at {root} (create one with `glimpse index FOLDER`)")
        _refuse_left_behind(root)
        if not isinstance(encoder, Encoder):  # a bad name or option, or weights that cannot load, fail before anything is created
            encoder = create_encoder(DEFAULT_ENCODER if encoder is None else encoder, **encoder_options)
        root.mkdir(parents=True, exist_ok=True)
    meta = Metadata(db_path)
    try:
        if not create and "encoder" not in meta.get_meta():  # else a read would record a fresh default collection
            raise FileNotFoundError(f"no glimpse collection at {root}: its {DB_NAME} holds none (emptied or never "
                                    "finished): restore it from a backup, or index into a new collection")
        encoder = _open_encoder(root, meta, encoder, encoder_options)
    except BaseException:
        meta.close()
        raise
    return make(root, encoder, meta)


def _refuse_left_behind(root: Path) -> None:
    """A ValueError when ``root`` holds a collection's files without its database."""
    found = sorted({path.name for pattern in LEFT_BEHIND for path in root.glob(pattern)}) if root.is_dir() else []
    if found:
        named = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise ValueError(f"{root} holds the files of a collection ({named}) but not its {DB_NAME}: restore that "
                         "from a backup, or, to start over, move those files out of the folder (or index into "
                         "another folder); a new collection over them would mix their vectors with its own")


def _open_encoder(root: Path, meta: Metadata, encoder: str | Encoder | None, options: dict) -> Encoder:
    """The collection's encoder: the one asked for, checked against the one that filled it.

    Without an encoder or model options, the recorded ones rebuild the same encoder; options
    given now (other weights, a device) override them. The weights' fingerprint in the
    encoder's version decides: the same weights from a moved file are accepted (and the new
    path recorded), other weights are refused. A collection filled by an earlier version of the same
    model gets that version where the encoder still builds it (``Encoder.at_version``).
    """
    recorded = meta.get_meta()
    if "encoder" not in recorded:
        if not isinstance(encoder, Encoder):
            encoder = create_encoder(DEFAULT_ENCODER if encoder is None else encoder, **options)
        meta.set_meta(
            encoder=encoder.name, encoder_version=encoder.version, dim=encoder.dim,
            rows=0, generation=0, created=time.time(),
            **({"encoder_options": encoder.options} if encoder.options else {}),
        )
        return encoder
    want = EncoderInfo(recorded["encoder"], recorded["dim"], recorded["encoder_version"])
    want_options = recorded.get("encoder_options", {})
    if encoder is None:
        encoder = want.name
    # Compare names before building: a model can take seconds to construct.
    name = encoder.name if isinstance(encoder, Encoder) else encoder
    if name != want.name:
        raise _mismatch(root, want, want_options, encoder)
    if not isinstance(encoder, Encoder):
        encoder = create_encoder(encoder, **{**want_options, **options})
        if encoder.version != want.version:  # filled by an earlier version of the model: build that one
            encoder = encoder.at_version(want.version) or encoder
    if encoder.info != want:  # same name, other weights or another version of the model
        raise _mismatch(root, want, want_options, encoder)
    if encoder.options and encoder.options != want_options:
        meta.set_meta(encoder_options=encoder.options)
    return encoder


def _mismatch(root: Path, want: EncoderInfo, want_options: dict, got: Encoder | str) -> EncoderMismatchError:
    def described(name: str, version: str, dim: int, options: dict) -> str:
        chosen = "".join(f", {k} {v}" for k, v in options.items())
        return f"{name} v{version} ({dim}-d{chosen})"

    have = described(got.name, got.version, got.dim, got.options) if isinstance(got, Encoder) else got
    return EncoderMismatchError(
        f"collection {root} was built with encoder {described(want.name, want.version, want.dim, want_options)}, "
        f"not {have}: their vectors are not comparable. "
        "Open it with its own encoder, or index into a new collection."
    )
