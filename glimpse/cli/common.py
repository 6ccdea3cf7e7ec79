"""What every command shares: the app, consoles, errors as one sentence and exit 2, progress bars."""

from __future__ import annotations

import os
import re
import sqlite3
from typing import Annotated, Optional, get_args

import typer
from typer.core import TyperArgument, TyperGroup
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..ingest.names import shown


console = Console()
err = Console(stderr=True)


class _ListArgument(TyperArgument):
    """An argument taking several values: its help shows what one value is (``paths... <str>``),
    not Typer's ``<list[str]>``."""

    def display_type(self, ctx) -> str:
        (item,) = get_args(self.type_descriptor.annotation)
        return f"<{self._bare_type(item)}>"


_OPENED: list = []  # the collections the running command opened (closed_after_command)


class _Commands(TyperGroup):
    """Errors meant for people end any command with their one sentence and exit 2, never a
    traceback: another writer's lock, ValueError, which the engine raises for bad options, an
    optional feature used without its extra, a Milvus server that cannot be reached or stops
    answering (pymilvus's MilvusException, once its tries or its deadline run out), and files
    that cannot be read or written (OSError: a damaged, gone or unwritable collection file, a
    full disk; sqlite3.OperationalError: the same met by SQLite; sqlite3.DatabaseError: a metadata
    file that is no database)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            for param in getattr(command, "params", ()):
                if type(param) is TyperArgument and param.type_descriptor.is_list:
                    param.__class__ = _ListArgument

    def invoke(self, ctx):
        from ..extras import MissingExtraError
        from ..milvus.connect import milvus_errors
        from ..storage.lock import CollectionLockedError

        try:
            return super().invoke(ctx)
        except (CollectionLockedError, MissingExtraError, ValueError) as exc:
            raise fail(exc) from None
        except milvus_errors() as exc:  # pymilvus's str() wraps the message in its code
            raise fail(f"the Milvus server did not answer: {getattr(exc, 'message', exc)}") from None
        except OSError as exc:  # "[Errno 2] No such file or directory: 'x'" -> "x: No such file or directory"
            raise fail(f"{shown(os.fsdecode(exc.filename))}: {exc.strerror}" if exc.filename and exc.strerror else exc) from None
        except sqlite3.OperationalError as exc:  # a full disk, a read-only folder, a lock held too long: not damage
            raise fail(f"the collection database could not be used ({exc}): free disk space or fix the folder's "
                       "permissions if that is the cause, then run the command again") from None
        except sqlite3.DatabaseError as exc:
            raise fail(f"a collection database cannot be read ({exc}): restore it from a backup, or index into a new collection") from None
        finally:
            while _OPENED:
                _OPENED.pop().close()


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

# The model options of `index` (a new collection) and `upgrade` (the encoder to move to).
PrecisionOpt = Annotated[Optional[str], typer.Option(help="lite encoders: int8, fp32 or bf16 (default int8; fp32 on an x86 CPU without VNNI); open_clip/hf: fp32 (the default) or bf16.")]
ModelOpt = Annotated[Optional[str], typer.Option(help="open_clip: architecture (ViT-B-32), hf-hub:org/name or a model folder; hf: hub id or folder.")]
PretrainedOpt = Annotated[Optional[str], typer.Option(help="open_clip weights: a tag (laion2b_s34b_b79k), hf-hub:org/name, a checkpoint file or a folder.")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="open_clip/hf: cpu, cuda or cuda:N (default: CUDA when present).")]

# The code options of `index` and `import-vectors` (see Collection.use_codes).
CodesOpt = Annotated[Optional[str], typer.Option(help="Search through codes: ivf-rabitq (coarse lists + residual codes), learned, itq or sign; none switches them off (exact float search). Default: the collection's setting; a new one searches exact float.")]
BitsOpt = Annotated[Optional[int], typer.Option(help="Bits per image code (with --codes; default 224 for ivf-rabitq, else 256).")]
OversampleOpt = Annotated[Optional[int], typer.Option(help="Code candidates per result to re-rank, at most (with --codes; default 2000 for ivf-rabitq, else 30).")]
ScoringOpt = Annotated[str, typer.Option(help="Code scan: auto (asymmetric for text, cascade for images), hamming, cascade or asymmetric.")]
RerankOpt = Annotated[bool, typer.Option(help="Re-rank code candidates with the float vectors (with --codes).")]


def open_existing(path: str, create: bool = False, encoder: str | None = None, **options):
    import glimpse

    options = {k: v for k, v in options.items() if v is not None}
    try:
        return closed_after_command(glimpse.open(path, encoder=encoder, create=create, **options))
    except (FileNotFoundError, glimpse.EncoderMismatchError, ValueError) as exc:
        raise fail(exc) from None


def closed_after_command(col):
    """``col``, closed when the running command ends, however it ends: an open SQLite
    connection left behind (a command run in-process, CliRunner) could write its journal
    back into the collection later."""
    _OPENED.append(col)
    return col


def close_now(col) -> None:
    """Close ``col`` before the command ends (once: a second close would release a shared
    Milvus Lite server twice)."""
    _OPENED.remove(col)
    col.close()


def unshown(path: str) -> str:
    """``path`` as typed, or, when only its ``\\xNN`` escapes name a file (a name copied from
    `glimpse info`, see ``shown``), with those escapes turned back into bytes."""
    if os.path.lexists(path) or "\\x" not in path:
        return path
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m[1], 16)]), path.encode("utf-8", "surrogateescape"))
    return os.fsdecode(raw) if os.path.lexists(raw) else path


def fail(exc: Exception | str) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(str(exc))}")  # messages quote brackets: glimpse-retrieval[server]
    return typer.Exit(2)


def human_bytes(n: int) -> str:
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
    """A callback for a binarizer fit, then the codes built with it (another total: rows): a bar for
    each, shown from its first step."""
    task, labels = None, iter(("fitting codes", "coding vectors"))
    shown_total = None

    def progress(done: int, total: int) -> None:
        nonlocal task, shown_total
        if task is None or total != shown_total:
            task, shown_total = bar.add_task(next(labels, "coding vectors"), total=total, rate=""), total
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
        report = col.index(paths or None, prune=prune, progress=progress, fit_progress=fit_progress(bar), **options)
    parts = [f"{report.indexed:,} indexed", f"{report.unchanged:,} unchanged"]
    if report.removed:
        parts.append(f"{report.removed:,} removed")
    line = ", ".join(parts)
    if report.skipped:
        line += f", {report.skipped:,} skipped (see glimpse info --errors)"
    if not report.scanned and not report.removed:  # "0 indexed, 0 unchanged" alone reads like a silent failure
        line += ": no image files there (.jpg, .png, .webp, .heic and the like; --include/--exclude choose which)"
    console.print(line)
    hint_codes(col)


#: From this many images, a collection searched exactly gets a hint to choose codes: a query reads every
#: float16 vector (at 1M 1664-d ones, 1.3 s of CPU against 26 ms through ivf-rabitq codes).
CODES_HINT = 200_000


def hint_codes(col) -> None:
    """Say how to search a large collection faster when it has no codes (codes stay the user's choice:
    they take minutes to fit at this size, and re-rank from the same vectors)."""
    if col.settings().codes is None and col.location == str(col.path) and len(col) >= CODES_HINT:
        console.print(f"hint: {len(col):,} vectors are searched exactly, every one per query; compact codes are "
                      f"about 50x faster at this size: glimpse index --codes ivf-rabitq -c {shown(str(col.path))}")


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
