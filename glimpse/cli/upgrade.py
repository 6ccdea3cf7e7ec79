"""``glimpse upgrade``: move a collection to another encoder while it keeps answering (:mod:`glimpse.upgrade`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import CollectionOpt, DEFAULT_COLLECTION, DeviceOpt, ModelOpt, PrecisionOpt, PretrainedOpt, app, console, open_existing, progress_bars, rate_progress


@app.command(short_help="Move to another encoder while search keeps answering.")
def upgrade(
    encoder: Annotated[Optional[str], typer.Argument(help="The encoder to move to (a registered name). Default: resume the upgrade under way.")] = None,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    precision: PrecisionOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = None,
    sample: Annotated[int, typer.Option(help="Images re-embedded first, to fit the old->new map on.")] = 1000,
    backfill: Annotated[Optional[int], typer.Option(help="Re-embed about this many more images this run, in whole batches (default: all); run again to go on.")] = None,
    order: Annotated[str, typer.Option(help="Backfill order: uncertain (worst-mapped batches first) or random.")] = "uncertain",
    finish: Annotated[bool, typer.Option("--finish/--keep-old", help="Drop the old vectors once every image is re-embedded (--keep-old keeps them, so --abort stays possible).")] = True,
    abort: Annotated[bool, typer.Option("--abort", help="Return to the old encoder and drop the new vectors.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images per model batch: the one the collection was indexed with, for vectors equal to a fresh index.")] = 32,
    workers: Annotated[int, typer.Option(help="Decode threads.")] = 2,
) -> None:
    """Move a collection to another encoder without starting over: search goes on, in the new encoder's space, while it re-embeds.

    A sample is re-embedded and a map from the old vectors to the new space is fitted on it; the
    other images are searched through their mapped vectors until the backfill re-embeds them.
    Stop it any time (Ctrl-C); `glimpse upgrade` resumes it.
    """
    options = {k: v for k, v in dict(precision=precision, model=model, pretrained=pretrained, device=device).items()
               if v is not None}
    col = open_existing(collection)
    with progress_bars() as bar:
        report = col.upgrade(encoder, sample=sample, backfill=backfill, order=order, finish=finish, abort=abort,
                             batch_size=batch_size, workers=workers, progress=rate_progress(bar, "re-embedding", "img"),
                             **options)
    if report.phase == "aborted":
        console.print(f"upgrade aborted: the collection is back on {col.encoder.name}")
        return
    line = f"{report.reembedded:,} images re-embedded in {report.seconds:.0f}s; "
    line += ("upgrade finished: old vectors dropped" if report.phase == "finished" else
             f"{report.done:,} of {report.total:,} done" + (" (run glimpse upgrade again to go on)" if report.done < report.total
                                                            else " (glimpse upgrade --finish drops the old vectors)"))
    if report.unreadable:
        line += f"; {report.unreadable:,} could not be read again and keep their mapped vectors"
    console.print(line)


def upgrade_note(up: dict) -> str:
    """An encoder upgrade under way, for ``glimpse info``."""
    quality = up["quality"]
    fit = f"{up['map']} map, cross-validated top-1 {quality['top1']:.0%}, cosine {quality['cosine']:.2f}" if quality else \
        f"{up['map']} map" if up["map"] else "map not fitted yet"
    if up["phase"] == "sampling":
        return f"{up['old']} -> {up['new']}: embedding the sample ({up['sampled']:,} of {up['sample']:,}); search still in the old space"
    return (f"{up['old']} -> {up['new']}: {up['share']:.0%} re-embedded ({up['reembedded']:,} of {up['images']:,}, "
            f"{up['policy']} first), the rest searched through the {fit}")
