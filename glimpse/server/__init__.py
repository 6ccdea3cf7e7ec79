"""The HTTP API and web page (``glimpse serve``): FastAPI, one app per collection."""

from .app import create_app, serve
from .config import ServerConfig, read_token

__all__ = ["ServerConfig", "create_app", "read_token", "serve"]
