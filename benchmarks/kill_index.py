"""kill -9 of ``glimpse index`` at random moments, then a rerun: the same collection as one uninterrupted run?

    python benchmarks/kill_index.py [--images 300] [--trials 12] [--encoder lite0-minilm] [--seed 0]

Makes ``--images`` small distinct PNGs in a fresh temporary folder (every file this script writes
or damages lies under it), indexes them once without interruption (the reference, timed), then for
each trial starts ``glimpse index`` in its own process group, kills the group with SIGKILL at a
random moment of that span (seeded: the same moments on every run), and runs ``glimpse index``
again to the end. Each trial's collection must then hold the reference's items (the same files
with the same content hashes), no duplicate item or vector row, the same vectors within float16
(the largest difference is printed), answer a search, and pass ``glimpse repair`` with nothing
damaged. Prints one line per trial and exits 1 if any trial differs. Not a test: with the default
encoder each trial takes several seconds (tests/test_ingest_torture.py kills the hash encoder's runs).

Run here (defaults, seed 0; 2 cores at load 15-22): reference 73.5 s; 10 of 12 trials killed mid-run
(0 to 256 of 300 items committed then), 2 finished before their moment; every rerun: the same
files and items, identical vectors (largest difference 0), 300 found by a search, repair clean.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import glimpse

GLIMPSE = [sys.executable, "-m", "glimpse.cli"]


def make_images(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        rng = np.random.default_rng(i)
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((96, 72), Image.Resampling.BILINEAR).save(folder / f"img{i:04d}.png")


def index(photos: Path, col: Path, encoder: str, kill_after: float | None = None) -> tuple[float, bool]:
    """Seconds ``glimpse index`` ran, and whether it was killed."""
    started = time.perf_counter()
    proc = subprocess.Popen([*GLIMPSE, "index", str(photos), "-c", str(col), "--encoder", encoder],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this script started: the command and any child
        proc.communicate()
        return time.perf_counter() - started, True
    if proc.returncode != 0:
        raise SystemExit(f"glimpse index failed ({proc.returncode}): {err.decode()[-2000:]}")
    return time.perf_counter() - started, False


def content(folder: Path) -> tuple[dict[str, str], dict[str, np.ndarray], int]:
    """Files -> content hash, content hash -> stored vector, and the items searched by one query."""
    with glimpse.open(folder, create=False) as col:
        col._sync()  # the committed rows, read before any search
        files = {path: record.hash for path, record in col._meta.file_records().items()}
        ids = np.array(col.item_ids(), np.int64)
        hashes = {col._meta.item_files(int(i))[0].hash: int(i) for i in ids}
        if len(hashes) != len(ids):
            raise AssertionError(f"{len(ids) - len(hashes)} duplicate items")
        rows = [row for _, row in col._meta.snapshot()[1]]
        if len(set(rows)) != len(rows):
            raise AssertionError("two items share a vector row")
        vectors = dict(zip(hashes, col._read_vectors(np.array(list(hashes.values()), np.int64))))
        found = len(col.search(text="a colourful pattern", k=len(ids)))
    return files, vectors, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--encoder", default="lite0-minilm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="glimpse-kill-"))
    try:
        photos = work / "photos"
        make_images(photos, args.images)
        seconds, _ = index(photos, work / "reference", args.encoder)
        files, vectors, found = content(work / "reference")
        print(f"reference: {len(files)} files, {len(vectors)} items, search found {found}, {seconds:.1f} s "
              f"({args.encoder}); killing within that span")
        rng = random.Random(args.seed)
        failed = 0
        for trial in range(args.trials):
            col = work / f"trial{trial}"
            moment = rng.uniform(0.05, 1.0) * seconds
            _, killed = index(photos, col, args.encoder, kill_after=moment)
            with glimpse.open(col, encoder=args.encoder) as partial:  # opens after any kill
                before = len(partial)
            index(photos, col, args.encoder)
            got_files, got_vectors, got_found = content(col)
            repair = subprocess.run([*GLIMPSE, "repair", "-c", str(col)], capture_output=True, text=True)
            worst = max((float(np.abs(got_vectors[h] - v).max()) for h, v in vectors.items() if h in got_vectors),
                        default=0.0)
            same = got_files == files and got_vectors.keys() == vectors.keys() and got_found == found
            ok = same and worst <= 2.0**-10 and repair.returncode == 0 and " 0 damaged" in repair.stdout
            failed += not ok
            print(f"trial {trial:2d}: kill at {moment:5.1f} s ({'killed' if killed else 'finished first'}, "
                  f"{before} items then), rerun: {'same' if same else 'DIFFERENT'} files and items, "
                  f"largest vector difference {worst:.2e}, search {got_found}, repair "
                  f"{'clean' if repair.returncode == 0 else repair.stdout.strip()[-200:]}: {'ok' if ok else 'FAILED'}")
        print(f"{args.trials - failed} of {args.trials} trials ok")
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
