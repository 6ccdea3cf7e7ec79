"""Every error answer is ``{"error": ..., "status": ...}`` JSON, and bodies are bounded (and never
inflated) before they are read."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..query.limits import clip
from .models import TERMS_TAGS


log = logging.getLogger(__name__)


def describe(errors, prefix: str = "") -> str:
    """Pydantic's error list as one readable line: 'k: must be <= 1000; ...' (fields under ``prefix``)."""
    parts = []
    for e in errors:
        loc = [x for x in e.get("loc", ()) if x != "body"]
        loc = [x for i, x in enumerate(loc) if not (i and loc[i - 1] == "terms" and x in TERMS_TAGS)]
        where = ".".join(map(str, loc)) or "request"
        parts.append(f"{prefix}{where}: {e.get('msg', 'invalid').removeprefix('Value error, ')}")
    return "; ".join(parts)


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false",
               type(None): "null"}


def invalid_body(errors, where: str = "the request body", prefix: str = "") -> tuple[int, str]:
    """(status, one sentence) for a JSON body that failed its model, the same for a request body
    and a JSON form field (``where``): not JSON (400), not sent as JSON (415), not an object
    (422), else each field's error (422, under ``prefix``)."""
    for e in errors:
        loc, kind = tuple(e.get("loc", ())), e.get("type")
        if kind == "json_invalid":  # pydantic says where in its message, FastAPI in the location
            at = f" at character {loc[1] + 1}" if len(loc) > 1 and isinstance(loc[1], int) else ""
            why = e.get("ctx", {}).get("error", "malformed")
            return 400, f"{where} is not valid JSON ({NESTED if why.startswith('recursion limit') else why + at})"
        if loc not in ((), ("body",)):
            continue
        if kind == "missing":
            return 400, f"{where} is empty: send a JSON object with Content-Type: application/json"
        if isinstance(e.get("input"), bytes):  # FastAPI parses JSON only when the content type says JSON
            return 415, f"{where} must be JSON sent with Content-Type: application/json"
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            return 422, f"{where} must be a JSON object, not {_JSON_KINDS.get(type(e.get('input')), 'that')}"
    return 422, describe(errors, prefix)


class _Pairs(list):
    """A JSON object as its (key, value) pairs, repeats kept."""


def repeated_key(text: str | bytes) -> str | None:
    """Where a JSON object gives one key twice (``filters.min_width``), else None, also for text
    that is not JSON (its parser says why). JSON parsers keep the last value unseen, as a form
    field sent twice would be."""
    try:
        tree = json.loads(text, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[tuple, list]] = [((), tree)] if isinstance(tree, list) else []
    while stack:
        where, node = stack.pop()
        pairs = node if isinstance(node, _Pairs) else enumerate(node)
        seen = set()
        for key, value in pairs:
            if key in seen:
                return ".".join(map(str, (*where, key)))
            seen.add(key)
            if isinstance(value, list):  # objects and arrays; numbers (a vector's) need no look
                stack.append(((*where, key), value))
    return None


#: Nesting past the JSON parser's depth limit (pydantic's: 200 levels; the json module's: about 1,000).
NESTED = "nested too deeply"


def _unparsed(cause: BaseException | None) -> str | None:
    """Why FastAPI's JSON parser gave up on a body, where FastAPI only says "There was an error
    parsing the body"; None for other causes."""
    if isinstance(cause, RecursionError):
        return NESTED
    if isinstance(cause, UnicodeDecodeError):
        return "not UTF-8 text"
    return None


class SafeJSON(JSONResponse):
    """JSON that any Python text can go into: a lone surrogate (the undecodable byte of a
    name, or one a client sent) becomes a ``\\udcXX`` escape, which is valid JSON, not a 500."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace")


def _error(message: str, status: int, headers=None) -> SafeJSON:
    return SafeJSON({"error": message, "status": status}, status, headers=headers)


def milvus_errors() -> tuple[type[Exception], ...]:
    """pymilvus's error class once a Milvus collection imported it; none for a local collection."""
    milvus = sys.modules.get("pymilvus")
    return (milvus.MilvusException,) if milvus is not None else ()


def error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and (why := _unparsed(exc.__cause__)):
            return _error(f"the request body is not valid JSON ({why})", 400)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405 and headers and headers.get("Allow"):  # "Method Not Allowed" alone says not what to do
            return _error(f"{request.method} is not allowed here: send {headers['Allow']} (see /static/api.html)", 405, headers)
        return _error(str(exc.detail), exc.status_code, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = invalid_body(exc.errors())
        return _error(message, status)

    @app.exception_handler(OSError)
    @app.exception_handler(sqlite3.DatabaseError)
    async def unreadable(_request: Request, exc: Exception) -> JSONResponse:
        # The collection's own files, damaged or gone under a running server: not the client's
        # fault, and not a bug of the server's either; the server stays up for what still works.
        log.error("collection files cannot be read: %s", exc)
        return _error(f"the collection cannot be read: {clip(str(exc))}", 503)

    for milvus_error in milvus_errors():
        @app.exception_handler(milvus_error)
        async def milvus_down(_request: Request, exc: Exception) -> JSONResponse:
            # What pymilvus raises once its retries run out: the Milvus server stopped, or is unreachable.
            log.error("Milvus: %s", exc)
            return _error(f"the Milvus server did not answer: {clip(getattr(exc, 'message', str(exc)), 300)}", 503)

    @app.exception_handler(Exception)
    async def crash(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(f"internal error: {type(exc).__name__}: {clip(str(exc))}", 500)


class Cors(CORSMiddleware):
    """CORS whose refused preflight is an error answer like the others (Starlette's is plain text)."""

    def preflight_response(self, request_headers):
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        refused = response.body.decode().removeprefix("Disallowed CORS ")  # what was refused: origin, method...
        headers = {k: v for k, v in response.headers.items() if not k.startswith("content-")}
        return _error(f"CORS preflight refused ({refused}): this server allows {', '.join(self.allow_origins)} "
                      f"with {', '.join(sorted(self.allow_methods))}", 400, headers)


class BodyGate:
    """Refuse request bodies over ``limit`` bytes (413), and compressed ones (415: a few KiB of
    gzip can inflate to gigabytes), before they are parsed or spooled."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        coding = headers.get(b"content-encoding", b"identity").strip().lower()
        if coding != b"identity":
            return await _error(f"a body sent with Content-Encoding: {coding.decode('latin-1')} is not accepted: "
                                "send it uncompressed", 415)(scope, receive, send)
        declared = headers.get(b"content-length")
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
