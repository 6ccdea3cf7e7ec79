"""Every error answer is ``{"error": ..., "status": ...}`` JSON, and bodies are bounded before they are read."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..query.limits import clip


log = logging.getLogger(__name__)


def describe(errors) -> str:
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


def error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(str(exc.detail), exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error("malformed JSON in the request body", 400)
        return _error(describe(errors), 422)

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
