"""The ``glimpse`` command line."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .ingest.names import shown
from .ingest.scan import absolute
from .query.request import DEFAULT_FUSION, DEFAULT_K

console = Console()
err = Console(stderr=True)


class _Commands(TyperGroup):
    """Errors meant for people end any command with their one sentence and exit 2, never a
    traceback: another writer's lock, ValueError, which the engine raises for bad options, and
    an optional feature used without its extra."""

    def invoke(self, ctx):
        from .extras import MissingExtraError
        from .storage.lock import CollectionLockedError

        try:
            return super().invoke(ctx)
        except (CollectionLockedError, MissingExtraError, ValueError) as exc:
            raise _fail(exc) from None


app = typer.Typer(
    cls=_Commands,
    help="glimpse: index a folder of images, search it by text or by image. Offline.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain click help: wraps to the terminal, shows --flag/--no-flag pairs
)

DEFAULT_COLLECTION = "~/.glimpse/default"


def _print_version(value: bool) -> None:
    if value:
        from glimpse import __version__

        print(f"glimpse {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Options that come before any command (--version)."""


CollectionOpt = Annotated[
    str,
    typer.Option(
        "--collection", "-c", envvar="GLIMPSE_COLLECTION",
        help="Collection directory.", show_default=True,
    ),
]


def _open(path: str, create: bool = False, encoder: str | None = None, **options):
    import glimpse

    options = {k: v for k, v in options.items() if v is not None}
    try:
        return glimpse.open(path, encoder=encoder, create=create, **options)
    except (FileNotFoundError, glimpse.EncoderMismatchError, ValueError) as exc:
        raise _fail(exc) from None


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(str(exc))}")  # messages quote brackets: glimpse-retrieval[server]
    return typer.Exit(2)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def progress_bars():
    """Bars on stderr for long work: ``bar.add_task(what, total=None, rate="")``."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), console=err, transient=True,
    )


def fit_progress(bar: Progress):
    """A callback for a binarizer fit: its own bar, shown from its first step."""
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task("fitting codes", total=total, rate="")
        bar.update(task, completed=done)

    return progress


def rate_progress(bar: Progress, label: str, unit: str):
    """A callback for counted work (``progress(done, total)``): its own bar, with the rate."""
    task = bar.add_task(label, total=None, rate="")

    def progress(done: int, total: int) -> None:
        elapsed = next(t for t in bar.tasks if t.id == task).elapsed or 0
        bar.update(task, completed=done, total=total, rate=f"{done / elapsed:,.0f} {unit}/s" if elapsed else "")

    return progress


def run_index(col, paths: list[str] | None, prune: bool, **options) -> None:
    """Index with a progress bar and the one-line summary people read."""
    with progress_bars() as bar:
        progress = rate_progress(bar, "indexing", "img")
        try:
            report = col.index(paths or None, prune=prune, progress=progress, fit_progress=fit_progress(bar),
                               **options)
        except FileNotFoundError as exc:
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
    model: Annotated[Optional[str], typer.Option(help="open_clip: architecture (ViT-B-32), hf-hub:org/name or a model folder; hf: hub id or folder.")] = None,
    pretrained: Annotated[Optional[str], typer.Option(help="open_clip weights: a tag (laion2b_s34b_b79k), hf-hub:org/name, a checkpoint file or a folder.")] = None,
    device: Annotated[Optional[str], typer.Option(help="open_clip/hf: cpu, cuda or cuda:N (default: CUDA when present).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per model batch.")] = 32,
    workers: Annotated[int, typer.Option(help="Decode threads.")] = 2,
    codes: Annotated[Optional[str], typer.Option(help="Search through codes: ivf-rabitq (coarse lists + residual codes), learned, itq or sign; none switches them off (exact float search).")] = None,
    bits: Annotated[Optional[int], typer.Option(help="Bits per image code (with --codes; default 224 for ivf-rabitq, else 256).")] = None,
    oversample: Annotated[Optional[int], typer.Option(help="Code candidates per result to re-rank, at most (with --codes; default 300 for ivf-rabitq, else 30).")] = None,
    scoring: Annotated[str, typer.Option(help="Code scan: auto (asymmetric for text, cascade for images), hamming, cascade or asymmetric.")] = "auto",
    rerank: Annotated[bool, typer.Option(help="Re-rank code candidates with the float vectors (with --codes).")] = True,
    ocr: Annotated[bool, typer.Option("--ocr", help="Then read the words in the images (glimpse enrich --ocr).")] = False,
) -> None:
    """Index images: new and changed files are embedded, unchanged ones skipped, gone ones dropped."""
    from .collection import DB_NAME
    from .settings import CodeSettings, check_ingest

    check_ingest(batch_size, workers)  # every option is checked before anything is created or saved
    if codes and codes != "none":
        CodeSettings(codes, bits, oversample, scoring=scoring, rerank=rerank).validate()
    where = Path(collection).expanduser()
    existed, fresh = where.exists(), not (where / DB_NAME).exists()
    col = _open(collection, create=True, encoder=encoder, precision=precision, model=model, pretrained=pretrained,
                device=device)
    try:
        if codes:
            with progress_bars() as bar:
                col.use_codes(codes, bits=bits, oversample=oversample, scoring=scoring, rerank=rerank,
                              progress=fit_progress(bar))
        run_index(
            col, paths, prune, include=include, exclude=exclude, follow_symlinks=follow_symlinks,
            batch_size=batch_size, workers=workers,
        )
    except BaseException:
        if fresh:
            _discard_if_empty(col, remove_folder=not existed)
        raise
    if ocr:
        run_enrich(col)


def _discard_if_empty(col, remove_folder: bool) -> None:
    """Delete a collection this command created when it failed before holding anything."""
    from .collection import DB_NAME, LOCK_NAME

    stats = col.stats()
    if stats.files or stats.errors or stats.roots:
        return
    col.close()
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", LOCK_NAME):
        (col.path / name).unlink(missing_ok=True)
    if remove_folder:
        with contextlib.suppress(OSError):  # not empty: something else is there, keep it
            col.path.rmdir()


@app.command("import-vectors")
def import_vectors(
    file: Annotated[Path, typer.Argument(help="A .npy array (vectors x dims), or a .parquet file with a list-of-floats column.")],
    keys: Annotated[Optional[Path], typer.Option("--keys", help="Text file with one key per vector, one a line, in row order. Default: FILE-NAME/ROW.")] = None,
    column: Annotated[Optional[str], typer.Option("--column", help="The vectors' column of a .parquet file (default: its only list column).")] = None,
    key_column: Annotated[Optional[str], typer.Option("--key-column", help="A .parquet string column holding the keys.")] = None,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    batch_size: Annotated[int, typer.Option(help="Vectors per commit.")] = 16384,
) -> None:
    """Add embeddings computed elsewhere to a collection without a model (made with encoder precomputed when new).

    Vectors are L2-normalised on the way in; a key the collection already holds gets the new vector.
    Search the collection by vector (HTTP: "vector" in /api/search) or by item id (--like).
    """
    import glimpse
    from glimpse import CollectionLockedError
    from glimpse.vectorfiles import parquet_keys, read_keys, read_vectors

    try:
        if keys is not None and key_column is not None:
            raise ValueError("give the keys once: --keys FILE or --key-column NAME")
        if key_column is not None and file.suffix.lower() != ".parquet":
            raise ValueError("--key-column is for .parquet files: give a .npy file's keys with --keys FILE")
        vectors = read_vectors(file, column)
        names = (read_keys(keys) if keys is not None else parquet_keys(file, key_column) if key_column is not None
                 else [f"{file.name}/{row}" for row in range(len(vectors))])
        if len(names) != len(vectors):
            raise ValueError(f"{len(names):,} keys for {len(vectors):,} vectors: give one key per vector")
        col = glimpse.open(collection, encoder="precomputed", dim=vectors.shape[1])
        with progress_bars() as bar:
            progress = rate_progress(bar, "importing", "vectors")
            col.add_vectors(vectors, names, batch_size=batch_size, progress=progress)
    except (CollectionLockedError, ValueError) as exc:  # EncoderMismatchError is a ValueError
        raise _fail(exc) from None
    console.print(f"{len(names):,} vectors imported ({vectors.shape[1]} dims); the collection holds {len(col):,}")


def run_enrich(col) -> None:
    """Read the words in the images not read yet, with a progress bar and a one-line summary."""
    with progress_bars() as bar:
        report = col.enrich(ocr=True, progress=rate_progress(bar, "reading words", "img"))
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
        help="Words, or query-language terms: '2:golden retriever' + ./pool.jpg - night + #12. "
             "A query that starts with '-' goes after --: glimpse search -- '-0.5:night'.")] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Find images like this one (with words: a composed query).")] = None,
    like: Annotated[Optional[int], typer.Option("--like", help="More like this result id (itself left out).")] = None,
    vector: Annotated[Optional[Path], typer.Option("--vector", help="A .npy file holding one query vector (the collection's dims).")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Text weight of a composed --image + words query, 0-1 (default 0.6).")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = DEFAULT_K,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Drop results scoring below this (cosine; typical ranges depend on the encoder and the query kind: see the README).")] = None,
    path_glob: Annotated[Optional[str], typer.Option("--path-glob", help="Only paths matching this glob ('2023/*.jpg' matches at any depth).")] = None,
    path_prefix: Annotated[Optional[str], typer.Option("--path-prefix", help="Only files under this folder.")] = None,
    after: Annotated[Optional[str], typer.Option(help="Only images taken on or after this date (YYYY[-MM[-DD]]): the EXIF capture date, else the file's modification date.")] = None,
    before: Annotated[Optional[str], typer.Option(help="Only images taken before this date (EXIF date first, as --after).")] = None,
    orientation: Annotated[Optional[str], typer.Option(help="landscape, portrait or square.")] = None,
    has_text: Annotated[Optional[bool], typer.Option("--has-text/--no-text", help="Only images with (or without) words read in them (glimpse enrich --ocr).", show_default=False)] = None,
    fusion: Annotated[str, typer.Option(help="How words read in the images rank a text query: calibrated, rrf or none.")] = DEFAULT_FUSION,
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
    rerank: Annotated[Optional[bool], typer.Option("--rerank/--no-rerank", help="Re-rank code candidates with the float vectors (default: the collection's setting).")] = None,
    scoring: Annotated[Optional[str], typer.Option(help="Code scan for this query: auto, hamming, cascade or asymmetric (default: the collection's setting).")] = None,
) -> None:
    """Search by words, by image (--image), both (composed), by result id (--like) or by weighted terms."""
    from .query.filters import Filter
    from .query.language import parse_query
    from .query.request import SearchRequest

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
    if vector is not None:
        args["vector"] = _query_vector(vector)
    if not args:
        raise _fail(ValueError("give words, --image PATH, both, --like ID or --vector FILE"))
    col = _open(collection)
    try:
        where = Filter(path_glob=path_glob, path_prefix=path_prefix, after=after, before=before,
                       orientation=orientation, min_width=min_width, max_width=max_width,
                       min_height=min_height, max_height=max_height, min_bytes=min_size, max_bytes=max_size,
                       has_text=has_text)
        results = col.search(SearchRequest(**args, alpha=alpha, filters=where, min_score=min_score, refine=refine,
                                           adapted=adapted, k=k, exact=exact, oversample=oversample, rerank=rerank,
                                           scoring=scoring, fusion=fusion))
    except ValueError as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps([{**r.to_dict(), "path": shown(r.path)} for r in results], indent=2))
        return
    title = escape(shown(" + ".join(x for x in (words and repr(words), image and f"like {image}", like is not None and f"like #{like}",
                                                 vector and f"vector {vector}") if x)))
    if not where.is_empty():
        title += escape(shown(f"  [{', '.join(f'{k}={v}' for k, v in where.to_dict().items())}]"))
    empty = "no good matches" + (f": nothing scored {min_score} or more (try a lower --min-score)"
                                 if min_score is not None else ": nothing passed the filters") if len(col) else None
    print_results(results, title=title, empty=empty)


def _query_vector(path: Path):
    """The one vector of a .npy file (shape (dims,) or (1, dims))."""
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _fail(ValueError(f"cannot read a vector from {shown(str(path))}: {exc}")) from None
    if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[0] != 1):
        raise _fail(ValueError(f"{shown(str(path))} holds an array of shape {array.shape}: give one vector"))
    return array.reshape(-1)


def print_results(results, title: str, empty: str | None = None) -> None:
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id", justify="right")
    table.add_column("path", overflow="fold")
    for rank, r in enumerate(results, 1):
        table.add_row(str(rank), f"{r.score:.3f}", f"#{r.id}", escape(shown(r.path)))
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
    col = _open(collection)
    if remove_map:
        console.print("adaptation removed" if col.remove_adapt() else "this collection has no adaptation")
        return
    with progress_bars() as bar:
        task = bar.add_task("adapting", total=None, rate="")
        report = col.adapt(captions, kind=kind, progress=lambda done, total: bar.update(task, completed=done, total=total))
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
    folders = col.folders()
    if as_json:
        # Paths as shown text: names that are not UTF-8 would make the JSON invalid.
        print(json.dumps({
            "stats": {**asdict(stats), "roots": [shown(r) for r in stats.roots],
                      "excluded": [shown(e) for e in stats.excluded]},
            "folders": {shown(root): options.to_json() for root, options in folders.items()},
            "errors": [{**asdict(e), "path": shown(e.path)} for e in failures],
        }, indent=2))
        return
    table = Table(show_header=False, show_edge=False)
    table.add_row("collection", stats.path)
    table.add_row("images", f"{stats.images:,} ({stats.files:,} files)")
    table.add_row("encoder", f"{stats.encoder} v{stats.encoder_version}, {stats.dim} dims"
                  + ("" if col.has_files else " (no model: search by vector or --like)"))
    table.add_row("disk", f"{_human_bytes(stats.disk_bytes)} (vectors {_human_bytes(stats.vector_bytes)})")
    codes = stats.codes
    table.add_row("search", "exact float (FAISS inner product)" if not codes else (
        f"{codes['binarizer']} codes, {codes['bits']} bits, {codes.get('scoring', 'auto')} scoring, "
        + (f"re-rank x{codes['oversample']}" if codes.get("rerank", True) else "no re-rank")
        + ("" if codes["fitted_on"] else " (not fitted yet: too few images, exact meanwhile)")))
    table.add_row("folders", "\n".join(escape(shown(root)) + _options_note(options) for root, options in folders.items()) or "-")
    if stats.excluded:
        table.add_row("left out", "\n".join(escape(shown(e)) for e in stats.excluded)
                      + "\n(removed; `glimpse index PATH` brings one back)")
    table.add_row("errors", f"{stats.errors:,}")
    console.print(table)
    if failures:
        listed = Table(title="files that could not be indexed" + ("" if errors else " (latest)"), title_justify="left")
        listed.add_column("path", overflow="fold")
        listed.add_column("reason", overflow="fold")
        for e in failures:
            listed.add_row(escape(shown(e.path)), escape(e.reason))
        console.print(listed)


@app.command()
def remove(
    paths: Annotated[list[str], typer.Argument(help="Files or folders to forget.")],
    collection: CollectionOpt = DEFAULT_COLLECTION,
) -> None:
    """Forget files (the image files themselves are not touched)."""
    from glimpse import CollectionLockedError

    col = _open(collection)
    paths = [_unshown(p) for p in paths]
    try:
        n = col.remove(paths)
    except CollectionLockedError as exc:
        raise _fail(exc) from None
    console.print(f"{n:,} file{'' if n == 1 else 's'} removed")
    kept_out = [e for e in col.stats().excluded if e in {str(absolute(p)) for p in paths}]
    if kept_out:
        console.print(escape(f"left out of later `glimpse index` runs: {', '.join(map(shown, kept_out))} "
                             "(`glimpse index PATH` brings it back)"))


def _unshown(path: str) -> str:
    """``path`` as typed, or, when only its ``\\xNN`` escapes name a file (a name copied from
    `glimpse info`, see ``shown``), with those escapes turned back into bytes."""
    if os.path.lexists(path) or "\\x" not in path:
        return path
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m[1], 16)]), path.encode("utf-8", "surrogateescape"))
    return os.fsdecode(raw) if os.path.lexists(raw) else path


def _options_note(options) -> str:
    """The remembered scan options of a folder, as `info` shows them."""
    parts = [f"--include {p}" for p in options.include] + [f"--exclude {p}" for p in options.exclude]
    parts += ["--follow-symlinks"] if options.follow_symlinks else []
    return escape(f"  ({' '.join(parts)})") if parts else ""


@app.command()
def compact(collection: CollectionOpt = DEFAULT_COLLECTION) -> None:
    """Give back the disk space of removed images (writes also do it once they hold half the vector file)."""
    col = _open(collection)
    before = col.stats().vector_bytes
    rows = col.compact()
    console.print(f"{rows:,} unused vector rows dropped: vectors {_human_bytes(before)} -> "
                  f"{_human_bytes(col.stats().vector_bytes)}")


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
    collection: Annotated[Optional[str], typer.Argument(
        envvar="GLIMPSE_COLLECTION", help=f"Collection directory (or -c, as other commands take it; default {DEFAULT_COLLECTION}).",
        show_default=False)] = None,
    collection_opt: Annotated[Optional[str], typer.Option("--collection", "-c", help="Collection directory.",
                                                          show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (this machine only by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token_file: Annotated[Optional[Path], typer.Option(help="File holding the write token (else $GLIMPSE_WRITE_TOKEN). Without a token the server is read-only.")] = None,
    root: Annotated[list[Path], typer.Option("--root", help="Folder whose files may be added by path (repeatable). Default: the collection's folders.")] = [],
    cors: Annotated[list[str], typer.Option("--cors", help="Origin allowed to call the API from other web pages (repeatable). Default: none.")] = [],
    max_upload_mb: Annotated[int, typer.Option(help="Largest image upload, in MiB.")] = 20,
) -> None:
    """Serve the search page and the HTTP API (OpenAPI docs at /docs)."""
    positional = collection is not None and collection != os.environ.get("GLIMPSE_COLLECTION")
    if positional and collection_opt is not None and collection_opt != collection:
        raise _fail(ValueError(f"two collections given ({collection} and -c {collection_opt}): give one"))
    collection = collection_opt or collection or DEFAULT_COLLECTION
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
