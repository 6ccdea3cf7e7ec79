"""Commands that run something on a collection: demo, serve."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..ingest.names import shown
from .common import DEFAULT_COLLECTION, app, closed_after_command, console, fail, print_results, run_index


@app.command(short_help="Index sample photos (or FOLDER) and search them.")
def demo(
    folder: Annotated[Optional[Path], typer.Argument(help="Your own folder of images (default: scikit-image's sample photos).")] = None,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Where to build the demo collection.")] = "~/.glimpse/demo",
    encoder: Annotated[Optional[str], typer.Option(help="Encoder for the demo collection (default: lite0-minilm).")] = None,
) -> None:
    """Index sample photos (or FOLDER) and run a few text and image searches."""
    import glimpse
    from ..demo import SAMPLES_FEATURE, demo_searches, write_samples
    from ..extras import require

    where = Path(os.path.expanduser(collection))
    if folder is not None and not folder.is_dir():  # checked before a collection is made for it
        raise fail(ValueError(f"{shown(str(folder))} is not a folder: give a folder of images, or none for the sample photos"))
    if folder is None:
        require("demo", SAMPLES_FEATURE)
    col = closed_after_command(glimpse.open(where, encoder=encoder))  # the options are checked before the samples are written
    if folder is None:
        folder = where / "samples"
        console.print(f"writing scikit-image's sample photos to [bold]{folder}[/]")
        write_samples(folder)
    console.print(f"indexing [bold]{folder}[/] into [bold]{col.path}[/] with {col.encoder.name}")
    run_index(col, [str(folder)], prune=True)
    if not len(col):
        raise fail(ValueError(f"no image in {shown(str(folder))} could be indexed (glimpse info -c {shown(str(col.path))} "
                              "--errors says why): give a folder of photos"))
    for title, results in demo_searches(col, folder):
        print_results(results, title=title)
    console.print(f"\nnext: [bold]glimpse search \"your words\" -c {col.path}[/]"
                  f"\n      [bold]glimpse serve {col.path}[/]  (the web page, http://127.0.0.1:8000/)")


@app.command(short_help="Serve the search page and the HTTP API.")
def serve(
    collection: Annotated[Optional[str], typer.Argument(
        envvar="GLIMPSE_COLLECTION", help=f"Collection directory (or -c, as other commands take it; default {DEFAULT_COLLECTION}).",
        show_default=False)] = None,
    collection_opt: Annotated[Optional[str], typer.Option("--collection", "-c", help="Collection directory.",
                                                          show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (this machine only by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token_file: Annotated[Optional[Path], typer.Option(help="File holding the write token (else $GLIMPSE_WRITE_TOKEN). Without a token the server is read-only.")] = None,
    root: Annotated[list[Path], typer.Option("--root", metavar="<folder>", help="Folder whose files may be added by path and served as originals (repeatable). Default: the collection's folders.")] = [],
    cors: Annotated[list[str], typer.Option("--cors", metavar="<origin>", help="Origin allowed to call the API from other web pages (repeatable). Default: none.")] = [],
    max_upload_mb: Annotated[int, typer.Option(help="Largest image upload, in MiB.")] = 20,
) -> None:
    """Serve the search page and the HTTP API (listed offline at /static/api.html; OpenAPI at /openapi.json and /docs)."""
    positional = collection is not None and collection != os.environ.get("GLIMPSE_COLLECTION")
    if positional and collection_opt is not None and collection_opt != collection:
        raise fail(ValueError(f"two collections given ({collection} and -c {collection_opt}): give one"))
    collection = collection_opt or collection or DEFAULT_COLLECTION
    from ..collection import open_collection
    from ..server import ServerConfig, read_token
    from ..server import serve as run_server
    from ..server.config import check_address

    try:
        token = read_token(token_file)
    except (OSError, ValueError) as exc:
        raise fail(exc) from None
    config = ServerConfig(write_token=token, roots=root, cors_origins=cors, max_upload_bytes=max_upload_mb << 20)
    check_address(host, port)  # a ValueError here is one sentence and exit 2, before the address is printed
    try:  # opened before the address is printed: a mistyped collection must not look served
        col = closed_after_command(open_collection(os.path.expanduser(collection), create=False))
    except FileNotFoundError as exc:
        raise fail(exc) from None
    console.print(f"glimpse: http://{host}:{port}/  ({'writes allowed with the token' if token else 'read-only'})")
    run_server(col, host=host, port=port, config=config)
