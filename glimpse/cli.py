"""The ``glimpse`` command line."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(
    help="glimpse: index a folder of images, search it by text or by image. Offline.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

DEFAULT_COLLECTION = "~/.glimpse/default"

CollectionOpt = Annotated[
    str,
    typer.Option(
        "--collection", "-c", envvar="GLIMPSE_COLLECTION",
        help="Collection directory.", show_default=True,
    ),
]


def _open(path: str, create: bool = False, encoder: str | None = None, precision: str | None = None):
    import glimpse

    options = {"precision": precision} if precision else {}
    try:
        return glimpse.open(path, encoder=encoder, create=create, **options)
    except (FileNotFoundError, glimpse.EncoderMismatchError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error:[/] {exc}")
    return typer.Exit(2)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def run_index(col, paths: list[str] | None, prune: bool, **options) -> None:
    """Index with a progress bar and the one-line summary people read."""
    from glimpse import CollectionLockedError

    with Progress(
        TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), console=err, transient=True,
    ) as bar:
        task = bar.add_task("index", total=None, rate="")

        def progress(done: int, total: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0
            bar.update(task, completed=done, total=total, rate=f"{done / elapsed:,.0f} img/s" if elapsed else "")

        try:
            if prune:
                report = col.index(paths or None, progress=progress, **options)
            else:
                report = col.add(paths, progress=progress, **options)
        except (CollectionLockedError, FileNotFoundError, ValueError) as exc:
            raise _fail(exc) from None
    parts = [f"{report.indexed:,} indexed", f"{report.unchanged:,} unchanged"]
    if report.removed:
        parts.append(f"{report.removed:,} removed")
    line = ", ".join(parts)
    if report.skipped:
        line += f", {report.skipped:,} skipped (see glimpse info --errors)"
    console.print(line)


@app.command()
def index(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Folders or files. Default: the folders indexed before.")] = None,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    include: Annotated[list[str], typer.Option("--include", "-i", help="Glob to include (repeatable).")] = [],
    exclude: Annotated[list[str], typer.Option("--exclude", "-x", help="Glob to exclude (repeatable).")] = [],
    follow_symlinks: Annotated[bool, typer.Option(help="Follow symbolic links to folders.")] = False,
    prune: Annotated[bool, typer.Option(help="Drop files that are gone from the given folders.")] = True,
    encoder: Annotated[Optional[str], typer.Option(help="Encoder for a new collection.")] = None,
    precision: Annotated[Optional[str], typer.Option(help="bf16 (fast) or fp32.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per model batch.")] = 32,
    workers: Annotated[int, typer.Option(help="Decode threads.")] = 2,
    codes: Annotated[Optional[str], typer.Option(help="Search through binary codes: learned, itq or sign.")] = None,
    bits: Annotated[int, typer.Option(help="Bits per image code (with --codes).")] = 256,
    oversample: Annotated[int, typer.Option(help="Code candidates per result to re-rank (with --codes).")] = 10,
    scoring: Annotated[str, typer.Option(help="Code scan: auto (asymmetric for text queries), hamming or asymmetric.")] = "auto",
    rerank: Annotated[bool, typer.Option(help="Re-rank code candidates with the float vectors (with --codes).")] = True,
) -> None:
    """Index images: new and changed files are embedded, unchanged ones skipped, gone ones dropped."""
    col = _open(collection, create=True, encoder=encoder, precision=precision)
    if codes:
        try:
            col.use_codes(codes, bits=bits, oversample=oversample, scoring=scoring, rerank=rerank)
        except ValueError as exc:
            raise _fail(exc) from None
    run_index(
        col, paths, prune, include=include, exclude=exclude, follow_symlinks=follow_symlinks,
        batch_size=batch_size, workers=workers,
    )


@app.command()
def search(
    query: Annotated[Optional[str], typer.Argument(help="What to look for, in words.")] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Find images like this one.")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
    exact: Annotated[bool, typer.Option(help="Score every float vector (the reference), not the codes.")] = False,
    oversample: Annotated[Optional[int], typer.Option(help="Code candidates per result to re-rank.")] = None,
    rerank: Annotated[bool, typer.Option(help="Re-rank code candidates with the float vectors.")] = True,
) -> None:
    """Search by text, or by image with --image."""
    if (query is None) == (image is None):
        raise _fail(ValueError("give a text query or --image PATH (one of them)"))
    col = _open(collection)
    try:
        results = col.search(text=query, image=image, k=k, exact=exact, oversample=oversample, rerank=rerank)
    except ValueError as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    print_results(results, title=f"{query!r}" if query else f"like {image}")


def print_results(results, title: str) -> None:
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("path", overflow="fold")
    for rank, r in enumerate(results, 1):
        table.add_row(str(rank), f"{r.score:.3f}", r.path)
    if not results:
        table.add_row("-", "-", "no images in this collection yet")
    console.print(table)


@app.command()
def info(
    collection: CollectionOpt = DEFAULT_COLLECTION,
    errors: Annotated[bool, typer.Option("--errors", help="List the files that could not be indexed.")] = False,
    limit: Annotated[int, typer.Option(help="How many errors to list.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """Counts, model, dimensions, disk size and the last errors."""
    col = _open(collection)
    stats = col.stats()
    failures = col.errors(limit if errors else 5)
    if as_json:
        print(json.dumps({"stats": asdict(stats), "errors": [asdict(e) for e in failures]}, indent=2))
        return
    table = Table(show_header=False, show_edge=False)
    table.add_row("collection", stats.path)
    table.add_row("images", f"{stats.images:,} ({stats.files:,} files)")
    table.add_row("encoder", f"{stats.encoder} v{stats.encoder_version}, {stats.dim} dims")
    table.add_row("disk", f"{_human_bytes(stats.disk_bytes)} (vectors {_human_bytes(stats.vector_bytes)})")
    codes = stats.codes
    table.add_row("search", "exact float (FAISS inner product)" if not codes else (
        f"{codes['binarizer']} codes, {codes['bits']} bits, re-rank x{codes['oversample']}"
        + ("" if codes["fitted_on"] else " (not fitted yet: too few images, exact meanwhile)")))
    table.add_row("folders", "\n".join(stats.roots) or "-")
    table.add_row("errors", f"{stats.errors:,}")
    console.print(table)
    if failures:
        shown = Table(title="files that could not be indexed" + ("" if errors else " (latest)"), title_justify="left")
        shown.add_column("path", overflow="fold")
        shown.add_column("reason", overflow="fold")
        for e in failures:
            shown.add_row(e.path, e.reason)
        console.print(shown)


@app.command()
def remove(
    paths: Annotated[list[str], typer.Argument(help="Files or folders to forget.")],
    collection: CollectionOpt = DEFAULT_COLLECTION,
) -> None:
    """Forget files (the image files themselves are not touched)."""
    from glimpse import CollectionLockedError

    col = _open(collection)
    try:
        n = col.remove(paths)
    except CollectionLockedError as exc:
        raise _fail(exc) from None
    console.print(f"{n:,} files removed")


@app.command()
def demo(
    folder: Annotated[Optional[Path], typer.Argument(help="Your own folder of images (default: scikit-image's sample photos).")] = None,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Where to build the demo collection.")] = "~/.glimpse/demo",
    encoder: Annotated[Optional[str], typer.Option(help="Encoder to use.")] = None,
) -> None:
    """Index sample photos (or FOLDER) and run a few text and image searches."""
    from .demo import run_demo

    run_demo(Path(os.path.expanduser(collection)), folder, encoder)


@app.command()
def serve(
    collection: Annotated[str, typer.Argument(envvar="GLIMPSE_COLLECTION", help="Collection directory.")] = DEFAULT_COLLECTION,
    host: Annotated[str, typer.Option(help="Address to listen on (this machine only by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token_file: Annotated[Optional[Path], typer.Option(help="File holding the write token (else $GLIMPSE_WRITE_TOKEN). Without a token the server is read-only.")] = None,
    root: Annotated[list[Path], typer.Option("--root", help="Folder whose files may be added by path (repeatable). Default: the collection's folders.")] = [],
    cors: Annotated[list[str], typer.Option("--cors", help="Origin allowed to call the API from other web pages (repeatable). Default: none.")] = [],
    max_upload_mb: Annotated[int, typer.Option(help="Largest image upload, in MiB.")] = 20,
) -> None:
    """Serve the search page and the HTTP API (OpenAPI docs at /docs)."""
    from .server import ServerConfig, read_token
    from .server import serve as run_server

    try:
        token = read_token(token_file)
    except (OSError, ValueError) as exc:
        raise _fail(exc) from None
    config = ServerConfig(write_token=token, roots=root, cors_origins=cors, max_upload_bytes=max_upload_mb << 20)
    console.print(f"glimpse: http://{host}:{port}/  ({'writes allowed with the token' if token else 'read-only'})")
    try:
        run_server(os.path.expanduser(collection), host=host, port=port, config=config)
    except FileNotFoundError as exc:
        raise _fail(exc) from None


from .eval.cli import app as eval_app  # noqa: E402 - the sub-app's heavy imports are lazy

app.add_typer(eval_app, name="eval", help="Score search configurations on a retrieval benchmark; writes a report.")


if __name__ == "__main__":
    app()
