"""Commands that look after a collection: adapt, info, remove, compact."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..ingest.names import shown
from ..ingest.scan import absolute
from .upgrade import upgrade_note
from .common import CollectionOpt, DEFAULT_COLLECTION, app, console, err, fail, human_bytes, open_existing, progress_bars, unshown


@app.command(short_help="Teach text search the words of your own captions.")
def adapt(
    captions: Annotated[Optional[Path], typer.Option("--captions", help="TSV with 'image<TAB>caption' rows (paths relative to the file). Default: .txt or .xmp (dc:description) files next to the images.")] = None,
    kind: Annotated[str, typer.Option(help="contrastive (measured best) or ridge.")] = "contrastive",
    remove_map: Annotated[bool, typer.Option("--remove", help="Forget the adaptation: text search goes back to the plain encoder.")] = False,
    collection: CollectionOpt = DEFAULT_COLLECTION,
) -> None:
    """Teach text search the words of your own captions (learnt from image-caption pairs)."""
    if remove_map and (captions is not None or kind != "contrastive"):
        raise fail(ValueError("--remove forgets the adaptation and --captions/--kind learn one: give --captions or --remove, not both"))
    col = open_existing(collection)
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
    col = open_existing(collection)
    stats = col.stats()
    failures = col.errors(limit)[: None if errors else 5]  # the limit is checked even where only 5 are shown
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
    table.add_row("disk", f"{human_bytes(stats.disk_bytes)} (vectors {human_bytes(stats.vector_bytes)})")
    if stats.upgrade:
        table.add_row("upgrade", upgrade_note(stats.upgrade))
    codes = col.settings().codes
    if col.location != str(col.path):  # a Milvus URI: what Milvus holds decides
        from glimpse.milvus.index import summary

        table.add_row("search", summary(col.backend_info()))
    else:
        table.add_row("search", "exact float (FAISS inner product)" if codes is None else (
            f"{codes.binarizer} codes, {codes.bits} bits, {codes.scoring} scoring, "
            + (f"re-rank x{codes.oversample}" if codes.rerank else "no re-rank")
            + (f"; fitted on {codes.fitted_on:,} images" + (f" ({codes.fit_reason})" if codes.fit_reason else "")
               if codes.fitted_on else " (not fitted yet: too few images, exact meanwhile)")))
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

    col = open_existing(collection)
    paths = [unshown(p) for p in paths]
    try:
        n = col.remove(paths)
    except CollectionLockedError as exc:
        raise fail(exc) from None
    console.print(f"{n:,} file{'' if n == 1 else 's'} removed")
    kept_out = [e for e in col.stats().excluded if e in {str(absolute(p)) for p in paths}]
    if kept_out:
        console.print(escape(f"left out of later `glimpse index` runs: {', '.join(map(shown, kept_out))} "
                             "(`glimpse index PATH` brings it back)"))


def _options_note(options) -> str:
    """The remembered scan options of a folder, as `info` shows them."""
    parts = [f"--include {p}" for p in options.include] + [f"--exclude {p}" for p in options.exclude]
    parts += ["--follow-symlinks"] if options.follow_symlinks else []
    return escape(f"  ({' '.join(parts)})") if parts else ""


@app.command(short_help="Give back the disk space of removed images.")
def compact(collection: CollectionOpt = DEFAULT_COLLECTION) -> None:
    """Give back the disk space of removed images (writes also do it once they hold half the vector file)."""
    col = open_existing(collection)
    before = col.stats().vector_bytes
    rows = col.compact()
    console.print(f"{rows:,} unused vector rows dropped: vectors {human_bytes(before)} -> "
                  f"{human_bytes(col.stats().vector_bytes)}")


@app.command(short_help="Check every stored vector and derive the damaged ones again.")
def repair(collection: CollectionOpt = DEFAULT_COLLECTION) -> None:
    """Check every stored vector (rows are stored at unit length: one that is not was damaged on
    disk, and searches leave it out) and encode damaged images again from their files. Exits 1
    when some are left: precomputed vectors to add again, images whose files changed or are gone."""
    col = open_existing(collection)
    with progress_bars() as bar:
        task = bar.add_task("checking vectors", total=None, rate="")
        report = col.repair(progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"{report.checked:,} vectors checked: {len(report.damaged):,} damaged, "
                  f"{len(report.repaired):,} derived again from their images")
    if report.left:
        again = ("add their vectors again (glimpse import-vectors, or add_vectors) under these keys"
                 if not col.has_files else "run `glimpse index` on their folders to re-read or drop them")
        console.print(f"{len(report.left):,} left damaged (left out of search results): {again}:")
        for item, name in report.left[:20]:
            console.print(f"  #{item} {escape(shown(name))}", soft_wrap=True)
        if len(report.left) > 20:
            console.print(f"  ... and {len(report.left) - 20:,} more")
        raise typer.Exit(1)
