"""Write an evaluation's report: ``report.json`` (every figure), ``summary.md`` and ``report.html``.

The HTML page is self-contained: plots are matplotlib PNGs and thumbnails JPEGs, both inline
as base64 ``data:`` URLs, with no script and no external URL, so it opens offline and can be
mailed around. Plots: recall@K curves, the headline figure against bits, and against latency;
then a gallery of the worst queries (reference configuration) with their top results.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..extras import require
from .tasks import Items, Task
from .runner import Evaluation, Row

GALLERY_QUERIES = 8
THUMB = 112


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    markdown: Path
    html: Path


def write_report(ev: Evaluation, out: str | Path) -> ReportFiles:
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out / "report.json", out / "summary.md", out / "report.html")
    files.json.write_text(json.dumps(to_json(ev), indent=2, default=_jsonable) + "\n", encoding="utf-8")
    files.markdown.write_text(markdown(ev), encoding="utf-8")
    files.html.write_text(to_html(ev), encoding="utf-8")
    return files


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _clean(x):
    """NaN/inf are not JSON: write them as null."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def to_json(ev: Evaluation) -> dict:
    ds = ev.dataset
    return _clean({
        "dataset": {"adapter": ds.adapter, "root": str(ds.root), "info": ds.info,
                    "tasks": [{"name": t.name, "protocol": t.protocol, "queries": len(t.queries),
                               "database": len(t.database), "options": t.options} for t in ds.tasks]},
        "data_fingerprint": ev.fingerprint,
        "seed": ev.seed,
        "command": ev.command,
        "environment": ev.environment(),
        "seconds": round(ev.seconds, 2),
        "tie_orders": {"figures": "ties by database index (FAISS, CalcTopMap, open_clip): the published figure",
                       "figures_pessimistic": "relevant items last among equal scores",
                       "figures_optimistic": "relevant items first among equal scores"},
        "results": [row.to_dict() for row in ev.rows],
    })


# -- Markdown -------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.0f}"


#: Printed under a table whose cells show tie-order bounds.
TIES_NOTE = ("Tied scores (binary codes): each figure ranks ties by database index, as FAISS returns them and "
             "DeepHash-pytorch's CalcTopMap and open_clip rank them (the order papers report); where the order of "
             "ties changes a figure, (pessimistic / optimistic) follow it: relevant items last / first among equal "
             "scores. Pessimistic is the worst case and optimistic the best for every figure except mAP@k, "
             "which neither bounds.")


def _cell(row: Row, name: str) -> str:
    """The reference figure, then ``(pessimistic / optimistic)`` when tie order changes it."""
    show = (lambda v: f"{v:g}") if name == "median rank" else _fmt
    reference = show(row.score.figures[name])
    low, high = (show(row.score.bounds.get(t, row.score.figures)[name]) for t in ("pessimistic", "optimistic"))
    return reference if low == reference == high else f"{reference} ({low} / {high})"


def _table(ev: Evaluation, task: Task) -> tuple[list[str], list[list[str]], bool]:
    """Header, rows, and whether any cell shows tie-order bounds."""
    rows = [r for r in ev.rows if r.task == task.name]
    several = len({r.encoder for r in ev.rows}) > 1
    names = list(rows[0].score.figures) if rows else []
    head = (["encoder"] if several else []) + ["config", *names, "ms/query (p50)", "bytes/image"]
    cells = [[_cell(r, n) for n in names] for r in rows]
    body = [([r.encoder] if several else []) + [r.config.name, *figures,
                                                f"{r.latency_ms['p50']:.2f}" if "p50" in r.latency_ms else "–",
                                                f"{r.bytes_per_image:,}"] for r, figures in zip(rows, cells)]
    return head, body, any(" (" in c for figures in cells for c in figures)


def _by_kind(ev: Evaluation, task: Task) -> tuple[list[str], list[list[str]]]:
    """One row per query kind (copy detection's edits), R@1 of each configuration."""
    rows = [r for r in ev.rows if r.task == task.name and r.score.breakdown]
    if not rows:
        return [], []
    head = ["kind", "queries", *(f"{r.encoder} {r.config.name}" if len({x.encoder for x in rows}) > 1
                                 else r.config.name for r in rows)]
    return head, [[k, f"{rows[0].score.breakdown[k]['queries']:.0f}", *(_fmt(r.score.breakdown[k]["R@1"]) for r in rows)]
                  for k in rows[0].score.breakdown]


def markdown(ev: Evaluation) -> str:
    ds = ev.dataset
    lines = [f"# glimpse eval: {ds.adapter} ({ds.root})", "",
             f"{', '.join(f'{k} {v}' for k, v in ds.info.items())}; seed {ev.seed}; "
             f"data fingerprint `{ev.fingerprint}`; {ev.seconds:.0f} s.", ""]
    for task in ds.tasks:
        head, body, tied = _table(ev, task)
        lines += [f"## {task.name} ({len(task.queries):,} queries, {len(task.database):,} items)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        lines += ["", TIES_NOTE, ""] if tied else [""]
        if split := task.options.get("split"):
            lines += [f"Split: {split['rule']} (seed {split['seed']}): trained on {split['train_captions']} captions "
                      f"of {split['train_images']} images, scored on {split['test_captions']} captions against the "
                      f"other {split['test_images']} images.", ""]
        kinds, kbody = _by_kind(ev, task)
        if kbody:
            lines += ["R@1 by query kind:", "", "| " + " | ".join(kinds) + " |", "|" + "---|" * len(kinds)]
            lines += ["| " + " | ".join(cells) + " |" for cells in kbody] + [""]
    lines.append("Latency: batch-1 search for the top 10 on the real index (FlatIndex / BinaryIndex), "
                 "this machine, median over queries of the best of 3 runs. "
                 "Bytes/image: RAM the search path holds per image (float32 vector, or code + id).")
    return "\n".join(lines) + "\n"


# -- HTML -----------------------------------------------------------------------------------


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(ev: Evaluation, task: Task) -> list[tuple[str, str]]:
    require("eval", "glimpse eval")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in ev.rows if r.task == task.name]
    headline = ev.headline(task)
    several = len({r.encoder for r in ev.rows}) > 1
    label = (lambda r: f"{r.encoder} {r.config.name}") if several else (lambda r: r.config.name)
    plots = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ks = sorted(r.score.curve)
        ax.plot(ks, [r.score.curve[k] for k in ks], marker=".", label=label(r))
    ax.set(xscale="log", xlabel="K", ylabel="recall@K (first relevant item)", ylim=(0, 1.02),
           title=f"{task.name}: recall@K")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    plots.append(("recall@K", _png(fig)))

    fig, ax = plt.subplots(figsize=(6, 4))
    groups: dict[str, list[Row]] = {}
    for r in rows:
        if r.config.binarizer is None:
            ax.axhline(r.score.figures[headline], color="black", linestyle="--", label=f"{label(r)}")
        else:
            key = (f"{r.encoder} " if several else "") + r.config.name.split("-")[0] + \
                  ("-asym" if r.config.scoring == "asymmetric" else "") + (" +rerank" if r.config.rerank else "") + \
                  (f" +words:{r.config.fusion}" if r.config.fusion else "")
            groups.setdefault(key, []).append(r)
    for key, members in groups.items():
        members.sort(key=lambda r: r.config.bits)
        ax.plot([r.config.bits for r in members], [r.score.figures[headline] for r in members], marker="o", label=key)
    bits = sorted({r.config.bits for r in rows if r.config.binarizer})
    ax.set_xscale("log", base=2)
    if bits:
        ax.set_xticks(bits, [str(b) for b in bits])
    ax.set(xlabel="bits per image", ylabel=headline, title=f"{task.name}: {headline} against bits")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    plots.append((f"{headline} against bits", _png(fig)))

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter([r.latency_ms.get("p50", np.nan)], [r.score.figures[headline]], label=label(r))
    ax.set(xlabel="latency per query, ms (p50, batch 1)", ylabel=headline,
           title=f"{task.name}: {headline} against latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    plots.append((f"{headline} against latency", _png(fig)))
    return plots


def _thumb(items: Items, i: int) -> str:
    """An ``<img>`` of item ``i`` (inline JPEG), or its text in a box."""
    picture = None if items.kind == "texts" else items.picture(int(i))
    if picture is None:
        text = items.label(int(i))
        return f'<div class="text" title="{html.escape(text)}">{html.escape(text[:160])}</div>'
    picture = picture.convert("RGB")
    picture.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=80)
    src = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    return f'<img class="thumb" src="{src}" alt="{html.escape(items.label(int(i)))}">'


def _gallery(ev: Evaluation, task: Task) -> str:
    rows = [r for r in ev.rows if r.task == task.name]
    if not rows or rows[0].score.quality is None or not len(rows[0].score.quality):
        return ""
    ref = rows[0]
    positives = task.judgements[next(iter(task.judgements))].positives
    worst = np.argsort(ref.score.quality, kind="stable")[:GALLERY_QUERIES]
    parts = [f"<h3>Worst queries ({html.escape(ref.encoder)} {html.escape(ref.config.name)})</h3>",
             "<p>Each row: the query, then its top results (green border: relevant); "
             "the expected item is shown last when it is not among them.</p>"]
    for q in worst:
        caption = "" if task.queries.kind == "texts" else html.escape(task.queries.label(int(q))[:80]) + "<br>"
        cells = [f'<div class="query">{_thumb(task.queries, q)}<small>{caption}'
                 f"quality {ref.score.quality[q]:.3f}</small></div>"]
        shown = ref.score.top[q]
        relevant = set(positives[q].tolist())
        for rank, d in enumerate(shown, 1):
            good = "good" if int(d) in relevant else "bad"
            cells.append(f'<div class="hit {good}">{_thumb(task.database, d)}<small>#{rank}</small></div>')
        missing = [p for p in positives[q] if p not in set(shown.tolist())][:1]
        for p in missing:
            cells.append(f'<div class="hit expected">{_thumb(task.database, p)}<small>expected</small></div>')
        parts.append('<div class="row">' + "".join(cells) + "</div>")
    return "\n".join(parts)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.plots img{max-width:32%;margin-right:1%}
.row{display:flex;gap:8px;align-items:flex-start;margin:10px 0}.row small{display:block;font-size:11px}
.thumb{width:112px;height:112px;object-fit:contain;background:#eee}.hit,.query{width:120px}
.good .thumb,.good .text{outline:4px solid #2a2}.bad .thumb,.bad .text{outline:2px solid #c33}
.expected .thumb{outline:4px dashed #2a2}.query .thumb,.query .text{outline:3px solid #36c}
.text{width:112px;height:112px;overflow:hidden;font-size:10px;background:#f6f6f6}
code{background:#f3f3f3;padding:1px 4px}"""


def _html_table(head: list[str], body: list[list[str]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body]
    return "".join(out) + "</table>"


def to_html(ev: Evaluation) -> str:
    ds = ev.dataset
    env = ev.environment()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>glimpse eval: {html.escape(ds.adapter)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>glimpse eval: {html.escape(ds.adapter)}</h1>",
             f"<p><code>{html.escape(str(ds.root))}</code> — "
             + html.escape(", ".join(f"{k} {v}" for k, v in ds.info.items()))
             + f"<br>seed {ev.seed}; data fingerprint <code>{ev.fingerprint}</code>; {ev.seconds:.0f} s; "
             + html.escape(", ".join(f"{k} {v}" for k, v in env.items())) + "</p>"]
    for task in ds.tasks:
        head, body, tied = _table(ev, task)
        parts.append(f"<h2>{html.escape(task.name)} ({len(task.queries):,} queries, {len(task.database):,} items)</h2>")
        parts.append(_html_table(head, body))
        if tied:
            parts.append(f'<p class="ties"><small>{html.escape(TIES_NOTE)}</small></p>')
        parts.append('<div class="plots">' + "".join(
            f'<img class="plot" alt="{html.escape(title)}" src="{src}">' for title, src in _plots(ev, task)) + "</div>")
        head, body = _by_kind(ev, task)
        if body:
            parts.append("<h3>R@1 by query kind</h3>" + _html_table(head, body))
        parts.append(_gallery(ev, task))
    parts.append("<p><small>Latency: batch-1 top-10 search on the real index, this machine. "
                 "Bytes/image: RAM per image in the search path.</small></p></body></html>")
    return "\n".join(parts)
