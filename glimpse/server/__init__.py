"""The HTTP API and web page (``glimpse serve``): FastAPI, one app per collection."""

from ..extras import require

require("server", "glimpse serve")

from .app import create_app, serve  # noqa: E402 - after the check, which names the extra to install
from .config import ServerConfig, read_token  # noqa: E402

__all__ = ["ServerConfig", "create_app", "read_token", "serve"]
