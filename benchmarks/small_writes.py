"""Small writes to a large collection with codes: a process adds ``--change`` rows (then removes them), and
a fresh process then searches once; as now (the codes' changes saved as a delta beside the full file)
against as before (the full codes file written again after an add; a removal not saved, so every later
process removes those rows again), timed in the same rounds.

    python benchmarks/small_writes.py [--rows 1000000] [--dim 256] [--change 1000] [--rounds 3]
                                      [--collection DIR]

Without ``--collection`` it builds ``--rows`` random unit vectors (precomputed, the default codes) in a
temporary folder, not timed (about 2 min per million rows here). The writer's time is its
``add_vectors`` or ``remove`` call alone (its index loaded first); the search's is a fresh process's
open and first query (a stored row), wall seconds.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from follow import written_collection  # noqa: E402

CHILD = """
import sys, time
start = time.perf_counter()
import numpy as np
import glimpse
from glimpse.backends.ivfcodes import IVFCodesIndex
path, way, step, round_, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
if way == "before":
    IVFCodesIndex._delta_serves = lambda self, directory: False
    if step == "remove":
        IVFCodesIndex.persist = lambda self, directory, generation: None
col = glimpse.open(path)
keys = [f"small-{way}-{round_}-{i}" for i in range(n)]
if step == "search":
    col._sync()
    col.search(like=int(col._live[len(col._live) // 2]), k=10)
    print(time.perf_counter() - start)
    raise SystemExit
col._ensure_index()
start = time.perf_counter()
if step == "add":
    col.add_vectors(np.random.default_rng(int(round_)).standard_normal((n, col.encoder.dim)).astype(np.float32), keys)
else:
    col.remove(keys)
print(time.perf_counter() - start)
"""


def timed(path: Path, way: str, step: str, round_: int, change: int) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), way, step, str(round_), str(change)], check=True,
                          capture_output=True, text=True, cwd=REPO)
    return float(done.stdout.split()[-1])


def main() -> None:
    with written_collection(__doc__, "write") as (args, path):
        times: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for way in ("now", "before") if round_ % 2 == 0 else ("before", "now"):
                for step in ("add", "search after the add", "remove", "search after the removal"):
                    kind = "search" if step.startswith("search") else step
                    times.setdefault((step, way), []).append(timed(path, way, kind, round_, args.change))
        print(f"{args.change:,} rows a write, median of {args.rounds} rounds (wall s)")
        print("| step | now | before | ratio |\n|---|---|---|---|")
        for step in ("add", "search after the add", "remove", "search after the removal"):
            now, before = (statistics.median(times[step, way]) for way in ("now", "before"))
            print(f"| {step} | {now:.2f} | {before:.2f} | {now / before:.2f} |")


if __name__ == "__main__":
    main()
