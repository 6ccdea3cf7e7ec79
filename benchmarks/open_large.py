"""Opening a large collection: a fresh process's first search (import, open, the live ids, the codes
loaded, one query), as now against as before, timed in the same rounds.

    python benchmarks/open_large.py [--rows 1000000] [--dim 256] [--rounds 5] [--collection DIR]

Now: the live ids come from the snapshot kept beside the database and the commits' log since it, and
the codes file is checked as FAISS parses it. Before (the same code, two parts swapped back in the
child): every item's id and row read from SQLite, and the codes file read whole, checked, then
parsed from a copy. Without ``--collection`` it builds ``--rows`` random unit vectors (precomputed,
the default codes) in a temporary folder, not timed (about 2 min per million rows here). The query
is a stored row, so the plan is a typical one. Printed apart: a write's end keeping the snapshot (as an
import's does), and a first open that finds none kept and writes it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import glimpse  # noqa: E402
from follow import collection_of, collection_options  # noqa: E402

CHILD = """
import sys, time
start = time.perf_counter()
import io, zlib
from pathlib import Path
import numpy as np
import glimpse
from glimpse.backends import binary, ivfcodes
from glimpse.storage import metadata
path, query, way = sys.argv[1], np.load(sys.argv[2]), sys.argv[3]
if way == "before":
    metadata.Metadata._kept_snapshot = lambda self: None
    metadata.KEPT_FROM = float("inf")
    def read_whole(path, parse):
        data = Path(path).read_bytes()
        if data[-8:-4] == binary.CODES_SEAL and zlib.crc32(memoryview(data)[:-8]) != int.from_bytes(data[-4:], "little"):
            return None
        return parse(io.BytesIO(data))
    binary.read_codes = ivfcodes.read_codes = read_whole
col = glimpse.open(path)
col.search(vector=query, k=10)
print(time.perf_counter() - start)
"""


def first_search(path: Path, query: Path, way: str) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(query), way], check=True,
                          capture_output=True, text=True, cwd=REPO)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    collection_options(parser)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = collection_of(args, tmp)
        with glimpse.open(path) as col:
            col._sync()
            items = len(col._live)
            query = Path(tmp) / "query.npy"
            np.save(query, col._item_vector(int(col._live[len(col._live) // 2])))
            for kept in path.glob("items-*.npz"):  # derived: a write's end keeps it again (as the build's did)
                kept.unlink()
            start = time.perf_counter()
            col._keep_items()
            keep = time.perf_counter() - start
        print(f"{items:,} items; a write's end keeping the snapshot: {keep:.2f} s")
        for kept in path.glob("items-*.npz"):  # as a collection of an older glimpse: the first open writes it
            kept.unlink()
        print(f"first open with none kept (reads SQLite, keeps it): {first_search(path, query, 'now'):.2f} s")
        times: dict[str, list[float]] = {"now": [], "before": []}
        for round_ in range(args.rounds):
            for way in ("now", "before") if round_ % 2 == 0 else ("before", "now"):
                times[way].append(first_search(path, query, way))
        now, before = (statistics.median(times[way]) for way in ("now", "before"))
        print(f"first search in a fresh process, median of {args.rounds} (wall s): now {now:.2f}, before {before:.2f}, "
              f"ratio {now / before:.2f}")
        print("  now:    " + ", ".join(f"{t:.2f}" for t in times["now"]))
        print("  before: " + ", ".join(f"{t:.2f}" for t in times["before"]))


if __name__ == "__main__":
    main()
