"""The FastAPI app: the JSON API under ``/api`` and the web page at ``/``.

Reads (search, items, thumbnails, stats) answer from one reader :class:`Collection`, whose
searches run in parallel (see :meth:`Collection.search`). Writes need the write token and
run on the writer thread (:mod:`.writes`, :mod:`.jobs`); errors are one JSON shape (:mod:`.errors`). Original files are read only through
:meth:`Collection.open_original`: what was indexed, inside the roots, or nothing. Paths are
shown with :func:`~glimpse.ingest.names.shown` (bytes that are not UTF-8 as ``\\xNN``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib.resources import files
from typing import Annotated

import numpy as np
from PIL import Image
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from ..collection import Collection, open_collection
from ..ingest import DecodeError
from ..ingest.names import shown
from .config import ServerConfig, check_address
from .models import MAX_INT, Digits, Health, Hit, IngestError, ItemInfo, SearchBody, SearchResponse, Stats
from .search import QueryError, search_request
from .errors import BodyGate, Cors, SafeJSON, error_handlers, invalid_body, repeated_key
from .service import ERRORS, PathId, Service, checked_uploads, image_urls, upload_bounds, keys_once, known_query, only_form_fields
from .writes import write_routes


STATIC = files("glimpse.server") / "static"
#: Images one search may upload (terms weigh them as upload: 0, upload: 1, ...).
MAX_QUERY_IMAGES = 8
_JPEG = {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail."}


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
        dependencies=[Depends(known_query), Depends(keys_once)],
        description="Search a glimpse image collection by text, image, both, weighted terms or item id.",
    )
    app.state.service = service
    if config.cors_origins:
        app.add_middleware(
            Cors, allow_origins=config.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    # A request may carry a few images (weighted terms, several uploads to add) and a form.
    app.add_middleware(BodyGate, limit=config.max_upload_bytes * 4 + (1 << 20))
    app.add_middleware(HeadAsGet)
    error_handlers(app)
    _routes(app, service)
    app.openapi = lambda: _openapi(app, config)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


# --------------------------------------------------------------------------- routes


def _routes(app: FastAPI, service: Service) -> None:
    config, col = service.config, service.col

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/api/health", response_model=Health, tags=["collection"])
    def health() -> Health:
        col.check_files()  # a removed collection, or a vector file cut short: a 503, as the next search
        return Health(status="ok", images=len(col))

    @app.get("/api/stats", response_model=Stats, tags=["collection"])
    def stats() -> Stats:
        s = col.stats()
        shown_paths = {"path": shown(s.path), "roots": [shown(r) for r in s.roots]}
        return Stats(**{**asdict(s), **shown_paths}, backend=col.backend_info(), writable=config.write_token is not None,
                     max_upload_bytes=config.max_upload_bytes, max_upload_pixels=config.max_upload_pixels,
                     max_request_pixels=config.max_request_pixels)

    @app.get("/api/errors", response_model=list[IngestError], tags=["collection"])
    def errors(limit: Annotated[int, Query(ge=1, le=10000), Digits] = 100) -> list[IngestError]:
        """Files that could not be indexed, newest first, with the reason."""
        return [IngestError(path=shown(e.path), reason=e.reason, at=e.at) for e in col.errors(limit)]

    @app.post("/api/search", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    def search(req: SearchBody) -> SearchResponse:
        """Search by text, vector, item id (like), weighted terms, with filters and a score cut-off."""
        return _search(service, req, [])

    @app.post("/api/search/image", response_model=SearchResponse, responses=ERRORS, tags=["search"],
              dependencies=[only_form_fields("image", "query", hint="send the image(s) as image and the search "
                                             "(text, k, filters, ...) as JSON in the query field")])
    def search_image(
        image: Annotated[list[UploadFile], File(description="Query image(s); with text: a composed query.")],
        query: Annotated[str, Form(description="A search body as JSON (text, k, filters, terms...), as /api/search takes.")] = "{}",
    ) -> SearchResponse:
        """Search by uploaded image(s), alone or composed with the request's text or terms."""
        if len(image) > MAX_QUERY_IMAGES:  # each may take up to the pixel limit to decode
            raise HTTPException(422, f"{len(image)} images came with the query; at most {MAX_QUERY_IMAGES} are allowed")
        if key := repeated_key(query):
            raise HTTPException(422, f"the query field gives {key} twice: send it once")
        try:
            req = SearchBody.model_validate_json(query)
        except ValidationError as exc:
            raise HTTPException(*invalid_body(exc.errors(), "the query field", prefix="query.")) from None
        # The checked bytes go on, not the decoded picture: by its content hash the collection
        # knows a reference image it holds (and leaves it out of a composed query's results).
        pictures = checked_uploads(service, image, target=col.encoder.image_size)
        return _search(service, req, pictures)

    @app.get("/api/items/{item_id}", response_model=ItemInfo, responses=ERRORS, tags=["items"])
    def item(item_id: PathId) -> ItemInfo:
        info = service.item(item_id)
        return ItemInfo(**{**asdict(info), "paths": [shown(p) for p in info.paths]}, **image_urls(service.col, info.id))

    @app.get("/api/items/{item_id}/thumbnail", response_class=Response, responses={**ERRORS, 200: _JPEG}, tags=["items"])
    def thumbnail(item_id: PathId, size: Annotated[int, Query(description="Box side in pixels."), Digits] = 256):
        """A JPEG that fits in size x size, made once and cached in the collection."""
        if size not in config.thumbnail_sizes:
            raise HTTPException(422, f"size must be one of {', '.join(map(str, config.thumbnail_sizes))}")
        service.item(item_id)
        try:
            jpeg = service.thumbnails.get(item_id, size, lambda: service.read_original(item_id))
        except DecodeError as exc:
            raise HTTPException(422, f"image {item_id} cannot be shown: {exc.reason}") from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/api/items/{item_id}/image", response_class=FileResponse, responses=ERRORS, tags=["items"])
    def original(item_id: PathId):
        """The original file, as indexed: 404 when it is gone, 409 when it changed since (or now
        leads outside the collection's folders)."""
        _, file = service.original(item_id)

        def chunks():
            with file:
                while block := file.read(1 << 20):
                    yield block

        # The type the bytes are, not the one the name says: a PNG named page.html (or .svg) with
        # a script after the pixels was served as HTML, running in this server's origin.
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": "default-src 'none'; sandbox",
                   "Content-Length": str(os.fstat(file.fileno()).st_size)}
        return StreamingResponse(chunks(), media_type=_image_type(file), headers=headers)
    write_routes(app, service)


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
        results=[Hit(id=h.id, path=shown(h.path), score=h.score, **image_urls(col, h.id)) for h in hits],
        took_ms=round(took, 3),
    )


def _image_type(file) -> str:
    """The media type of the image format in ``file`` (its header only is read; the file is
    left at its start), or a download type when Pillow does not know it."""
    try:
        kind = Image.open(file).get_format_mimetype()  # not closed: that would close the caller's file
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):  # what Pillow raises for bytes it will not read
        kind = None
    finally:
        file.seek(0)
    return kind if kind and kind.startswith("image/") and kind != "image/svg+xml" else "application/octet-stream"


def _openapi(app: FastAPI, config: ServerConfig) -> dict:
    """FastAPI's schema, saying what the server checks where FastAPI's rendering loses it."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        for node in _nodes(schema):
            if node.get("type") == "integer":  # FastAPI writes bounds as floats: 2**63 - 1 became 2**63
                for key in ("minimum", "maximum"):
                    if key in node:
                        node[key] = min(int(node[key]), MAX_INT)
        for name, body in schema["components"]["schemas"].items():
            if name.startswith("Body_"):  # multipart forms: other fields are refused (only_form_fields)
                body["additionalProperties"] = False
                body["properties"]["image"]["minItems"] = 1  # no image at all is refused
                body["properties"]["image"]["description"] += " " + upload_bounds(config)
                if name.startswith("Body_search_image"):
                    body["properties"]["image"]["maxItems"] = MAX_QUERY_IMAGES
        size = next(p for p in schema["paths"]["/api/items/{item_id}/thumbnail"]["get"]["parameters"] if p["name"] == "size")
        size["schema"]["enum"] = list(config.thumbnail_sizes)
    return app.openapi_schema


def _nodes(tree):
    """Every dict in a JSON tree."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


class HeadAsGet:
    """Answer HEAD as GET without the body (HTTP requires both; FastAPI routes only take GET).
    A route without GET still answers 405 naming its methods."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        return await self.app({**scope, "method": "GET"}, receive, headers_only)


def _version() -> str:
    from .. import __version__

    return __version__


def preloaded(started: float):
    """What the server prints as the vector file's background preload (``Collection.preload``) ends."""
    def report(done: Future[int]) -> None:
        if done.exception() is not None:
            print(f"the vector file could not be mapped ahead of searches: {done.exception()}", flush=True)
        elif done.result():
            print(f"mapped {done.result() / 1e9:.2f} GB of vectors into memory in {time.perf_counter() - started:.1f} s: "
                  "searches read them without a page fault each", flush=True)
    return report


def serve(collection: str | os.PathLike | Collection, host: str = "127.0.0.1", port: int = 8000,
          config: ServerConfig | None = None) -> None:
    """Open ``collection`` (or take it, opened: then the caller closes it) and serve it with
    uvicorn until interrupted."""
    import faiss
    import uvicorn

    check_address(host, port)
    # One query at a time uses one core: FAISS's OpenMP threads only pay off for batches, and
    # on a busy machine their spin-waits measured 2 ms -> 350 ms per query at 100k codes.
    faiss.omp_set_num_threads(1)
    opened = not isinstance(collection, Collection)
    col = open_collection(collection, create=False) if opened else collection
    if len(col):
        print(f"loading the search index of {len(col):,} images and the text model...", flush=True)
        # Load both now, so the first user query is not the slow one (the text model takes seconds).
        col.search(vector=np.ones(col.encoder.dim, np.float32), k=1)
        if col.has_files:  # a collection of precomputed vectors has no model
            col.encoder.encode_texts(["warm up"])
        col.preload().add_done_callback(preloaded(time.perf_counter()))
    app = create_app(col, config)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        if opened:
            col.close()
