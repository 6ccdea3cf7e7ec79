"""Following another process's commits: a process whose index is loaded (a server, a search loop)
brings it up to date after another process adds rows, then removes them, from the commits' log,
against reading the whole state again (a snapshot of every item and a diff of every id, as each
refresh did before the log), timed in the same rounds.

    python benchmarks/follow.py [--rows 1000000] [--dim 256] [--change 1000] [--rounds 3]
                                [--collection DIR]

Without ``--collection`` it builds a collection of ``--rows`` random unit vectors (precomputed, the
default codes) in a temporary folder, not timed (about 2 min per million rows here). Each round a
writer process adds ``--change`` rows, then removes them; after each commit one follower
refreshes by the log, and a second one, made to read everything again, as before. The writer's
own times (its open of the collection included) are printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import glimpse  # noqa: E402

WRITER = """
import sys, time, numpy as np, glimpse
path, step, round_, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
col = glimpse.open(path)
keys = [f"follow-{round_}-{i}" for i in range(n)]
start = time.perf_counter()
if step == "add":
    vectors = np.random.default_rng(int(round_)).standard_normal((n, col.encoder.dim)).astype(np.float32)
    col.add_vectors(vectors, keys)
else:
    col.remove(keys)
print(time.perf_counter() - start)
"""


def build(path: Path, rows: int, dim: int) -> None:
    col = glimpse.open(path, encoder="precomputed", dim=dim)
    rng = np.random.default_rng(0)
    for start in range(0, rows, 100_000):
        count = min(100_000, rows - start)
        vectors = rng.standard_normal((count, dim)).astype(np.float32)
        col.add_vectors(vectors, [f"row/{start + i}" for i in range(count)])
    col.close()


def collection_options(parser: argparse.ArgumentParser) -> None:
    """The options that name the collection measured, or the random one to build."""
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--collection", type=Path, help="an existing collection of precomputed vectors")


@contextlib.contextmanager
def written_collection(doc: str, write: str) -> Iterator[tuple[argparse.Namespace, Path]]:
    """The command line (``doc`` its help): the collection's options, the rows each ``write`` adds, then
    removes, and the rounds; and the collection they name (or build, in a temporary folder)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    collection_options(parser)
    parser.add_argument("--change", type=int, default=1000, help=f"rows each {write} adds, then removes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        yield args, collection_of(args, tmp)


def collection_of(args: argparse.Namespace, tmp: str) -> Path:
    """``--collection``, or ``--rows`` random ``--dim``-d unit vectors built in ``tmp`` (not timed)."""
    if args.collection is not None:
        return args.collection
    path = Path(tmp) / "col"
    print(f"building {args.rows:,} random {args.dim}-d vectors in {path} (not timed)", flush=True)
    build(path, args.rows, args.dim)
    return path


def refreshed(col, everything: bool) -> float:
    """Seconds ``col`` takes to bring its loaded index up to the last commit; ``everything``: reading
    every item and diffing every id, as without the log."""
    if everything:
        col._seen = -1  # nothing seen: a whole snapshot, then a diff of the index's ids with the live ids
    start = time.perf_counter()
    col._ensure_index()
    return time.perf_counter() - start


def main() -> None:
    with written_collection(__doc__, "commit") as (args, path):
        follower, everything = glimpse.open(path), glimpse.open(path)
        for col in (follower, everything):
            col._ensure_index()
        times: dict[str, list[float]] = {}
        for round_ in range(args.rounds):
            for step in ("add", "remove"):
                done = subprocess.run([sys.executable, "-c", WRITER, str(path), step, str(round_), str(args.change)],
                                      check=True, capture_output=True, text=True, cwd=REPO)
                times.setdefault(f"writer's {step}", []).append(float(done.stdout.split()[-1]))
                order = [(f"{step}: by the log", follower, False), (f"{step}: everything again", everything, True)]
                for name, col, whole in order[:: 1 if round_ % 2 else -1]:  # the first reads the new rows from disk
                    times.setdefault(name, []).append(refreshed(col, whole))
                assert len(follower) == len(everything)
        print(f"{len(follower):,} items, {args.change:,} rows a commit, median of {args.rounds} rounds (wall s)")
        for name, values in times.items():
            print(f"  {name:<26} {statistics.median(values):8.3f}")
        for step, after in (("add", "an add"), ("remove", "a removal")):
            ratio = statistics.median(times[f"{step}: everything again"]) / statistics.median(times[f"{step}: by the log"])
            print(f"  after {after}: the log is {ratio:.1f}x faster than reading everything again")


if __name__ == "__main__":
    main()
