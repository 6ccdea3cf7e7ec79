"""What the routes share: the reader collection, the writer thread, thumbnails, upload checks."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, UploadFile
from fastapi import Path as FastPath

from ..atomic import open_own, write_atomic
from ..collection import Collection, open_collection
from ..storage.originals import FileChangedError, OnAnotherMachine
from ..ingest import DEFAULT_MAX_PIXELS, DecodeError, decode_image, image_pixels
from ..ingest.names import shown
from ..query.limits import clip
from .config import ServerConfig
from .errors import repeated_key
from .jobs import Writer
from .models import MAX_INT, Digits, ErrorBody
from .thumbnails import ThumbnailCache


UPLOAD_DIR = "uploads"

PathId = Annotated[int, FastPath(ge=0, le=MAX_INT, description="An item id of this collection."), Digits]

# Documented error answers, so clients (and schemathesis) know their shape.
ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 415, 422, 503)}


def only_form_fields(*known: str, hint: str):
    """A dependency refusing multipart fields a route does not read (FastAPI drops them unseen,
    so ``k=2`` beside the ``query`` JSON would silently search with k=10)."""

    async def check(request: Request) -> None:
        form = await request.form()  # the form FastAPI parsed (cached)
        unknown = sorted(set(form.keys()) - set(known))
        if unknown:
            raise HTTPException(422, f"unknown form field(s) {clip(', '.join(unknown))}: {hint}")
        repeated = sorted(name for name in set(form.keys()) - {"image"} if len(form.getlist(name)) > 1)
        if repeated:  # FastAPI would read one of them and drop the others unseen
            raise HTTPException(422, f"the form field {repeated[0]} came {len(form.getlist(repeated[0]))} times: send it once")
        # A part without a filename arrives as text, which FastAPI would call "Expected UploadFile".
        if any(isinstance(value, str) for value in form.getlist("image")):
            raise HTTPException(422, "each image must be sent as a file part with a filename "
                                     '(Content-Disposition: form-data; name="image"; filename="photo.jpg")')

    return Depends(check)


async def known_query(request: Request) -> None:
    """Refuse query parameters a route does not read, or one given twice: FastAPI would ignore
    a misspelt one unseen (``?wiat=true`` would not wait) and keep only the last of two."""
    route = request.scope.get("route")
    if not getattr(route, "include_in_schema", False):  # the page: a link to it may carry anything
        return
    known = {param.alias for param in route.dependant.query_params}
    names = [name for name, _ in request.query_params.multi_items()]
    if unknown := sorted(set(names) - known):
        raise HTTPException(422, f"unknown query parameter(s) {clip(', '.join(unknown))}: "
                                 f"this route takes {', '.join(sorted(known)) or 'none'}")
    for name in dict.fromkeys(names):
        if names.count(name) > 1:
            raise HTTPException(422, f"the query parameter {name} came {names.count(name)} times: send it once")


async def keys_once(request: Request) -> None:
    """Refuse a JSON body that gives a key twice (its parser keeps the last value unseen)."""
    if "json" in request.headers.get("content-type", "") and (key := repeated_key(await request.body())):
        raise HTTPException(422, f"the request body gives {key} twice: send it once")


#: The end of an upload's marker, ``.NAME.pending``: its add job has not finished yet.
PENDING = ".pending"


def pending_marker(upload: Path) -> Path:
    return upload.with_name(f".{upload.name}{PENDING}")


class Service:
    """What the routes share: the reader collection, the writer, the cache."""

    def __init__(self, col: Collection, config: ServerConfig):
        self.col = col
        self.config = config
        self.upload_dir = Path(config.upload_dir or col.path / UPLOAD_DIR)
        # Originals were decoded under ingest's limit when indexed; the (lower) upload limit
        # would leave a 48 MP phone photo without a thumbnail.
        self.thumbnails = ThumbnailCache(col.path, DEFAULT_MAX_PIXELS)
        self.writer = Writer(lambda: open_collection(col.location, encoder=col.encoder, create=False))
        self._pending: dict[Path, int] = {}  # uploads kept for jobs not yet done: how many jobs wait on each
        self._pending_lock = threading.Lock()

    def keep_uploads(self, files: dict[Path, bytes]) -> Callable[[bool], str]:
        """Write uploaded images into the upload folder for an add job; returns the job's
        ``after``: once it is done they stay, once it fails (another writer's lock, a damaged
        collection) those this and no other waiting job wrote go, so none is left unindexed.
        A file already there before (an earlier upload of the same picture) is never removed."""
        with self._pending_lock:
            mine = [path for path in files if path in self._pending or not path.exists()]
            for path in mine:
                self._pending[path] = self._pending.get(path, 0) + 1
        try:
            self.upload_dir.mkdir(parents=True, exist_ok=True)
            for path in mine:  # written first: a server killed before the job ran adds these when it starts again
                os.close(open_own(pending_marker(path)))
            for path, data in files.items():
                if not path.exists():  # named by content: one there holds these bytes (and rewriting it would change its mtime)
                    write_atomic(path, data)
        except BaseException:
            self._release(mine, done=False)
            raise
        return lambda done: self._release(mine, done)

    def _release(self, paths: list[Path], done: bool) -> str:
        with self._pending_lock:
            for path in paths:
                if path not in self._pending:  # another job that brought it in indexed it: it stays
                    continue
                self._pending[path] -= 1
                if done or not self._pending[path]:
                    del self._pending[path]
                    if not done:
                        path.unlink(missing_ok=True)
                    pending_marker(path).unlink(missing_ok=True)
        return "" if done else "; the uploaded images were not kept: send them again"

    def resumed_uploads(self, paths: list[Path]) -> Callable[[bool], str]:
        """The ``after`` of the job that adds what a killed server left pending: once done they are
        pending no more; a failed job (another writer's lock) leaves them for the next start."""
        def after(done: bool) -> str:
            if done:
                for path in paths:
                    pending_marker(path).unlink(missing_ok=True)
            return "" if done else "; the uploads stay pending for the next start of a writable server"
        return after

    def roots(self) -> list[Path]:
        """Folders that server-side paths may name: configured, else the collection's own."""
        return list(self.config.roots) or [Path(r) for r in self.col.stats().roots] + [self.upload_dir]

    def item(self, item_id: int):
        try:
            return self.col.item(item_id)
        except KeyError:
            raise HTTPException(404, f"no image with id {item_id} in this collection") from None

    def original(self, item_id: int):
        """(path, open file) of an item's original, as indexed; else 404, or 409 when it changed."""
        if not self.col.has_files:
            raise HTTPException(404, f"item {item_id} has no image file: this collection holds precomputed vectors")
        try:
            return self.col.open_original(item_id, [*self.config.roots, self.upload_dir])
        except KeyError:
            raise HTTPException(404, f"no image with id {item_id} in this collection") from None
        except OnAnotherMachine as exc:
            raise HTTPException(404, str(exc)) from None
        except FileNotFoundError:
            raise HTTPException(404, f"image {item_id}: none of its files is there any more") from None
        except FileChangedError as exc:
            raise HTTPException(409, f"image {item_id} is not shown: {exc}") from None
        except OSError as exc:  # say, made unreadable to the server since it was indexed
            raise HTTPException(409, f"image {item_id} is not shown: {shown(str(exc.filename or ''))} "
                                     f"cannot be read ({exc.strerror or exc})") from None

    def read_original(self, item_id: int) -> bytes:
        _, file = self.original(item_id)
        with file:
            return file.read()


def checked_uploads(service: Service, uploads: list[UploadFile], target: int) -> list[bytes]:
    """The bytes of ``uploads``, each read under the byte limit, their pixels together held to the
    request's budget from their headers before any is decoded (one that is over the per-image
    limit alone is refused by its own check), then each decoded under the per-image limit."""
    limit, budget = service.config.max_upload_bytes, service.config.max_request_pixels
    datas = []
    for upload in uploads:
        data = upload.file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"{_name(upload)}: larger than the upload limit of {limit:,} bytes")
        datas.append(data)
    pixels = [n for n in map(image_pixels, datas) if n <= service.config.max_upload_pixels]
    if sum(pixels) > budget:
        held, limit = f"{sum(pixels) / 1e6:.1f} MP", f"over the limit of {budget / 1e6:.1f} MP per request"
        raise HTTPException(413, f"the {len(datas)} images of this request hold {held} together, {limit}: send fewer "
                                 "or smaller images at a time" if len(datas) > 1 else
                                 f"this request's image holds {held}, {limit}: send a smaller image")
    for upload, data in zip(uploads, datas):
        try:
            decode_image(data, target=target, max_pixels=service.config.max_upload_pixels)
        except DecodeError as exc:
            status = 413 if exc.reason.startswith("too many pixels") else 415 if exc.reason.startswith("not an image") else 422
            raise HTTPException(status, f"{_name(upload)}: {exc.reason}") from None
    return datas


def upload_bounds(config: ServerConfig) -> str:
    """What :func:`checked_uploads` holds uploads to, in words (the OpenAPI schema's)."""
    return (f"At most {config.max_upload_bytes:,} bytes and {config.max_upload_pixels / 1e6:.1f} MP each, "
            f"{config.max_request_pixels / 1e6:.1f} MP together (checked from the headers before decoding).")


def _name(upload: UploadFile) -> str:
    return clip(upload.filename or "upload")


def image_urls(col: Collection, item_id: int) -> dict[str, str | None]:
    """An item's thumbnail and original URLs; None where the collection holds precomputed
    vectors (its items are keys with no image file: those URLs would answer 404)."""
    if not col.has_files:
        return {"thumbnail": None, "image": None}
    return {"thumbnail": f"/api/items/{item_id}/thumbnail", "image": f"/api/items/{item_id}/image"}
