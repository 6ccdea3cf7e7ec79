"""The cost of checking stored rows' lengths on the re-rank path, against the same path unchecked.

    python benchmarks/vector_check.py [--rows 20000] [--dim 1664] [--queries 200] [--rounds 5]
                                      [--codes ivf-rabitq,itq]

Builds a collection of ``--rows`` precomputed unit vectors (clustered, ``--dim``-d like Lite0's)
with ``ivf-rabitq`` codes, and another with ``itq`` codes, in a temporary folder; then, in rounds
that alternate the two so machine load hits both alike, times the same queries (half near stored
rows, like image queries, half random, like captions) with the length check as shipped and with it
switched off (``whole_rows`` answering "whole" without looking: the path before the check). Prints
the CPU time per query (median of rounds) and the check's share. A second table times
``exact_top`` alone on float16 rows read from the file, for the sizes the plans ask for; a last
line, the check of the rows an exact (flat) index loads against reading them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import glimpse
from glimpse.backends import exact


def clustered(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, rows // 200), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), rows)] + 0.8 * rng.standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed(run, rounds: int) -> tuple[list[float], list[float]]:
    """CPU seconds of ``run()`` per round, checked and unchecked, alternating."""
    shipped = exact.whole_rows
    checked, unchecked = [], []
    for _ in range(rounds):
        for times, check in ((checked, shipped), (unchecked, lambda rows: np.ones(len(rows), bool))):
            exact.whole_rows = check
            start = time.process_time()
            run()
            times.append(time.process_time() - start)
    exact.whole_rows = shipped
    return checked, unchecked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1664)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--codes", default="ivf-rabitq,itq", help="binarizers to time (itq: 256 bits)")
    args = parser.parse_args()
    x = clustered(args.rows, args.dim)
    rng = np.random.default_rng(1)
    near = x[rng.integers(0, len(x), args.queries // 2)] + 0.3 * rng.standard_normal((args.queries // 2, args.dim)).astype(np.float32) / np.sqrt(args.dim) * 10
    queries = np.concatenate([near, rng.standard_normal((args.queries - len(near), args.dim)).astype(np.float32)])
    print(f"{args.rows:,} rows of {args.dim}-d, {args.queries} queries, {args.rounds} rounds; CPU ms per query (median)")
    print(f"{'codes':<12} {'checked':>9} {'unchecked':>10} {'check':>7}")
    with tempfile.TemporaryDirectory(prefix="glimpse-check-") as folder:
        kinds = {"ivf-rabitq": {"binarizer": "ivf-rabitq"}, "itq": {"binarizer": "itq", "bits": 256}}
        for codes in (kinds[name] for name in args.codes.split(",")):
            col = glimpse.open(Path(folder) / codes["binarizer"], encoder="precomputed", dim=args.dim)
            col.add_vectors(x, [f"k{i}" for i in range(len(x))])
            col.use_codes(**codes)
            col.search(vector=queries[0], k=10)  # loaded

            def run() -> None:
                for query in queries:
                    col.search(vector=query, k=10)

            checked, unchecked = timed(run, args.rounds)
            a, b = (statistics.median(t) * 1e3 / len(queries) for t in (checked, unchecked))
            print(f"{codes['binarizer']:<12} {a:9.3f} {b:10.3f} {100 * (a - b) / b:6.1f}%")
            reader = col._read_stored
        print(f"\nexact_top alone on float16 rows from the file, on one FAISS thread as a query plan runs it "
              f"(CPU us per call, median of {args.rounds} rounds)")
        print(f"{'rows':>6} {'k':>5} {'checked':>9} {'unchecked':>10} {'check':>7}")
        for count, k in ((136, 136), (64, 10), (300, 10), (2000, 10)):
            ids = [np.sort(rng.choice(len(x), count, replace=False)) for _ in range(50)]
            with exact.one_thread():
                checked, unchecked = timed(lambda: [exact.exact_top(reader, queries[0], i, k) for i in ids], args.rounds)
            a, b = (statistics.median(t) * 1e6 / len(ids) for t in (checked, unchecked))
            print(f"{count:6d} {k:5d} {a:9.1f} {b:10.1f} {100 * (a - b) / b:6.1f}%")
        rows = np.sort(rng.choice(len(x), min(len(x), 65536), replace=False))
        cast = [time.process_time(), col._read_vectors(rows), time.process_time()]
        check = [time.process_time(), exact.whole_rows(cast[1]), time.process_time()]
        print(f"\nexact index load: {len(rows):,} rows read as float32 in {1e3 * (cast[2] - cast[0]):.0f} CPU ms, "
              f"their length check {1e3 * (check[2] - check[0]):.0f} ms")
        col.close()


if __name__ == "__main__":
    main()
