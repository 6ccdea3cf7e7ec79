"""Cold start: a text and an image search in a fresh process, against ``import torch``.

    python benchmarks/cold_start.py [--runs 7] [--encoders lite0-minilm,lite1-minilm,lite2-minilm]
                                    [--images ../shared/data/captioned-dev/images] [--clock wall|cpu]

For each encoder it indexes a few images into a temporary collection (not timed), then
times ``glimpse search "a cat" -c COLLECTION`` and ``glimpse search --image PHOTO -c COLLECTION``
(a photo not in the collection, so the image model runs) as new subprocesses, several times,
next to ``python -c "import torch"`` measured in the same rounds (so machine load hits all
alike). ``--clock cpu`` counts the children's user + sys CPU time, which load moves less.
Goal (issue #12): the default encoder's cold text search <= 1.5x the torch import.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "captioned-dev" / "images"
GOAL = 1.5


def glimpse_command() -> list[str]:
    """The installed ``glimpse`` script (what users run), else the module."""
    script = Path(sys.executable).parent / "glimpse"
    return [str(script)] if script.exists() else [sys.executable, "-m", "glimpse.cli"]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str], clock: str = "wall") -> float:
    """Seconds one run of ``argv`` took: wall time, or its CPU time (user + sys)."""
    now = time.perf_counter if clock == "wall" else cpu
    start = now()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return now() - start


def build_collection(where: Path, encoder: str, images: list[Path], env: dict[str, str]) -> Path:
    folder = where / f"{encoder}-images"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    collection = where / encoder
    subprocess.run([*glimpse_command(), "index", str(folder), "-c", str(collection), "--encoder", encoder],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return collection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="timed rounds; medians are reported")
    parser.add_argument("--encoders", default="lite0-minilm,lite1-minilm,lite2-minilm")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="a folder of images to index")
    parser.add_argument("--count", type=int, default=8, help="images per collection")
    parser.add_argument("--query", default="a cat")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    images = sorted(p for p in args.images.glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[: args.count + 1]
    images, photo = images[:-1], images[-1]  # the query photo is not in the collection
    if not images:
        raise SystemExit(f"no images in {args.images}: pass --images FOLDER")
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    with tempfile.TemporaryDirectory() as tmp:
        collections = {e: build_collection(Path(tmp), e, images, env) for e in encoders}
        commands = {"import torch": [sys.executable, "-c", "import torch"]}
        for e, c in collections.items():
            commands[f"glimpse search {args.query!r} ({e})"] = [*glimpse_command(), "search", args.query, "-c", str(c)]
            commands[f"glimpse search --image {photo.name} ({e})"] = [
                *glimpse_command(), "search", "--image", str(photo), "-c", str(c)]
        for argv in commands.values():  # one untimed round: the page cache holds every file afterwards
            timed(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so a burst of load hits every command alike
            for name, argv in commands.items():
                times[name].append(timed(argv, env, args.clock))

    load = os.getloadavg()
    torch_s = statistics.median(times.pop("import torch"))
    print(f"{args.runs} runs each, median {args.clock} time; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'command':<52}{'seconds':>9}{'x torch':>9}")
    print(f"{'python -c ' + repr('import torch'):<52}{torch_s:>9.2f}{1.0:>9.2f}")
    for name, samples in times.items():
        s = statistics.median(samples)
        goal = "" if "--image" in name else f"  {'goal met' if s / torch_s <= GOAL else 'over the goal'} (<= {GOAL}x)"
        print(f"{name:<52}{s:>9.2f}{s / torch_s:>9.2f}{goal}")


if __name__ == "__main__":
    main()
