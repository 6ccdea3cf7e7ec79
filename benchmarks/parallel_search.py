"""Searches from several threads at once: why Collection.search locks only its index stage.

    python benchmarks/parallel_search.py [--images 100000] [--threads 4] [--seconds 10]
                                         [--codes none|learned|itq|sign]

On the synthetic collection of ``benchmarks/serve.py`` (1664-d vectors; exact float search,
as ``glimpse index`` sets up by default, or ``--codes``):

1. Where a search's time goes: for text queries (MiniLM) and vector queries, the mean time
   per query and the part of it spent on the index (refresh + scan, under the index lock).
2. ``--threads`` threads sending queries for ``--seconds`` (closed loop), twice: each search
   inside one global lock (what ``glimpse serve`` did before: one search at a time), and as
   ``Collection.search`` runs them now. Prints queries/s and p50/p99, and the ratio. Three
   loads: short text queries; the same while one thread sends 64-term queries (the most one
   query may hold; its own answers are not counted); vector queries.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import TEXTS, build  # noqa: E402

import glimpse  # noqa: E402
from glimpse.query.limits import MAX_TERMS  # noqa: E402

K = 20


def where_time_goes(col, queries, name: str, n: int = 50) -> None:
    held = 0.0
    fresh = col._fresh_index

    @contextmanager
    def timed():
        nonlocal held
        start = time.perf_counter()
        with fresh() as index:
            yield index
        held += time.perf_counter() - start

    col._fresh_index = timed
    start = time.perf_counter()
    for i in range(n):
        col.search(**queries(i), k=K)
    total = (time.perf_counter() - start) / n
    del col._fresh_index
    print(f"{name}: {total * 1000:.1f} ms per query, {held / n * 1000:.2f} ms of it on the index ({held / n / total:.0%})")


def closed_loop(col, threads: int, seconds: float, serialised: bool, short, long: dict | None) -> np.ndarray:
    """Latencies (s) of the ``short(i)`` queries of ``threads`` threads; with ``long``,
    thread 0 sends that query instead (not counted)."""
    outer = threading.Lock() if serialised else nullcontext()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds

    def worker(t: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            query = long if long is not None and t == 0 else short(t + i)
            began = time.perf_counter()
            with outer:
                col.search(**query, k=K)
            if query is not long:
                latencies[t].append(time.perf_counter() - began)
            i += 1

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return np.concatenate([np.asarray(x) for x in latencies])


def line(name: str, lat: np.ndarray, seconds: float) -> str:
    return (f"{name:<44} {len(lat) / seconds:7.1f} q/s  p50 {np.percentile(lat, 50) * 1000:7.1f} ms  "
            f"p99 {np.percentile(lat, 99) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--codes", default="none", help="binarizer for the codes, or none (exact float)")
    parser.add_argument("--keep", type=Path, help="build the collection here once and reuse it in later runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="glimpse-parallel-bench-") as tmp:
        directory = args.keep or Path(tmp) / "col"
        if (directory / "queries.npy").exists():
            col = glimpse.open(directory, create=False)
        else:
            col = build(directory, args.images, args.codes)
        faiss.omp_set_num_threads(1)  # as glimpse serve runs
        vectors = np.load(directory / "queries.npy")
        col.search(text="warm up", k=K)
        print(f"{len(col):,} images, codes={args.codes}, {args.threads} threads, load average {os.getloadavg()[0]:.1f} before")
        where_time_goes(col, lambda i: {"text": TEXTS[i % len(TEXTS)] + f" {i}"}, "text query")
        where_time_goes(col, lambda i: {"vector": vectors[i % len(vectors)]}, "vector query")
        text = lambda i: {"text": TEXTS[i % len(TEXTS)]}  # noqa: E731
        long_terms = {"terms": " + ".join(f'"{TEXTS[i % len(TEXTS)]} {i}"' for i in range(MAX_TERMS))}
        loads = [("short text queries", text, None),
                 ("short text queries, one thread sending 64-term ones", text, long_terms),
                 ("vector queries", lambda i: {"vector": vectors[i % len(vectors)]}, None)]
        for what, short, long in loads:
            before = closed_loop(col, args.threads, args.seconds, True, short, long)
            now = closed_loop(col, args.threads, args.seconds, False, short, long)
            print(what)
            print(line("  one search at a time (the old server lock)", before, args.seconds))
            print(line("  Collection.search as it locks now", now, args.seconds))
            print(f"  ratio now / before: {len(now) / max(len(before), 1):.2f}x q/s, "
                  f"p99 {np.percentile(now, 99) / np.percentile(before, 99):.2f}x")
        col.close()


if __name__ == "__main__":
    main()
