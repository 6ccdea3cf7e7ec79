"""glimpse search: every option of the engine's SearchRequest, as flags."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..ingest.names import shown
from ..query.filters import FIELDS as FILTERS
from ..query.request import DEFAULT_FUSION, DEFAULT_K
from .common import CollectionOpt, DEFAULT_COLLECTION, app, fail, open_existing, print_results


@app.command(short_help="Search by words, image, both, result id or terms.", epilog=(
    "\b\nExamples:\n"
    "  glimpse search \"a cat asleep on a sofa\"\n"
    "  glimpse search --image query.jpg\n"
    "  glimpse search --image beach.jpg \"at sunset\"   (composed: this photo, changed by the words)\n"
    "  glimpse search --like 123                       (more like result #123)\n"
    "  glimpse search \"a red car\" --path-glob '2023/*' --min-score 0.15 -k 20 --json"))
def search(
    ctx: typer.Context,
    query: Annotated[Optional[list[str]], typer.Argument(
        help="Words, or query-language terms: '2:golden retriever' + ./pool.jpg - night + #12. "
             "A query that starts with '-' goes after -- (options before it): glimpse search -k 5 -- '-0.5:night'.")] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Find images like this one (with words: a composed query).")] = None,
    like: Annotated[Optional[int], typer.Option("--like", help="More like this result id (itself left out).")] = None,
    vector: Annotated[Optional[Path], typer.Option("--vector", help="A .npy file holding one query vector (the collection's dims).")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Text weight of a composed --image + words query, 0-1 (default 0.6).")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = DEFAULT_K,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Drop results scoring below this (cosine; typical ranges depend on the encoder and the query kind: see the README).")] = None,
    path_glob: Annotated[Optional[str], typer.Option("--path-glob", help=FILTERS["path_glob"])] = None,
    path_prefix: Annotated[Optional[str], typer.Option("--path-prefix", help=FILTERS["path_prefix"])] = None,
    after: Annotated[Optional[str], typer.Option(help=FILTERS["after"])] = None,
    before: Annotated[Optional[str], typer.Option(help=FILTERS["before"])] = None,
    orientation: Annotated[Optional[str], typer.Option(help=FILTERS["orientation"])] = None,
    has_text: Annotated[Optional[bool], typer.Option("--has-text/--no-text", help="Only images with words read in them (--has-text) or without (--no-text); words come from glimpse enrich --ocr.", show_default=False)] = None,
    fusion: Annotated[str, typer.Option(help="How words read in the images rank a text query: calibrated, rrf or none.")] = DEFAULT_FUSION,
    min_width: Annotated[Optional[int], typer.Option("--min-width", help=FILTERS["min_width"])] = None,
    max_width: Annotated[Optional[int], typer.Option("--max-width", help=FILTERS["max_width"])] = None,
    min_height: Annotated[Optional[int], typer.Option("--min-height", help=FILTERS["min_height"])] = None,
    max_height: Annotated[Optional[int], typer.Option("--max-height", help=FILTERS["max_height"])] = None,
    min_size: Annotated[Optional[str], typer.Option("--min-size", help="Minimum file size (500k, 2MB).")] = None,
    max_size: Annotated[Optional[str], typer.Option("--max-size", help="Maximum file size.")] = None,
    refine: Annotated[Optional[str], typer.Option(help="Refine the top 100 candidates: aqe or superglobal (default: none).")] = None,
    adapted: Annotated[bool, typer.Option("--adapt/--no-adapt", help="Use the caption adaptation (glimpse adapt) if there is one.")] = True,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
    exact: Annotated[bool, typer.Option(help="Score every float vector (the reference), not the codes.")] = False,
    oversample: Annotated[Optional[int], typer.Option(help="Code candidates per result to re-rank.")] = None,
    rerank: Annotated[Optional[bool], typer.Option("--rerank/--no-rerank", help="Re-rank code candidates with the float vectors (default: the collection's setting).")] = None,
    scoring: Annotated[Optional[str], typer.Option(help="Code scan for this query: auto, hamming, cascade or asymmetric (default: the collection's setting).")] = None,
) -> None:
    """Search by words, by image (--image), both (composed), by result id (--like) or by weighted terms."""
    from ..query.filters import Filter
    from ..query.language import parse_query
    from ..query.request import SearchRequest

    options = {name for param in ctx.command.params for name in (*param.opts, *param.secondary_opts) if name[:1] == "-"}
    if misplaced := next((w for w in query or () if w in options), None):  # after --, so read as words
        raise fail(ValueError(f"'{misplaced}' came after --, so it was read as query words: put options before -- "
                              "(glimpse search -c DIR -- '-1:night')"))
    words = shlex.join(query) if query and len(query) > 1 else (query[0] if query else None)
    args: dict = {}
    terms = None
    if words is not None and image is None:
        try:
            terms = parse_query(words) if words.strip() else None
        except ValueError as exc:
            raise fail(exc) from None
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
        raise fail(ValueError("give words, --image PATH, both, --like ID or --vector FILE"))
    col = open_existing(collection)
    try:
        where = Filter(path_glob=path_glob, path_prefix=path_prefix, after=after, before=before,
                       orientation=orientation, min_width=min_width, max_width=max_width,
                       min_height=min_height, max_height=max_height, min_bytes=min_size, max_bytes=max_size,
                       has_text=has_text)
        results = col.search(SearchRequest(**args, alpha=alpha, filters=where, min_score=min_score, refine=refine,
                                           adapted=adapted, k=k, exact=exact, oversample=oversample, rerank=rerank,
                                           scoring=scoring, fusion=fusion))
    except ValueError as exc:
        raise fail(exc) from None
    if as_json:
        print(json.dumps([{**r.to_dict(), "path": shown(r.path)} for r in results], indent=2))
        return
    title = escape(shown(" + ".join(x for x in (words and repr(words), image and f"like {image}", like is not None and f"like #{like}",
                                                 vector and f"vector {vector}") if x)))
    if not where.is_empty():
        title += escape(shown(f"  [{', '.join(f'{k}={v}' for k, v in where.to_dict().items())}]"))
    words_term = any(t.kind == "words" for t in terms or ())
    print_results(results, title=title, empty=_why_empty(col, min_score, bool(has_text) or words_term, words_term,
                                                         not where.is_empty()))


def _why_empty(col, min_score: float | None, wants_words: bool, words_term: bool, filtered: bool) -> str | None:
    """What an empty table says: the cut-off, words never read (glimpse enrich --ocr), a text: term
    that no image's words hold, or the filters."""
    if not len(col):
        return None
    if min_score is not None:
        return f"no good matches: nothing scored {min_score} or more (try a lower --min-score)"
    if wants_words and not col.words_read():
        return "no good matches: no image has been read for words yet (run glimpse enrich --ocr)"
    if words_term:
        return f"no good matches: no {'filtered ' if filtered else ''}image's words hold the text: term"
    return "no good matches: nothing passed the filters" if filtered else "no good matches"


def _query_vector(path: Path):
    """The one vector of a .npy file (shape (dims,) or (1, dims))."""
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise fail(ValueError(f"cannot read a vector from {shown(str(path))}: {exc.strerror or exc}")) from None
    except (ValueError, EOFError):  # EOFError: an empty or cut-short file; ValueError: objects, not .npy
        raise fail(ValueError(f"cannot read a vector from {shown(str(path))}: not a .npy array of numbers "
                              "(numpy.save one vector)")) from None
    if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[0] != 1):
        raise fail(ValueError(f"{shown(str(path))} holds an array of shape {array.shape}: give one vector"))
    return array.reshape(-1)
