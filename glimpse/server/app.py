"""The FastAPI app: the JSON API under ``/api`` and the web page at ``/``.

Reads (search, items, thumbnails, stats) answer from one reader :class:`Collection`, whose
searches run in parallel (see :meth:`Collection.search`). Writes need the write token and
run on the writer thread (:mod:`.jobs`). Original files are read only through
:meth:`Collection.open_original`: what was indexed, inside the roots, or nothing. Paths are
shown with :func:`~glimpse.ingest.names.shown` (bytes that are not UTF-8 as ``\\xNN``).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import mimetypes
import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..collection import Collection, open_collection
from ..storage.originals import FileChangedError
from ..ingest import DecodeError, content_hash, decode_image
from ..ingest.names import shown
from ..query.limits import clip
from .config import PathNotAllowedError, ServerConfig, confine
from .jobs import JobState, Writer
from .models import (
    MAX_INT, AddPaths, ErrorBody, Health, Hit, IngestError, ItemInfo, Job, RemovePaths, SearchBody,
    SearchResponse, Stats,
)
from .search import QueryError, search_request
from .thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

STATIC = files("glimpse.server") / "static"
UPLOAD_DIR = "uploads"
#: Images one search may upload (terms weigh them as upload: 0, upload: 1, ...).
MAX_QUERY_IMAGES = 8

PathId = Annotated[int, FastPath(ge=0, le=MAX_INT, description="An item id of this collection.")]

# Documented error answers, so clients (and schemathesis) know their shape.
ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 415, 422)}

# Pillow's format names -> the file extension an uploaded image is kept under.
_SUFFIX = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
           "TIFF": ".tif", "HEIF": ".heic", "AVIF": ".avif"}


class Service:
    """What the routes share: the reader collection, the writer, the cache."""

    def __init__(self, col: Collection, config: ServerConfig):
        self.col = col
        self.config = config
        self.upload_dir = Path(config.upload_dir or col.path / UPLOAD_DIR)
        self.thumbnails = ThumbnailCache(col.path, config.max_upload_pixels)
        self.writer = Writer(lambda: open_collection(col.path, encoder=col.encoder, create=False))

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
        except FileNotFoundError:
            raise HTTPException(404, f"image {item_id}: none of its files is there any more") from None
        except FileChangedError as exc:
            raise HTTPException(409, f"image {item_id} is not shown: {exc}") from None

    def read_original(self, item_id: int) -> bytes:
        _, file = self.original(item_id)
        with file:
            return file.read()


def create_app(collection: Collection | str | os.PathLike, config: ServerConfig | None = None) -> FastAPI:
    """The app for one collection (an open one, or a directory to open read-side)."""
    config = config or ServerConfig()
    owned = not isinstance(collection, Collection)
    col = open_collection(collection, create=False) if owned else collection
    service = Service(col, config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        service.writer.close()
        if owned:
            col.close()

    app = FastAPI(
        title="glimpse", version=_version(), lifespan=lifespan, default_response_class=SafeJSON,
        description="Search a glimpse image collection by text, image, both, weighted terms or item id.",
    )
    app.state.service = service
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    # A request may carry a few images (weighted terms, several uploads to add) and a form.
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes * 4 + (1 << 20))
    _error_handlers(app)
    _routes(app, service)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


# --------------------------------------------------------------------------- routes


def _routes(app: FastAPI, service: Service) -> None:
    config, col = service.config, service.col
    Writes = [Depends(require_write_token)]

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/api/health", response_model=Health, tags=["collection"])
    def health() -> Health:
        return Health(status="ok", images=len(col))

    @app.get("/api/stats", response_model=Stats, tags=["collection"])
    def stats() -> Stats:
        s = col.stats()
        shown_paths = {"path": shown(s.path), "roots": [shown(r) for r in s.roots]}
        return Stats(**{**asdict(s), **shown_paths}, writable=config.write_token is not None,
                     max_upload_bytes=config.max_upload_bytes, max_upload_pixels=config.max_upload_pixels)

    @app.get("/api/errors", response_model=list[IngestError], tags=["collection"])
    def errors(limit: Annotated[int, Query(ge=1, le=10000)] = 100) -> list[IngestError]:
        """Files that could not be indexed, newest first, with the reason."""
        return [IngestError(path=shown(e.path), reason=e.reason, at=e.at) for e in col.errors(limit)]

    @app.post("/api/search", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    def search(req: SearchBody) -> SearchResponse:
        """Search by text, vector, item id (like), weighted terms, with filters and a score cut-off."""
        return _search(service, req, [])

    @app.post("/api/search/image", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    def search_image(
        image: Annotated[list[UploadFile], File(description="Query image(s); with text: a composed query.")],
        query: Annotated[str, Form(description="A search body as JSON (text, k, filters, terms...), as /api/search takes.")] = "{}",
    ) -> SearchResponse:
        """Search by uploaded image(s), alone or composed with the request's text or terms."""
        if len(image) > MAX_QUERY_IMAGES:  # each may take up to the pixel limit to decode
            raise HTTPException(422, f"{len(image)} images came with the query; at most {MAX_QUERY_IMAGES} are allowed")
        try:
            req = SearchBody.model_validate_json(query)
        except ValidationError as exc:
            raise HTTPException(422, "query: " + _describe(exc.errors())) from None
        # The checked bytes go on, not the decoded picture: by its content hash the collection
        # knows a reference image it holds (and leaves it out of a composed query's results).
        pictures = [_decode_upload(service, f, target=col.encoder.image_size)[0] for f in image]
        return _search(service, req, pictures)

    @app.get("/api/items/{item_id}", response_model=ItemInfo, responses=ERRORS, tags=["items"])
    def item(item_id: PathId) -> ItemInfo:
        info = service.item(item_id)
        return ItemInfo(**{**asdict(info), "paths": [shown(p) for p in info.paths]},
                        thumbnail=_thumb_url(info.id), image=_image_url(info.id))

    @app.get("/api/items/{item_id}/thumbnail", response_class=FileResponse, responses=ERRORS, tags=["items"])
    def thumbnail(item_id: PathId, size: Annotated[int, Query(description="Box side in pixels: 128, 256, 512 or 1024.")] = 256):
        """A JPEG that fits in size x size, made once and cached in the collection."""
        if size not in config.thumbnail_sizes:
            raise HTTPException(422, f"size must be one of {', '.join(map(str, config.thumbnail_sizes))}")
        service.item(item_id)
        try:
            path = service.thumbnails.get(item_id, size, lambda: service.read_original(item_id))
        except DecodeError as exc:
            raise HTTPException(422, f"image {item_id} cannot be shown: {exc.reason}") from None
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/api/items/{item_id}/image", response_class=FileResponse, responses=ERRORS, tags=["items"])
    def original(item_id: PathId):
        """The original file, as indexed: 404 when it is gone, 409 when it changed since (or now
        leads outside the collection's folders)."""
        path, file = service.original(item_id)

        def chunks():
            with file:
                while block := file.read(1 << 20):
                    yield block

        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                   "Content-Length": str(os.fstat(file.fileno()).st_size)}
        return StreamingResponse(chunks(), media_type=mimetypes.guess_type(path)[0] or "application/octet-stream",
                                 headers=headers)

    @app.delete("/api/items/{item_id}", response_model=Job, status_code=202, dependencies=Writes,
                responses=ERRORS, tags=["write"])
    def delete_item(item_id: PathId, response: Response, wait: bool = False) -> Job:
        """Forget every file of this image (the files themselves are not touched)."""
        paths = service.item(item_id).paths
        return _job(service, "remove", _removal(service, paths), wait, response)

    @app.post("/api/items/upload", response_model=Job, status_code=202, dependencies=Writes,
              responses=ERRORS, tags=["write"])
    def upload(image: Annotated[list[UploadFile], File(description="Images to add.")], response: Response,
               wait: bool = False) -> Job:
        """Add uploaded images: kept in the server's upload folder (named by content) and indexed."""
        saved = []
        for f in image:
            data, _ = _decode_upload(service, f, target=64)
            fmt = Image.open(io.BytesIO(data)).format
            target = service.upload_dir / f"{content_hash(data)}{_SUFFIX.get(fmt or '', '.img')}"
            _write_atomic(target, data)
            saved.append(str(target))
        return _job(service, "add", lambda c, p: _report(c.add(saved, progress=p)), wait, response)

    @app.post("/api/items/add", response_model=Job, status_code=202, dependencies=Writes,
              responses=ERRORS, tags=["write"])
    def add(req: AddPaths, response: Response, wait: bool = False) -> Job:
        """Add files or folders that are on the server, inside its roots."""
        paths = _confined(service, req.paths)
        return _job(service, "add", lambda c, p: _report(
            c.add(paths, include=req.include, exclude=req.exclude, progress=p)), wait, response)

    @app.post("/api/items/remove", response_model=Job, status_code=202, dependencies=Writes,
              responses=ERRORS, tags=["write"])
    def remove(req: RemovePaths, response: Response, wait: bool = False) -> Job:
        """Forget files or whole folders (inside the server's roots), or keys of precomputed vectors."""
        paths = _confined(service, req.paths, must_exist=False) if col.has_files else req.paths
        return _job(service, "remove", _removal(service, paths), wait, response)

    @app.get("/api/jobs/{job_id}", response_model=Job, responses=ERRORS, tags=["write"])
    def job(job_id: Annotated[int, FastPath(ge=1, le=MAX_INT)]) -> Job:
        state = service.writer.get(job_id)
        if state is None:
            raise HTTPException(404, f"no job {job_id} (finished jobs are forgotten after a while)")
        return _job_model(state)


_bearer = HTTPBearer(auto_error=False, description="The server's write token.")


def require_write_token(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    token = request.app.state.service.config.write_token
    if token is None:  # 401 like a wrong token (the rule); the message says why
        raise HTTPException(401, "this server is read-only: start it with GLIMPSE_WRITE_TOKEN or --token-file to allow writes",
                            headers={"WWW-Authenticate": "Bearer"})
    if cred is None or not hmac.compare_digest(cred.credentials.encode(), token.encode()):
        raise HTTPException(401, "writes need the write token: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})


def _search(service: Service, req: SearchBody, pictures: list[bytes]) -> SearchResponse:
    col = service.col
    try:
        request = search_request(col, req, pictures)
        start = time.perf_counter()
        hits = col.search(request)
        took = (time.perf_counter() - start) * 1000
    except QueryError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return SearchResponse(
        results=[Hit(id=h.id, path=shown(h.path), score=h.score, thumbnail=_thumb_url(h.id), image=_image_url(h.id))
                 for h in hits],
        took_ms=round(took, 3),
    )


def _decode_upload(service: Service, upload: UploadFile, target: int) -> tuple[bytes, Image.Image]:
    """Read an upload under the byte limit and decode it under the pixel limit."""
    limit = service.config.max_upload_bytes
    data = upload.file.read(limit + 1)
    name = upload.filename or "upload"
    if len(data) > limit:
        raise HTTPException(413, f"{name}: larger than the upload limit of {limit:,} bytes")
    try:
        return data, decode_image(data, target=target, max_pixels=service.config.max_upload_pixels)
    except DecodeError as exc:
        status = 413 if exc.reason.startswith("too many pixels") else 415 if exc.reason.startswith("not an image") else 422
        raise HTTPException(status, f"{name}: {exc.reason}") from None


def _confined(service: Service, raw: list[str], must_exist: bool = True) -> list[str]:
    out = []
    for p in raw:
        try:
            real = confine(p, service.roots())
        except PathNotAllowedError as exc:
            raise HTTPException(403, str(exc)) from None
        if must_exist and not real.exists():
            raise HTTPException(404, f"no such file or folder: {shown(str(real))}")
        out.append(str(real))
    return out


def _job(service: Service, kind: str, work, wait: bool, response: Response) -> Job:
    """Queue a write; with ``wait``, answer when it is done (200) or failed (409 locked, else 422)."""
    state = service.writer.submit(kind, work)
    if wait:
        state.future.result()
        if state.locked:
            raise HTTPException(409, state.error)
        if state.state == "failed":
            raise HTTPException(422, state.error)
        response.status_code = 200
    return _job_model(state)


def _removal(service: Service, paths: list[str]):
    def work(col: Collection, progress) -> dict:
        removed = col.remove(paths)
        progress(removed, removed)
        # What the server made for the dropped items goes with them: thumbnails, and the
        # files it keeps for uploads (other files are the user's and are never touched).
        service.thumbnails.prune(set(col.item_ids()))
        uploads = service.upload_dir.resolve()
        for path in paths if col.has_files else ():  # keys of precomputed vectors name no file
            if Path(path).resolve().parent == uploads:
                Path(path).unlink(missing_ok=True)
        return {"removed": removed}

    return work


def _job_model(state: JobState) -> Job:
    return Job(id=state.id, kind=state.kind, state=state.state, done=state.done, total=state.total,
               result=state.result, error=state.error)


def _report(report) -> dict:
    return {"indexed": report.indexed, "embedded": report.embedded, "linked": report.linked,
            "unchanged": report.unchanged, "skipped": report.skipped, "removed": report.removed,
            # The first 100 reasons; the rest are in /api/errors.
            "errors": [{"path": shown(p), "reason": r} for p, r in report.errors[:100]]}


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def _thumb_url(item_id: int) -> str:
    return f"/api/items/{item_id}/thumbnail"


def _image_url(item_id: int) -> str:
    return f"/api/items/{item_id}/image"


def _version() -> str:
    from .. import __version__

    return __version__


# --------------------------------------------------------------------------- errors


def _describe(errors) -> str:
    """Pydantic's error list as one readable line: 'body.k: must be <= 1000; ...'."""
    parts = []
    for e in errors:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "request"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


class SafeJSON(JSONResponse):
    """JSON that any Python text can go into: a lone surrogate (the undecodable byte of a
    name, or one a client sent) becomes a ``\\udcXX`` escape, which is valid JSON, not a 500."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace")


def _error(message: str, status: int, headers=None) -> SafeJSON:
    return SafeJSON({"error": message, "status": status}, status, headers=headers)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(str(exc.detail), exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error("malformed JSON in the request body", 400)
        return _error(_describe(errors), 422)

    @app.exception_handler(Exception)
    async def crash(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(f"internal error: {type(exc).__name__}: {clip(str(exc))}", 500)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (413) before they are parsed or spooled."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(self.limit)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"request body larger than {self.limit:,} bytes")
            return message

        return await self.app(scope, counted, send)


def _too_large(limit: int) -> JSONResponse:
    return _error(f"request body larger than {limit:,} bytes", 413)


def serve(collection: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
          config: ServerConfig | None = None) -> None:
    """Open ``collection`` and serve it with uvicorn until interrupted."""
    import faiss
    import uvicorn

    # One query at a time uses one core: FAISS's OpenMP threads only pay off for batches, and
    # on a busy machine their spin-waits measured 2 ms -> 350 ms per query at 100k codes.
    faiss.omp_set_num_threads(1)
    col = open_collection(collection, create=False)
    if len(col):
        print(f"loading the search index of {len(col):,} images and the text model...", flush=True)
        # Load both now, so the first user query is not the slow one (the text model takes seconds).
        col.search(vector=np.zeros(col.encoder.dim, np.float32), k=1)
        if col.has_files:  # a collection of precomputed vectors has no model
            col.encoder.encode_texts(["warm up"])
    app = create_app(col, config)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        col.close()
