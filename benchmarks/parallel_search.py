"""Searches from several threads at once: why Collection.search locks only its index stage.

    python benchmarks/parallel_search.py [--images 100000] [--threads 4] [--seconds 10]
                                         [--codes none|learned|itq|sign]

On the synthetic collection of ``benchmarks/serve.py`` (1664-d vectors; exact float search,
as ``glimpse index`` sets up by default, or ``--codes``):

1. Where a search's time goes: for text queries (MiniLM) and vector queries, the mean time
   per query and the part of it spent holding the index lock (refresh + code scan + re-rank).
2. ``--threads`` threads sending text queries for ``--seconds`` (closed loop), twice: each
   search inside one global lock (what ``glimpse serve`` did before: one search at a time),
   and as ``Collection.search`` runs them now. Prints queries/s and p50/p99, and the ratio.
3. The same two ways, one thread sending a 64-term query (the most one query may hold) while
   the others send one-word queries: p50/p99 of the short ones, which a global lock makes
   wait behind the long one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import TEXTS, build  # noqa: E402

import glimpse  # noqa: E402
from glimpse.query.limits import MAX_TERMS  # noqa: E402

K = 20


class TimedLock:
    """A lock that adds up how long it was held."""

    def __init__(self, lock):
        self.lock, self.held, self._since = lock, 0.0, 0.0

    def __enter__(self):
        self.lock.acquire()
        self._since = time.perf_counter()

    def __exit__(self, *exc):
        self.held += time.perf_counter() - self._since
        self.lock.release()


def where_time_goes(col, queries, name: str, n: int = 50) -> None:
    timed = TimedLock(col._index_lock)
    col._index_lock = timed
    start = time.perf_counter()
    for i in range(n):
        col.search(**queries(i), k=K)
    total = (time.perf_counter() - start) / n
    col._index_lock = timed.lock
    print(f"{name}: {total * 1000:.1f} ms per query, {timed.held / n * 1000:.2f} ms of it in the index lock "
          f"({timed.held / n / total:.0%})")


def closed_loop(col, threads: int, seconds: float, serialised: bool, long_query: bool) -> np.ndarray:
    """Latencies (s) of the short text queries of ``threads`` threads; with ``long_query``,
    thread 0 sends 64-term queries instead (not counted)."""
    outer = threading.Lock() if serialised else nullcontext()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds
    long_terms = " + ".join(f'"{TEXTS[i % len(TEXTS)]} {i}"' for i in range(MAX_TERMS))

    def worker(t: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            query = {"terms": long_terms} if long_query and t == 0 else {"text": TEXTS[(t + i) % len(TEXTS)]}
            began = time.perf_counter()
            with outer:
                col.search(**query, k=K)
            if not (long_query and t == 0):
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
        for long_query in (False, True):
            what = "short text queries" + (", one thread sending 64-term ones" if long_query else "")
            before = closed_loop(col, args.threads, args.seconds, serialised=True, long_query=long_query)
            now = closed_loop(col, args.threads, args.seconds, serialised=False, long_query=long_query)
            print(what)
            print(line("  one search at a time (the old server lock)", before, args.seconds))
            print(line("  Collection.search as it locks now", now, args.seconds))
            print(f"  ratio now / before: {len(now) / max(len(before), 1):.2f}x q/s, "
                  f"p99 {np.percentile(now, 99) / np.percentile(before, 99):.2f}x")
        col.close()


if __name__ == "__main__":
    main()
