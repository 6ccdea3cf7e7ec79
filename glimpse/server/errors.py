"""Every error answer is ``{"error": ..., "status": ...}`` JSON, and bodies are bounded (and never
inflated) before they are read."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from http import HTTPStatus

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from ..milvus.connect import milvus_errors
from ..query.limits import clip
from .models import TERMS_TAGS


log = logging.getLogger(__name__)


#: Field errors one answer names (a vector of 65,536 strings has as many, 2.7 MB of them).
MAX_NAMED = 3


def describe(errors, prefix: str = "") -> str:
    """Pydantic's error list as one readable line: 'k: must be <= 1000; ...' (fields under
    ``prefix``), the first :data:`MAX_NAMED` of them and how many more."""
    errors = list(errors)
    parts = []
    for e in errors[:MAX_NAMED]:
        loc = [x for x in e.get("loc", ()) if x != "body"]
        loc = [x for i, x in enumerate(loc) if not (i and loc[i - 1] == "terms" and x in TERMS_TAGS)]
        where = clip(".".join(map(str, loc))) or "request"  # a key the client made up, at most 120 characters
        parts.append(f"{prefix}{where}: {e.get('msg', 'invalid').removeprefix('Value error, ')}")
    more = len(errors) - MAX_NAMED
    return "; ".join(parts) + (f"; and {more:,} more error{'s' * (more > 1)} like these" if more > 0 else "")


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


class _Repeated(Exception):
    pass


def _unique(pairs: list) -> None:
    if len({key for key, _ in pairs}) != len(pairs):
        raise _Repeated


def repeated_key(text: str | bytes) -> str | None:
    """Where a JSON object gives one key twice (``filters.min_width``), else None, also for text
    that is not JSON (its parser says why). JSON parsers keep the last value unseen, as a form
    field sent twice would be."""
    try:
        json.loads(text, object_pairs_hook=_unique)  # the usual case: one pass of the parser
        return None
    except (ValueError, RecursionError):
        return None
    except _Repeated:
        pass
    try:  # where: the tree walked (a second parse, only for a body that repeats a key)
        tree = json.loads(text, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):  # a repeat, then text that is not JSON: the parser says so later
        return None
    stack: list[tuple[tuple, list]] = [((), tree)] if isinstance(tree, list) else []
    while stack:
        where, node = stack.pop()
        pairs = node if isinstance(node, _Pairs) else enumerate(node)
        seen = set()
        for key, value in pairs:
            if key in seen:
                return clip(".".join(map(str, (*where, key))))
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
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return f"a number in it has more than {sys.get_int_max_str_digits():,} digits"
    return None


def _routing(request: Request, status: int, headers: dict) -> str:
    """A sentence for the router's own refusals (no such path, a method it does not take);
    ``headers`` gains HEAD beside GET, which :class:`~glimpse.server.app.HeadAsGet` answers."""
    path = clip(request.url.path)
    if status == 404:
        return f"nothing at {path}: the API is under /api (see /openapi.json), the search page at /"
    if status == 405 and "Allow" in headers:
        allowed = [m.strip() for m in headers["Allow"].split(",")]
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.append("HEAD")
        headers["Allow"] = ", ".join(allowed)
        return f"{clip(request.method)} is not taken at {path}: use {' or '.join(allowed)}"
    return HTTPStatus(status).phrase


class SafeJSON(JSONResponse):
    """JSON that any Python text can go into: a lone surrogate (the undecodable byte of a
    name, or one a client sent) becomes a ``\\udcXX`` escape, which is valid JSON, not a 500."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace")


def _error(message: str, status: int, headers=None) -> SafeJSON:
    return SafeJSON({"error": message, "status": status}, status, headers=headers)


def error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and (why := _unparsed(exc.__cause__)):
            return _error(f"the request body is not valid JSON ({why})", 400)
        if isinstance(exc.__context__, MultiPartException):  # Starlette's own words, without what to send
            return _error(f"the form cannot be read ({str(exc.detail).rstrip('.')}): send multipart/form-data, "
                          'each image a file part (name="image"; filename="photo.jpg")', 400)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.detail == HTTPStatus(exc.status_code).phrase:  # the router's bare "Not Found"
            return _error(_routing(request, exc.status_code, headers), exc.status_code, headers)
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


#: Any body but a multipart upload: JSON, whose every value costs Python work to parse and check
#: (16 MB of small arrays took a minute). The largest a request needs, a vector of 65,536
#: numbers at 17 digits each, is about 1.5 MB.
JSON_LIMIT = 2 << 20


class BodyGate:
    """Refuse request bodies over ``limit`` bytes, or :data:`JSON_LIMIT` for any but a multipart
    upload (413), and compressed ones (415: a few KiB of gzip can inflate to gigabytes), before
    they are parsed or spooled."""

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
        upload = headers.get(b"content-type", b"").lstrip().lower().startswith(b"multipart/form-data")
        limit = self.limit if upload else min(self.limit, JSON_LIMIT)
        what = "" if upload else " (the limit for any body but a multipart image upload)"
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _error(_too_large(what, limit), 413)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, _too_large(what, limit))
            return message

        return await self.app(scope, counted, send)


def _too_large(what: str, limit: int) -> str:
    return f"request body larger than {limit:,} bytes{what}"
