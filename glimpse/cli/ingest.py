"""Commands that fill a collection: index, import-vectors, enrich."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..ingest.names import shown
from .common import BitsOpt, CodesOpt, CollectionOpt, DEFAULT_COLLECTION, DeviceOpt, ModelOpt, OversampleOpt, PrecisionOpt, PretrainedOpt, RerankOpt, ScoringOpt, app, close_now, closed_after_command, console, fail, fit_progress, hint_codes, open_existing, progress_bars, rate_progress, run_index, unshown


@app.command(short_help="Index folders: embed new and changed images, drop gone ones.", epilog=(
    "\b\nExamples:\n"
    "  glimpse index ~/Photos      (into ~/.glimpse/default)\n"
    "  glimpse index ~/Photos -c ~/.glimpse/photos --exclude private --exclude '*.png'\n"
    "  glimpse index               (again: only new or changed files are embedded)"))
def index(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Folders or files. Default: the folders indexed before.")] = None,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    include: Annotated[list[str], typer.Option("--include", "-i", metavar="<glob>", help="Glob to include (repeatable), matched against the path under the folder and the bare name: '*.jpg', '2023/**'.")] = [],
    exclude: Annotated[list[str], typer.Option("--exclude", "-x", metavar="<glob>", help="Glob to exclude (repeatable), matched as --include; a matching folder is not read: 'private', '**/cache/**'.")] = [],
    follow_symlinks: Annotated[bool, typer.Option(help="Follow symbolic links to folders.")] = False,
    prune: Annotated[bool, typer.Option(help="Drop files that are gone from the given folders.")] = True,
    encoder: Annotated[Optional[str], typer.Option(help="Encoder for a new collection: lite0-minilm (the default), lite1-minilm, lite2-minilm, open_clip or hf.")] = None,
    precision: PrecisionOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = None,
    batch_size: Annotated[int, typer.Option(help="Images per model batch.")] = 32,
    workers: Annotated[int, typer.Option(help="Decode threads.")] = 2,
    codes: CodesOpt = None,
    bits: BitsOpt = None,
    oversample: OversampleOpt = None,
    scoring: ScoringOpt = "auto",
    rerank: RerankOpt = True,
    ocr: Annotated[bool, typer.Option("--ocr", help="Then read the words in the images (glimpse enrich --ocr).")] = False,
    shard: Annotated[Optional[str], typer.Option(help="i/n: index shard i of n of the files (several workers on one Milvus collection).")] = None,
) -> None:
    """Index images: new and changed files are embedded, unchanged ones skipped, gone ones dropped."""
    from ..collection import DB_NAME
    from ..settings import check_ingest

    check_ingest(batch_size, workers, include, exclude)  # every option is checked before anything is created or saved
    _check_codes(codes, bits, oversample, scoring, rerank)
    where = Path(collection).expanduser()
    existed, fresh = where.exists(), not (where / DB_NAME).exists()
    col = open_existing(collection, create=True, encoder=encoder, precision=precision, model=model, pretrained=pretrained,
                device=device)
    try:
        if not col.has_files:  # embeddings computed elsewhere: no files to index, but its codes can be chosen here
            if paths or not codes:
                raise fail(ValueError(f"{shown(str(col.path))} holds precomputed vectors and has no model to embed images: "
                                      f"add vectors with glimpse import-vectors FILE -c {shown(str(col.path))}"))
            _use_codes(col, codes, bits, oversample, scoring, rerank)
            return
        try:
            col.use_shard(shard)
        except ValueError as exc:
            raise fail(exc) from None
        if codes:
            _use_codes(col, codes, bits, oversample, scoring, rerank)
        run_index(
            col, paths and [unshown(p) for p in paths], prune, include=include, exclude=exclude, follow_symlinks=follow_symlinks,
            batch_size=batch_size, workers=workers,
        )
    except BaseException:
        if fresh:
            _discard_if_empty(col, remove_folder=not existed)
        raise
    if ocr:
        run_enrich(col)


def _check_codes(codes: str | None, bits: int | None, oversample: int | None, scoring: str, rerank: bool,
                 dim: int | None = None) -> None:
    """Refuse bad code options (for ``dim``-d vectors, when known) before anything is created or saved."""
    from ..codes import default_bits
    from ..settings import CodeSettings

    if codes and codes != "none":
        if bits is None and dim is not None:
            bits = default_bits(codes, dim)
        try:
            CodeSettings(codes, bits, oversample, scoring=scoring, rerank=rerank).validate(dim)
        except ValueError as exc:
            raise fail(exc) from None


def _use_codes(col, codes: str, bits: int | None, oversample: int | None, scoring: str, rerank: bool) -> None:
    """Switch ``col`` to ``codes`` (fitting them, with a progress bar), and say what search now uses."""
    with progress_bars() as bar:
        col.use_codes(codes, bits=bits, oversample=oversample, scoring=scoring, rerank=rerank, progress=fit_progress(bar))
    now = col.settings().codes
    console.print("search: exact float" if now is None else f"search: {now.binarizer} codes, {now.bits} bits, "
                  + (f"fitted on {now.fitted_on:,} vectors" if now.fitted_on else "not fitted yet (too few vectors: exact meanwhile)"))


def _discard_if_empty(col, remove_folder: bool) -> None:
    """Delete a collection this command created when it failed before holding anything."""
    from ..collection import DB_NAME, LOCK_NAME

    stats = col.stats()
    if stats.files or stats.errors or stats.roots:
        return
    close_now(col)
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", LOCK_NAME):
        (col.path / name).unlink(missing_ok=True)
    for kept in col.path.glob("items-*.npz"):  # a snapshot kept (see Metadata.snapshot)
        kept.unlink(missing_ok=True)
    if remove_folder:
        with contextlib.suppress(OSError):  # not empty: something else is there, keep it
            col.path.rmdir()


@app.command("import-vectors", short_help="Add embeddings computed elsewhere (no model).")
def import_vectors(
    file: Annotated[Path, typer.Argument(help="A .npy array (vectors x dims), or a .parquet file with a list-of-floats column.")],
    keys: Annotated[Optional[Path], typer.Option("--keys", help="Text file with one key per vector, one a line, in row order. Default: FILE-NAME/ROW.")] = None,
    column: Annotated[Optional[str], typer.Option("--column", help="The vectors' column of a .parquet file (default: its only list column).")] = None,
    key_column: Annotated[Optional[str], typer.Option("--key-column", help="A .parquet string column holding the keys.")] = None,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    batch_size: Annotated[int, typer.Option(help="Vectors per commit.")] = 16384,
    codes: CodesOpt = None,
    bits: BitsOpt = None,
    oversample: OversampleOpt = None,
    scoring: ScoringOpt = "auto",
    rerank: RerankOpt = True,
) -> None:
    """Add embeddings computed elsewhere to a collection without a model (made with encoder precomputed when new).

    Vectors are L2-normalised on the way in; a key the collection already holds gets the new vector.
    Search the collection by vector (HTTP: "vector" in /api/search) or by item id (--like).
    """
    import glimpse
    from glimpse import CollectionLockedError
    from glimpse.vectorfiles import parquet_keys, read_keys, read_vectors
    from ..collection import DB_NAME

    try:
        if keys is not None and key_column is not None:
            raise ValueError("give the keys once: --keys FILE or --key-column NAME")
        if key_column is not None and file.suffix.lower() != ".parquet":
            raise ValueError("--key-column is for .parquet files: give a .npy file's keys with --keys FILE")
        vectors = read_vectors(file, column)
        _check_codes(codes, bits, oversample, scoring, rerank, vectors.shape[1])
        names = (read_keys(keys) if keys is not None else parquet_keys(file, key_column) if key_column is not None
                 else [f"{file.name}/{row}" for row in range(len(vectors))])
        if len(names) != len(vectors):
            raise ValueError(f"{len(names):,} keys for {len(vectors):,} vectors: give one key per vector")
        where = Path(collection).expanduser()
        existed, fresh = where.exists(), not (where / DB_NAME).exists()
        col = closed_after_command(glimpse.open(collection, encoder="precomputed", dim=vectors.shape[1]))
        try:
            with progress_bars() as bar:
                progress = rate_progress(bar, "importing", "vectors")
                col.add_vectors(vectors, names, batch_size=batch_size, progress=progress)
        except BaseException:  # refused rows or keys (checked before any write) leave no new collection
            if fresh:
                _discard_if_empty(col, remove_folder=not existed)
            raise
        console.print(f"{len(names):,} vectors imported ({vectors.shape[1]} dims); the collection holds {len(col):,}")
        if codes:  # fitted once, on every vector imported
            _use_codes(col, codes, bits, oversample, scoring, rerank)
        hint_codes(col)
    except (CollectionLockedError, ValueError) as exc:  # EncoderMismatchError is a ValueError
        raise fail(exc) from None


def run_enrich(col) -> None:
    """Read the words in the images not read yet, with a progress bar and a one-line summary."""
    with progress_bars() as bar:
        report = col.enrich(ocr=True, progress=rate_progress(bar, "reading words", "img"))
    line = f"words read in {report.read:,} images ({report.with_text:,} with text), {report.already:,} read before"
    if report.failed:
        line += f", {len(report.failed):,} could not be read (retried next time): {report.failed[0][0]}: {report.failed[0][1]}"
    console.print(line)


@app.command(short_help="Read the words in the indexed images (--ocr).")
def enrich(
    ocr: Annotated[bool, typer.Option("--ocr", help="Read the words in the images (OCR), for text search and text: queries.")] = False,
    collection: CollectionOpt = DEFAULT_COLLECTION,
) -> None:
    """Slower readings of the indexed images, run after indexing; resumes where a killed run stopped."""
    if not ocr:
        raise fail(ValueError("nothing to enrich: pass --ocr"))
    run_enrich(open_existing(collection))
