"""The ``glimpse`` command line: one module per group of commands, on one Typer app.

``common`` holds the app and what the commands share; ``ingest`` (index, import-vectors,
enrich), ``search``, ``manage`` (adapt, info, remove, compact, repair), ``upgrade`` and ``serve`` (demo, serve)
register their commands on it in that order, which is the order ``glimpse --help`` lists.
"""

from ..eval.cli import app as eval_app
from .common import app

# Importing a group registers its commands, in this order (not sorted: it is the help's order).
from . import ingest, search, manage, upgrade, serve  # noqa: E402, F401, I001

app.add_typer(eval_app, name="eval", short_help="Score search configurations on a benchmark; writes a report.", help="Score search configurations on a retrieval benchmark; writes a report.")

__all__ = ["app"]
