"""Server settings, and the one rule for client-supplied paths: resolve, then confine."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..ingest import DEFAULT_MAX_PIXELS
from ..ingest.names import shown
from ..query.limits import clip

TOKEN_ENV = "GLIMPSE_WRITE_TOKEN"


class PathNotAllowedError(ValueError):
    pass


@dataclass
class ServerConfig:
    """How a server may be used. The defaults are the safe ones: read-only, no CORS."""

    write_token: str | None = None  # writes need ``Authorization: Bearer <token>``; None: read-only
    roots: list[Path] = field(default_factory=list)  # server-side paths must lie inside; default: the collection's
    upload_dir: Path | None = None  # where uploaded images are kept; default: COLLECTION/uploads
    cors_origins: list[str] = field(default_factory=list)
    max_upload_bytes: int = 20 << 20
    max_upload_pixels: int = DEFAULT_MAX_PIXELS // 2
    # All the images of one request together: decoding 8 near the per-image limit took ~13 CPU s.
    max_request_pixels: int = 100_000_000
    thumbnail_sizes: tuple[int, ...] = (128, 256, 512, 1024)

    def __post_init__(self) -> None:
        # A limit below one byte (say --max-upload-mb 0 or -1) would refuse every upload and body.
        for name in ("max_upload_bytes", "max_upload_pixels", "max_request_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {clip(str(value))}"
                                 + (" (glimpse serve --max-upload-mb: 1 or more)" if name == "max_upload_bytes" else ""))
        for root in self.roots:  # a mistyped --root would refuse every path later, as outside
            if not Path(root).expanduser().is_dir():
                raise ValueError(f"the root {shown(str(root))} is not a folder on this machine (glimpse serve --root FOLDER)")
        for origin in self.cors_origins:
            if not origin.strip():
                raise ValueError("an empty CORS origin allows no page: give one like https://example.org (glimpse serve --cors)")


def check_port(port: int) -> None:
    """ValueError unless ``port`` is one a server can listen on."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be a whole number from 1 to 65535, got {clip(str(port))}")


def check_address(host: str, port: int) -> None:
    """ValueError unless a server can listen on ``host``:``port`` now: checked before the index
    and the models load, where uvicorn would only log an error and exit 3."""
    check_port(port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"cannot listen on {clip(host)}: {getattr(exc, 'strerror', None) or exc} "
                         "(give --host an address of this machine, e.g. 127.0.0.1 or 0.0.0.0)") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise ValueError(f"cannot listen on {clip(host)}:{port}: {exc.strerror or exc} "
                             "(another server there? pick another --port)") from None


def read_token(token_file: str | os.PathLike | None) -> str | None:
    """The write token: from ``token_file`` when given, else ``$GLIMPSE_WRITE_TOKEN``."""
    if token_file is not None:
        try:
            token = Path(token_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read the token file {token_file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ValueError(f"the token file {token_file} is not UTF-8 text: write the token as plain text") from None
        if not token:
            raise ValueError(f"the token file {token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def confine(raw: str, roots: list[Path]) -> Path:
    """The real path of ``raw`` if it lies inside one of ``roots``, else PathNotAllowedError
    (ValueError for what names no path at all: empty, blank, a NUL byte).

    Symlinks and ``..`` are resolved *before* the check, so neither can lead outside.
    A relative path is taken relative to the first root. A byte of a name that is not UTF-8
    comes as a lone surrogate ``\\udcXX`` (Python's ``os.fsdecode``); other lone surrogates
    name no file.
    """
    if not roots:
        raise PathNotAllowedError("this server has no folders to add from (start it with --root DIR)")
    unusable = ValueError(f"not a usable path: '{clip(raw)}' (name a file or folder)")
    if "\0" in raw or not raw.strip():
        raise unusable
    try:
        os.fsencode(raw)
        candidate = Path(raw).expanduser()
    except (UnicodeEncodeError, RuntimeError):  # RuntimeError: "~name" of a user this machine does not have
        raise unusable from None
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    real = Path(os.path.realpath(candidate))
    for root in roots:
        if real.is_relative_to(os.path.realpath(root)):
            return real
    raise PathNotAllowedError(f"{clip(raw)} is outside the folders this server may read "
                              f"({', '.join(shown(str(r)) for r in roots)})")
