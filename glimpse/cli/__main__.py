"""``python -m glimpse.cli``: the ``glimpse`` command."""

from . import app

app()
