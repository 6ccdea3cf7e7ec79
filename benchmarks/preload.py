"""What preloading the vector file (``Collection.preload``, done by ``glimpse serve`` at start) saves a search.

    python benchmarks/preload.py --collection DIR [--queries 200] [--rounds 1]

Per query, paired, in one process: the query runs once with the vector file's memory map emptied (``MADV_DONTNEED``:
the pages stay in the page cache, the map forgets them, as in a process that has just opened the collection) and
once with the map populated (``MADV_POPULATE_READ``, what the preload does), in alternating order; CPU time of the
query alone (the map's state is set outside the clock). A fresh process lies between the two: each row it has
read once is mapped from then on.

Queries: the image and caption queries of ``benchmarks/search.py --models`` (other photos of captioned-dev and their
captions) where ``--data`` holds captioned-dev and the collection has their dimension, else ``--queries`` rows of the
collection, each with Gaussian noise (cosine about 0.9 to its row), as "more like this" queries.
Linux only (the two madvise calls).
"""

from __future__ import annotations

import argparse
import mmap
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search as search_benchmark  # noqa: E402

import glimpse  # noqa: E402
from glimpse.storage.vectors import POPULATE_READ  # noqa: E402


def queries_for(col, args) -> tuple[np.ndarray, dict[str, slice]]:
    """(unit queries, their kinds' rows)."""
    if (args.data / "captions.tsv").exists():
        ns = argparse.Namespace(data=args.data, cache=search_benchmark.default_cache(), queries=args.queries,
                                real=100_000, text_queries=args.queries // 4)
        _, img, txt, _ = search_benchmark.isotropic_sources(ns)
        if img.shape[1] == col.encoder.dim:
            queries = np.vstack([img, txt]).astype(np.float32)
            return (queries / np.linalg.norm(queries, axis=1, keepdims=True),
                    {"img": slice(0, len(img)), "txt": slice(len(img), len(queries))})
    rng = np.random.default_rng(5)
    rows = np.sort(rng.choice(len(col), size=min(args.queries, len(col)), replace=False))
    base = col._vectors.read(np.array(col.item_ids())[rows], col._rows)
    noisy = base + 0.48 / np.sqrt(base.shape[1]) * rng.standard_normal(base.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True), {"rows": slice(0, len(noisy))}


def set_map(maps: list[mmap.mmap], state: str) -> None:
    for mapped in maps:
        if state == "emptied":
            mapped.madvise(mmap.MADV_DONTNEED)
        else:
            for start in range(0, len(mapped), 1 << 26):
                mapped.madvise(POPULATE_READ, start, min(1 << 26, len(mapped) - start))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=search_benchmark.REPO.parent / "shared" / "data" / "captioned-dev")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args(argv)
    faiss.omp_set_num_threads(1)
    col = glimpse.open(args.collection)
    index = col._ensure_index()
    queries, kinds = queries_for(col, args)
    t = time.perf_counter()
    loaded = col.preload().result()
    if not loaded:
        raise SystemExit("this system cannot populate a memory map (Linux 5.14 or later), or the file is over half "
                         "of its memory: nothing to compare")
    print(f"{args.collection}: {len(col):,} items, {index.describe()}; preload mapped {loaded / 1e9:.2f} GB in "
          f"{time.perf_counter() - t:.2f} s; {len(queries)} queries x {args.rounds} rounds, batch 1, one thread")
    maps = col._vectors.mapped(col._rows)
    seconds = {"emptied": [], "populated": []}
    for _ in range(args.rounds):
        for row, query in enumerate(queries):
            for state in ("emptied", "populated") if row % 2 else ("populated", "emptied"):
                set_map(maps, state)
                t = time.process_time()
                index.search(query[None], 10)
                seconds[state].append(time.process_time() - t)
    parts = {kind: np.concatenate([np.arange(len(queries))[part] + r * len(queries) for r in range(args.rounds)])
             for kind, part in kinds.items()} | {"all": np.arange(len(queries) * args.rounds)}
    print("| vector file's map | " + " | ".join(f"p50 ms {kind} | mean ms {kind}" for kind in parts) + " |")
    print("|---|" + "---|---|" * len(parts))
    for state, spent in seconds.items():
        spent = np.array(spent) * 1e3
        print(f"| {state} | " + " | ".join(f"{np.median(spent[at]):.2f} | {spent[at].mean():.2f}" for at in parts.values())
              + " |")
    ratio = np.median(np.array(seconds["emptied"])) / np.median(np.array(seconds["populated"]))
    print(f"emptied / populated, p50 over all queries: {ratio:.2f}x")
    col.close()


if __name__ == "__main__":
    main()
