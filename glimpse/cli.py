"""The ``glimpse`` command line."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
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
    oversample: Annotated[int, typer.Option(help="Code candidates per result to re-rank (with --codes).")] = 30,
    scoring: Annotated[str, typer.Option(help="Code scan: auto (asymmetric for text, cascade for images), hamming, cascade or asymmetric.")] = "auto",
    rerank: Annotated[bool, typer.Option(help="Re-rank code candidates with the float vectors (with --codes).")] = True,
    ocr: Annotated[bool, typer.Option("--ocr", help="Then read the words in the images (glimpse enrich --ocr).")] = False,
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
    if ocr:
        run_enrich(col)


def run_enrich(col) -> None:
    """Read the words in the images not read yet, with a progress bar and a one-line summary."""
    from glimpse import CollectionLockedError

    with Progress(
        TextColumn("[bold]reading words"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True,
    ) as bar:
        task = bar.add_task("ocr", total=None)
        try:
            report = col.enrich(ocr=True, progress=lambda done, total: bar.update(task, completed=done, total=total))
        except (CollectionLockedError, ValueError) as exc:
            raise _fail(exc) from None
    line = f"words read in {report.read:,} images ({report.with_text:,} with text), {report.already:,} read before"
    if report.failed:
        line += f", {len(report.failed):,} could not be read (retried next time): {report.failed[0][0]}: {report.failed[0][1]}"
    console.print(line)


@app.command()
def enrich(
    ocr: Annotated[bool, typer.Option("--ocr", help="Read the words in the images (OCR), for text search and text: queries.")] = False,
    collection: CollectionOpt = DEFAULT_COLLECTION,
) -> None:
    """Slower readings of the indexed images, run after indexing; resumes where a killed run stopped."""
    if not ocr:
        raise _fail(ValueError("nothing to enrich: pass --ocr"))
    run_enrich(_open(collection))


@app.command()
def search(
    query: Annotated[Optional[list[str]], typer.Argument(
        help="Words, or query-language terms: '2:golden retriever' + ./pool.jpg - night + #12.")] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Find images like this one (with words: a composed query).")] = None,
    like: Annotated[Optional[int], typer.Option("--like", help="More like this result id (itself left out).")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Text weight of a composed --image + words query, 0-1 (default 0.6).")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Drop results scoring below this.")] = None,
    path_glob: Annotated[Optional[str], typer.Option("--path-glob", help="Only paths matching this glob ('2023/*.jpg' matches at any depth).")] = None,
    path_prefix: Annotated[Optional[str], typer.Option("--path-prefix", help="Only files under this folder.")] = None,
    after: Annotated[Optional[str], typer.Option(help="Only files modified on or after this date (YYYY[-MM[-DD]]).")] = None,
    before: Annotated[Optional[str], typer.Option(help="Only files modified before this date.")] = None,
    orientation: Annotated[Optional[str], typer.Option(help="landscape, portrait or square.")] = None,
    has_text: Annotated[Optional[bool], typer.Option("--has-text/--no-text", help="Only images with (or without) words read in them (glimpse enrich --ocr).", show_default=False)] = None,
    fusion: Annotated[str, typer.Option(help="How words read in the images rank a text query: calibrated, rrf or none.")] = "calibrated",
    min_width: Annotated[Optional[int], typer.Option("--min-width", help="Minimum width in pixels.")] = None,
    max_width: Annotated[Optional[int], typer.Option("--max-width", help="Maximum width in pixels.")] = None,
    min_height: Annotated[Optional[int], typer.Option("--min-height", help="Minimum height in pixels.")] = None,
    max_height: Annotated[Optional[int], typer.Option("--max-height", help="Maximum height in pixels.")] = None,
    min_size: Annotated[Optional[str], typer.Option("--min-size", help="Minimum file size (500k, 2MB).")] = None,
    max_size: Annotated[Optional[str], typer.Option("--max-size", help="Maximum file size.")] = None,
    refine: Annotated[Optional[str], typer.Option(help="Re-rank the top candidates: aqe or superglobal (default: none).")] = None,
    adapted: Annotated[bool, typer.Option("--adapt/--no-adapt", help="Use the caption adaptation (glimpse adapt) if there is one.")] = True,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
    exact: Annotated[bool, typer.Option(help="Score every float vector (the reference), not the codes.")] = False,
    oversample: Annotated[Optional[int], typer.Option(help="Code candidates per result to re-rank.")] = None,
    rerank: Annotated[bool, typer.Option(help="Re-rank code candidates with the float vectors.")] = True,
) -> None:
    """Search by words, by image (--image), both (composed), by result id (--like) or by weighted terms."""
    from .query.filters import Filter
    from .query.language import parse_query

    words = shlex.join(query) if query and len(query) > 1 else (query[0] if query else None)
    args: dict = {}
    if words is not None and image is None:
        try:
            terms = parse_query(words) if words.strip() else None
        except ValueError as exc:
            raise _fail(exc) from None
        plain = terms is not None and len(terms) == 1 and terms[0].kind == "text" and terms[0].weight == 1.0
        args = {"text": terms[0].value} if plain else {"terms": words}
    elif words is not None:
        args = {"text": words, "image": image}
    elif image is not None:
        args = {"image": image}
    if like is not None:
        args["like"] = like
    if not args:
        raise _fail(ValueError("give words, --image PATH, both, or --like ID"))
    col = _open(collection)
    try:
        where = Filter(path_glob=path_glob, path_prefix=path_prefix, after=after, before=before,
                       orientation=orientation, min_width=min_width, max_width=max_width,
                       min_height=min_height, max_height=max_height, min_bytes=min_size, max_bytes=max_size,
                       has_text=has_text)
        results = col.search(**args, alpha=alpha, filters=where, min_score=min_score, refine=refine,
                             adapted=adapted, k=k, exact=exact, oversample=oversample, rerank=rerank, fusion=fusion)
    except ValueError as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    title = escape(" + ".join(x for x in (words and repr(words), image and f"like {image}", like is not None and f"like #{like}") if x))
    if not where.is_empty():
        title += escape(f"  [{', '.join(f'{k}={v}' for k, v in where.to_dict().items())}]")
    empty = "no good matches" + (f": nothing scored {min_score} or more (try a lower --min-score)"
                                 if min_score is not None else ": nothing passed the filters") if len(col) else None
    print_results(results, title=title, empty=empty)


def print_results(results, title: str, empty: str | None = None) -> None:
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id", justify="right")
    table.add_column("path", overflow="fold")
    for rank, r in enumerate(results, 1):
        table.add_row(str(rank), f"{r.score:.3f}", f"#{r.id}", r.path)
    if not results:
        table.add_row("-", "-", "-", empty or "no images in this collection yet")
    console.print(table)


@app.command()
def adapt(
    captions: Annotated[Optional[Path], typer.Option("--captions", help="TSV with 'image<TAB>caption' rows (paths relative to the file). Default: .txt or .xmp (dc:description) files next to the images.")] = None,
    kind: Annotated[str, typer.Option(help="contrastive (default, measured best) or ridge.")] = "contrastive",
    remove_map: Annotated[bool, typer.Option("--remove", help="Forget the adaptation: text search goes back to the plain encoder.")] = False,
    collection: CollectionOpt = DEFAULT_COLLECTION,
) -> None:
    """Teach text search the words of your own captions (learnt from image-caption pairs)."""
    from glimpse import CollectionLockedError

    col = _open(collection)
    if remove_map:
        console.print("adaptation removed" if col.remove_adapt() else "this collection has no adaptation")
        return
    with Progress(TextColumn("[bold]adapting"), BarColumn(), MofNCompleteColumn(), console=err, transient=True) as bar:
        task = bar.add_task("adapt", total=None)
        try:
            report = col.adapt(captions, kind=kind, progress=lambda done, total: bar.update(task, completed=done, total=total))
        except (CollectionLockedError, ValueError) as exc:
            raise _fail(exc) from None
    line = f"adaptation v{report.version} ({report.kind}) learnt from {report.pairs:,} captions in {report.seconds:.0f}s"
    if report.missing:
        line += f"; {report.missing:,} captions name images not in this collection"
    console.print(line)
    if report.before is not None:
        console.print(f"held-out check on {report.holdout_images} captioned images: text->image R@10 "
                      f"{report.before:.3f} before, {report.after:.3f} after")
        if report.after <= report.before:
            err.print("[yellow]warning:[/] the adaptation did not help on held-out captions; "
                      "`glimpse adapt --remove` undoes it")


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
        f"{codes['binarizer']} codes, {codes['bits']} bits, {codes.get('scoring', 'auto')} scoring, "
        + (f"re-rank x{codes['oversample']}" if codes.get("rerank", True) else "no re-rank")
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
