"""The independent check of `glimpse upgrade` (issue 13), on any folder of photos, through the CLI.

    nice -n 10 python benchmarks/upgrade_check.py PHOTOS [--limit 300] [--sample 100] [--queries 40]
    nice -n 10 python benchmarks/upgrade_check.py --skimage --sample 10 --batch-size 1   # scikit-image's photographs

1. index the photos (a copy of ``--limit`` of them, seeded) with lite0-minilm (in this process, as
   ``glimpse index`` does: the upgrade is what runs through the CLI);
2. ``glimpse upgrade lite2-minilm --backfill 0``: the sample, the map and the switch;
3. ``glimpse upgrade`` (the backfill), killed with SIGKILL at a random moment once it has
   committed a batch, twice; then ``glimpse upgrade`` again, which resumes and finishes;
4. at every stage (before, switched, after each kill, finished) a collection opened afresh
   searches with image queries, the photos themselves and an edited copy of each (the eval's
   seeded augmentations), and must find each photo first for the photo itself, and for each copy
   that the lite0-minilm collection finds first (those it misses cannot be held against the
   upgrade; the share of all copies found first must keep >= 95% of the lite0 collection's);
5. the finished vectors must equal those of a fresh lite2-minilm collection of the same photos
   (indexed in this process too), bit for bit (``--fresh-batch-size`` other than ``--batch-size`` checks that this does not
   depend on the batch size).

Every criterion prints PASS or FAIL; the exit status is 1 when one fails.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import glimpse
from glimpse.eval import augment as aug
from glimpse.upgrade.state import active

REPO = Path(__file__).resolve().parents[1]
OLD, NEW = "lite0-minilm", "lite2-minilm"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def photos_from(args) -> list[Path]:
    """The photos to index, copied into the work folder (a folder of their own for `glimpse index`)."""
    target = args.work / "photos"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if args.skimage:
        import skimage.data

        # cat is chelsea again, and motorcycle_right the same scene as motorcycle_left: each once
        for name in ("astronaut", "camera", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry",
                     "motorcycle_left", "retina", "rocket", "brick", "grass", "gravel", "moon",
                     "page", "text", "horse", "coins", "colorwheel"):
            picture = getattr(skimage.data, name, None)
            try:
                array = picture() if picture else None
            except Exception:  # some need a download (pooch) that is not there offline
                continue
            if array is not None and array.ndim in (2, 3):
                array = array[..., :3] if array.ndim == 3 else array
                Image.fromarray(np.asarray(array, np.uint8)).convert("RGB").save(target / f"{name}.png")
    else:
        found = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in SUFFIXES)
        chosen = np.random.default_rng(args.seed).permutation(len(found))[: args.limit]
        for i in sorted(chosen.tolist()):
            shutil.copy2(found[i], target / found[i].name)
    return sorted(target.iterdir())


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "glimpse.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def run(*args: str) -> None:
    process = cli(*args)
    _, err = process.communicate()
    if process.returncode:
        raise SystemExit(f"glimpse {' '.join(args)} failed ({process.returncode}): {err[-2000:]}")


def indexed(path: Path, photos: Path, encoder: str, batch_size: int) -> None:
    """A collection of ``photos`` made with ``encoder`` (what ``glimpse index`` runs, without another
    process's start and model load)."""
    with glimpse.open(path, encoder=encoder) as col:
        col.add([photos], batch_size=batch_size)


def done_of(path: Path) -> int | None:
    state = active(glimpse.open(path)._meta.get_meta())
    return None if state is None else int(state["done"])


def killed_backfill(path: Path, args, rng: np.random.Generator) -> str | None:
    """Resume the backfill and SIGKILL it inside a batch: after two more commits (the first pays for
    loading the model; the second times a batch), a random share of that batch's time later. None if
    it ended first."""
    process = cli("upgrade", "-c", str(path), "--batch-size", str(args.batch_size))
    commits, seen, last = [], done_of(path), time.perf_counter()
    while process.poll() is None and len(commits) < 2:
        done = done_of(path)
        if done != seen:
            commits.append(time.perf_counter() - last)
            seen, last = done, time.perf_counter()
        time.sleep(0.02)
    time.sleep(rng.uniform(0.1, 0.9) * (commits[-1] if commits else 0.0))
    if process.poll() is not None or done_of(path) is None:
        process.wait()
        return None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return f"killed with {done_of(path)} of the order done"


def queries(photos: list[Path], count: int, seed: int) -> list[tuple[Path, str, Image.Image]]:
    """(original, what, query image): the photo itself and one edited copy, for ``count`` photos."""
    out = []
    for i in np.random.default_rng(seed).permutation(len(photos))[:count].tolist():
        with Image.open(photos[i]) as im:
            im = im.convert("RGB")
        kind = aug.KINDS[i % len(aug.KINDS)]
        out += [(photos[i], "itself", im), (photos[i], kind, aug.augment(im, kind, aug.query_rng(seed, i, 0)))]
    return out


def searched(path: Path, asked: list[tuple[Path, str, Image.Image]]) -> np.ndarray:
    """For each query, whether it finds its own original first."""
    col = glimpse.open(path)  # a reader opened afresh: what a new process sees at this stage
    hits = []
    for original, _, image in asked:
        top = col.search(image=image, k=1)
        hits.append(bool(top) and Path(top[0].path).name == original.name)
    col.close()
    return np.array(hits)


def vectors_by_name(path: Path) -> tuple[list[str], np.ndarray]:
    col = glimpse.open(path)
    col._sync()
    records = sorted(col._meta.file_records().items(), key=lambda kv: Path(kv[0]).name)
    ids = np.array([record.item_id for _, record in records], np.int64)
    return [Path(p).name for p, _ in records], col._read_vectors(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, nargs="?",
                        default=REPO.parent / "shared" / "data" / "captioned-dev" / "images")
    parser.add_argument("--skimage", action="store_true", help="scikit-image's photographs instead of PHOTOS")
    parser.add_argument("--limit", type=int, default=300, help="photos copied from PHOTOS (seeded)")
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--queries", type=int, default=40, help="photos queried, each as itself and as a copy")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--fresh-batch-size", type=int, default=None,
                        help="the fresh lite2 index's (default: --batch-size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/glimpse-upgrade-check"))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    photos = photos_from(args)
    col, fresh = args.work / "col", args.work / "fresh"
    for folder in (col, fresh):
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{len(photos)} photos; sample {args.sample}; batch size {args.batch_size}")
    asked = queries(photos, args.queries, args.seed)
    failures = 0

    itself = np.array([what == "itself" for _, what, _ in asked])
    first_before: np.ndarray | None = None  # the queries the lite0 collection answers with their original first

    def stage(name: str, note: str = "") -> None:
        nonlocal failures, first_before
        hits = searched(col, asked)
        first_before = hits if first_before is None else first_before
        state = active(glimpse.open(col)._meta.get_meta())
        where = "finished" if state is None else f"{state['phase']}, {state['done']} of the order done"
        lost = [f"{original.name} ({what})" for (original, what, _), hit, held in zip(asked, hits, first_before | itself)
                if held and not hit]
        ok = not lost
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name} ({where}{'; ' + note if note else ''}; {clock()}): own original first for "
              f"{hits[itself].mean():.0%} of the photos, {hits[~itself].mean():.0%} of the copies "
              f"({first_before[~itself].mean():.0%} with {OLD})" + (f"; lost: {', '.join(lost[:6])}" if lost else ""))
        shares[name] = float(hits[~itself].mean())

    shares: dict[str, float] = {}
    started = time.perf_counter()

    def clock() -> str:
        """Wall and CPU time (this process and the CLI runs it waited for) since the start."""
        cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for f in ("ru_utime", "ru_stime"))
        return f"{time.perf_counter() - started:.0f} s, {cpu:.0f} s CPU"

    indexed(col, args.work / "photos", OLD, args.batch_size)
    stage(f"indexed with {OLD}")
    run("upgrade", NEW, "-c", str(col), "--sample", str(args.sample), "--backfill", "0",
        "--batch-size", str(args.batch_size))
    stage("switched (sample re-embedded, the rest mapped)")
    for kill in (1, 2):
        note = killed_backfill(col, args, rng)
        failures += note is None
        if note is None:
            print(f"FAIL backfill killed ({kill}): it ended before the kill (a larger --limit gives it more batches)")
            break
        stage(f"backfill killed ({kill})", note)
    if done_of(col) is not None:
        run("upgrade", "-c", str(col), "--batch-size", str(args.batch_size))
    stage("resumed and finished")
    base = shares[f"indexed with {OLD}"]
    ok = all(v >= 0.95 * base for v in shares.values())
    failures += not ok
    print(f"{'PASS' if ok else 'FAIL'} copies at every stage keep >= 95% of the {OLD} collection's top-1 "
          f"({base:.0%}): " + ", ".join(f"{v:.0%}" for v in shares.values()))

    indexed(fresh, args.work / "photos", NEW, args.fresh_batch_size or args.batch_size)
    names, final = vectors_by_name(col)
    fresh_names, expected = vectors_by_name(fresh)
    equal = names == fresh_names and np.array_equal(final, expected)
    failures += not equal
    difference = np.abs(final - expected).max() if final.shape == expected.shape else float("nan")
    print(f"{'PASS' if equal else 'FAIL'} final vectors equal a fresh {NEW} collection's (batch size "
          f"{args.fresh_batch_size or args.batch_size}): max |difference| {difference:.2e}; files left: "
          + ", ".join(sorted(p.name for p in col.iterdir() if p.name.startswith(("vectors", "upgrade-")))))
    print(clock())
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
