"""The cost of checking stored rows (length and checksum) on the re-rank path, against the same path unchecked.

    python benchmarks/vector_check.py [--rows 20000] [--dim 1664] [--queries 200] [--rounds 5]
                                      [--codes ivf-rabitq,itq]

Builds a collection of ``--rows`` precomputed unit vectors (clustered, ``--dim``-d like Lite0's)
with ``ivf-rabitq`` codes, and another with ``itq`` codes, in a temporary folder; then, in rounds
that alternate the checks so machine load hits them alike, times the same queries (half near
stored rows, like image queries, half random, like captions) with the check as shipped (length and
checksum), with the length alone (before the checksums), and with none (the backend's ``check``
answering "whole" without looking). Prints the CPU time per query (median of rounds) and each
check's share over none. A second table times ``exact_top`` alone on float16 rows read from the
file, for the sizes the plans ask for; a last line, the checks of the rows an exact (flat) index
loads against reading them.
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


def checks(col) -> dict:
    """The row checks compared: as shipped, lengths alone, none."""
    return {"shipped": col._check_rows, "length": exact.lengths_only, "none": lambda ids, rows: np.ones(len(rows), bool)}


def timed(run, named: dict, rounds: int) -> dict[str, float]:
    """Median CPU seconds of ``run(check)`` per round for each of the ``named`` checks, alternating."""
    times: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(rounds):
        for name, check in named.items():
            start = time.process_time()
            run(check)
            times[name].append(time.process_time() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def row(label: str, got: dict[str, float], unit: float) -> str:
    a, b, c = (got[name] * unit for name in ("shipped", "length", "none"))
    return f"{label} {a:9.3f} {b:9.3f} {c:9.3f} {100 * (a - c) / c:6.1f}% {100 * (b - c) / c:6.1f}%"


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
    print(f"{'codes':<12} {'shipped':>9} {'length':>9} {'none':>9} {'+ship':>7} {'+length':>7}")
    with tempfile.TemporaryDirectory(prefix="glimpse-check-") as folder:
        kinds = {"ivf-rabitq": {"binarizer": "ivf-rabitq"}, "itq": {"binarizer": "itq", "bits": 256}}
        for codes in (kinds[name] for name in args.codes.split(",")):
            col = glimpse.open(Path(folder) / codes["binarizer"], encoder="precomputed", dim=args.dim)
            col.add_vectors(x, [f"k{i}" for i in range(len(x))])
            col.use_codes(**codes)
            col.search(vector=queries[0], k=10)  # loaded

            def run(check) -> None:
                col._index.check = check  # the backend's RowCheck, as open_backend set it
                for query in queries:
                    col.search(vector=query, k=10)

            got = timed(run, checks(col), args.rounds)
            col._index.check = col._check_rows
            print(row(f"{codes['binarizer']:<12}", got, 1e3 / len(queries)))
            reader = col._read_stored
        print(f"\nexact_top alone on float16 rows from the file, on one FAISS thread as a query plan runs it "
              f"(CPU us per call, median of {args.rounds} rounds)")
        print(f"{'rows':>6} {'k':>5} {'shipped':>9} {'length':>9} {'none':>9} {'+ship':>7} {'+length':>7}")
        for count, k in ((136, 136), (64, 10), (300, 10), (2000, 10)):
            ids = [np.sort(rng.choice(len(x), count, replace=False)) for _ in range(50)]
            with exact.one_thread():
                got = timed(lambda check: [exact.exact_top(reader, queries[0], i, k, check) for i in ids], checks(col),
                            args.rounds)
            print(row(f"{count:6d} {k:5d}", got, 1e6 / len(ids)))
        rows = np.sort(rng.choice(len(x), min(len(x), 65536), replace=False))
        read = [time.process_time(), col._read_stored(rows), time.process_time()]
        cast = [time.process_time(), read[1].astype(np.float32), time.process_time()]
        length = [time.process_time(), exact.whole_rows(read[1]), time.process_time()]
        sums = [time.process_time(), col._vectors.unchanged(rows, col._rows, read[1]), time.process_time()]
        print(f"\nexact index load: {len(rows):,} rows read in {1e3 * (read[2] - read[0]):.0f} CPU ms and cast to "
              f"float32 in {1e3 * (cast[2] - cast[0]):.0f} ms; their length check {1e3 * (length[2] - length[0]):.0f} ms, "
              f"checksums {1e3 * (sums[2] - sums[0]):.0f} ms")
        col.close()


if __name__ == "__main__":
    main()
