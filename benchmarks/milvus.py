"""The same collection on the local backend, Milvus Lite and a Milvus server, side by side.

    python benchmarks/milvus.py [--images 100000] [--dim 512] [--queries 200] [--codes sign]

What runs, in one process (the servers in their own):

1. ``--images`` synthetic clustered vectors (precomputed: no model), unit length, and
   ``--queries`` near-copies of random database vectors; the exact top-10 of each by numpy.
2. For each target -- a local directory, ``milvus-lite:///...db`` (embedded), and
   ``milvus://`` on the registry's Milvus 2.3 server when ``milvus-server`` starts here --
   ``add_vectors`` of everything (ingest rows/s: vector file, SQLite and the backend), then
   ``search(vector=q, k=10)`` one query at a time: p50/p99 latency and recall@10 against
   the exact top-10. First exact float search, then binary codes (``--codes``, 256 bits,
   Hamming scan, re-rank of k x 30 candidates) where the target has them (Milvus 2.3 allows
   one vector field: float only).
3. On the server, the same searches with consistency "Bounded" (a search no longer waits for the
   server's time tick, and may miss the last second's writes), on FLAT and then on Milvus's
   approximate indexes over the same rows (``?index=hnsw``, ``?index=ivf``: the index rebuilt in
   place, with the time to build it).
4. Path globs (``--filters``, run alone): search p50 with a glob Milvus takes as a ``like``
   expression against globs with ``[...]``, which glimpse matches in Python on the paths of
   the rows a superset ``like`` lets through (the matches then go to Milvus as allowed ids).
5. Recall of the server's approximate indexes on hard queries (``--hard``, run alone): HNSW and
   IVF_FLAT against FLAT on the near-copies, on heavy edits (four times the noise) and on
   text-like queries (the mean of four random images: far from everything, many near ties).
6. Images with several files (``--copies``, run alone, Milvus Lite): the ingest with and without
   the check that finds them (one query of the file rows by image per batch written), then a
   share of the images given a second file (a row in ``NAME_copies``), and the p50 of a search
   under a prefix that 1% of the image rows pass (the copies' rows queried too, and matching the
   images already found) and under one that only the second files pass (every such image joins
   the search expression by id): what the filter by any file costs, by the share of copies.
7. Two ingest workers against one, on the server (Milvus Lite over loopback when the 2.3 server
   does not start): two processes each ``add_vectors`` half the rows into one collection at
   once, against one process adding them all (``--workers``, run alone: only this, with the
   local ingest as the baseline, and the CPU seconds the workers and the server spent, which
   say whether the machine's cores are what limits it).

On two machines (the workers as they are meant to run), against a Milvus server both reach::

    python benchmarks/milvus.py --worker 0/1 --uri milvus://HOST:19530/bench_one   # one worker, for the baseline
    python benchmarks/milvus.py --worker 0/2 --uri milvus://HOST:19530/bench_two   # on machine A,
    python benchmarks/milvus.py --worker 1/2 --uri milvus://HOST:19530/bench_two   # and on B, started together

Each adds its share of the same seeded vectors and prints its rows/s and wall time; the two
workers' rate is the rows of both over the longer wall time, and ``glimpse info -c URI`` must
count every row once.

Prints one table: each figure and the ratio Milvus/local (rows/s: higher is better; latency:
lower is better). Run it with ``nice -n 10`` on a shared machine and say the load.
"""

from __future__ import annotations

import argparse
import atexit
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import glimpse  # noqa: E402
from glimpse.milvus.collection import MilvusCollection  # noqa: E402
from glimpse.milvus.local import ServerUnavailable, lite_server, milvus_server, stop  # noqa: E402


def dataset(images: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, queries, exact top-10 ids): clusters of near neighbours, as photo collections have."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(images // 50, 1), dim)).astype(np.float32)
    vectors = centers[rng.integers(0, len(centers), images)] + 0.6 * rng.standard_normal((images, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    asked = vectors[rng.choice(images, queries, replace=False)] + 0.05 * rng.standard_normal((queries, dim)).astype(np.float32)
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    stored = vectors.astype(np.float16).astype(np.float32)  # what every target stores
    exact = np.argsort(-(asked @ stored.T), axis=1)[:, :10]
    return vectors, asked, exact


def hard_queries(vectors: np.ndarray, count: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Queries harder for an approximate index than near-copies (see the module's point 5)."""
    rng = np.random.default_rng(seed)
    dim = vectors.shape[1]
    sets = {"heavy edits": vectors[rng.choice(len(vectors), count)] + 0.2 * rng.standard_normal((count, dim)),
            "text-like": vectors[rng.integers(0, len(vectors), (count, 4))].mean(axis=1)
            + 0.02 * rng.standard_normal((count, dim))}
    return {name: (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32) for name, q in sets.items()}


def top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The exact top-10 of each query among ``vectors`` as every target stores them (float16)."""
    return np.argsort(-(queries @ vectors.astype(np.float16).astype(np.float32).T), axis=1)[:, :10]


def keys(count: int, start: int = 0) -> list[str]:
    return [f"img/{i:07d}" for i in range(start, start + count)]


def ingest(location: str, vectors: np.ndarray, start: int = 0) -> float:
    """Rows/s of add_vectors of ``vectors`` (keys from ``start``) into ``location``."""
    began = time.perf_counter()
    with glimpse.open(location, "precomputed", dim=vectors.shape[1]) as col:
        col.add_vectors(vectors, keys(len(vectors), start))
    return len(vectors) / (time.perf_counter() - began)


def settle(location: str) -> float:
    """Seconds until Milvus has sealed and indexed every row of ``location`` (its index as the URI says)."""
    began = time.perf_counter()
    with glimpse.open(location) as col:
        if isinstance(col, MilvusCollection):
            col._ensure_index().settle()
    return time.perf_counter() - began


def search(location: str, queries: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """p50/p99 (ms) and recall@10 of single-query searches (after one warm-up query)."""
    latencies, found = [], []
    with glimpse.open(location) as col:
        col.search(vector=queries[0], k=10)
        for q in queries:
            began = time.perf_counter()
            hits = col.search(vector=q, k=10)
            latencies.append((time.perf_counter() - began) * 1000)
            found.append([int(h.path.split("/")[1]) for h in hits])
    recall = np.mean([len(set(f) & set(e.tolist())) / 10 for f, e in zip(found, exact)])
    return {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99)), "recall": float(recall)}


#: Globs over the keys ``img/0000000`` .. and where they are matched, at 100,000 rows.
GLOBS = (("img/001*", "Milvus (like); 10% match"), ("img/001[0-4]*", "Python, on 10% of the rows; 5% match"),
         ("img/00[0-9][0-4]*", "Python, on every row; 50% match"))


def filtered(location: str, queries: np.ndarray) -> dict[str, float]:
    """p50 (ms) of a k=10 search under each of :data:`GLOBS` (after one warm-up search each)."""
    from glimpse.query.filters import Filter

    figures = {}
    with glimpse.open(location) as col:
        for glob, _ in GLOBS:
            col.search(vector=queries[0], k=10, filters=Filter(path_glob=glob))
            latencies = []
            for q in queries:
                began = time.perf_counter()
                hits = col.search(vector=q, k=10, filters=Filter(path_glob=glob))
                latencies.append((time.perf_counter() - began) * 1000)
            assert len(hits) == 10
            figures[glob] = float(np.percentile(latencies, 50))
    return figures


def use_codes(location: str, codes: str) -> float:
    """Seconds to fit the binarizer and (on Milvus) write every row again with its code."""
    began = time.perf_counter()
    with glimpse.open(location) as col:
        col.use_codes(codes, bits=256, scoring="hamming")
        col.search(vector=np.ones(col.encoder.dim, np.float32), k=1)  # the codes index, loaded or pushed
    return time.perf_counter() - began


def _worker(location: str, home: str, vectors: np.ndarray, start: int, out) -> None:
    os.environ["GLIMPSE_HOME"] = home
    began, spent = time.time(), sched([os.getpid()])  # after the imports: as on a machine of its own
    ingest(location, vectors, start)
    out.put((began, time.time(), sched([os.getpid()]) - spent))


def workers(location: str, vectors: np.ndarray, count: int, scratch: Path, server: int) -> dict[str, float]:
    """``count`` processes, each adding its share of ``vectors`` to ``location`` at once: rows/s
    (from the first worker's start to the last one's end, each timed once it has imported
    glimpse), and the seconds the workers and the server (process group ``server``) ran on a
    core and waited for one."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    shares = np.array_split(np.arange(len(vectors)), count)
    processes = [context.Process(target=_worker, args=(location, str(scratch / f"worker{n}"), vectors[share],
                                                       int(share[0]), out)) for n, share in enumerate(shares)]
    served = sched(group(server))
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    assert all(p.exitcode == 0 for p in processes), "a worker failed"
    served = sched(group(server)) - served
    timed = [out.get() for _ in processes]
    wall = max(t[1] for t in timed) - min(t[0] for t in timed)
    with glimpse.open(location) as col:
        assert len(col) == len(vectors), f"{len(col)} rows in Milvus for {len(vectors)} vectors"
    workers_s = sum((t[2] for t in timed), np.zeros(2))
    return {"rows/s": len(vectors) / wall, "wall s": wall, "workers cpu s": workers_s[0],
            "workers wait s": workers_s[1], "server cpu s": served[0], "server wait s": served[1]}


def group(pgrp: int) -> list[int]:
    """The processes of process group ``pgrp``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgrp:
                found.append(int(stat.parent.name))
        except OSError:
            continue  # ended meanwhile
    return found


def sched(pids: list[int]) -> np.ndarray:
    """(seconds on a core, seconds runnable but waiting for one) of ``pids`` so far: the first
    of every thread (/proc/PID/stat), the second of the threads still running (their schedstat:
    a lower bound)."""
    total = np.zeros(2)
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total[0] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
            for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
                total[1] += int(stat.read_text().split()[1]) / 1e9
        except OSError:
            continue  # ended meanwhile
    return total


def one_worker(uri: str, shard: str, images: int, dim: int) -> None:
    """This machine's share (shard ``i/n``) of the seeded vectors into ``uri``, for the run on two machines."""
    index, count = (int(part) for part in shard.split("/"))
    vectors = dataset(images, dim, 1)[0]
    share = np.array_split(np.arange(images), count)[index]
    began, spent = time.perf_counter(), sched([os.getpid()])
    ingest(uri, vectors[share], int(share[0]))
    wall, (cpu, wait) = time.perf_counter() - began, sched([os.getpid()]) - spent
    print(f"worker {shard}: {len(share):,} rows in {wall:.1f} s: {len(share) / wall:,.0f} rows/s, {cpu:.1f} s on a "
          f"core and {wait:.1f} s waiting for one here; load: {os.getloadavg()[0]:.1f} (1-min)")


def row(name: str, figures: dict[str, float], base: dict[str, float] | None) -> str:
    cells = [name]
    for key, fmt in (("rows/s", "{:,.0f}"), ("p50", "{:.2f}"), ("p99", "{:.2f}"), ("recall", "{:.3f}")):
        value = figures.get(key)
        if value is None:
            cells.append("n/a")
            continue
        ratio = f" ({value / base[key]:.2f}x)" if base and base.get(key) and name != "local" else ""
        cells.append(fmt.format(value) + ratio)
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--codes", default="sign", help="binarizer for the code rows (learned, itq, sign)")
    parser.add_argument("--no-server", action="store_true", help="skip the Milvus 2.3 server")
    parser.add_argument("--filters", action="store_true", help="only the path globs, on local and Milvus Lite")
    parser.add_argument("--hard", action="store_true", help="only the server indexes' recall on hard queries")
    parser.add_argument("--server-indexes", default="flat,hnsw,ivf", help="Milvus indexes to measure on the server")
    parser.add_argument("--workers", action="store_true", help="only ingest: local, then one and two workers on Milvus")
    parser.add_argument("--copies", action="store_true", help="only images with several files, on Milvus Lite")
    parser.add_argument("--worker", metavar="I/N", help="add share I of N into --uri (one machine of several)")
    parser.add_argument("--uri", help="the milvus:// collection that --worker writes")
    args = parser.parse_args()
    if args.worker:
        if not args.uri:
            parser.error("--worker needs --uri milvus://HOST:19530/NAME")
        one_worker(args.uri, args.worker, args.images, args.dim)
        return
    vectors, queries, exact = dataset(args.images, args.dim, args.queries)
    scratch = Path(tempfile.mkdtemp(prefix="glimpse-milvus-bench-"))
    atexit.register(shutil.rmtree, scratch, True)  # gigabytes at 100,000 rows
    os.environ["GLIMPSE_HOME"] = str(scratch / "home")
    started = []
    targets = {"local": str(scratch / "local"), "Milvus Lite": f"milvus-lite://{scratch}/bench.db"}
    if args.filters:
        print_filters(targets, vectors, queries)
        return
    if args.workers:
        print_workers(scratch, vectors, args.no_server)
        return
    if args.copies:
        print_copies(scratch, vectors, queries)
        return
    if args.hard:
        print_hard(scratch, vectors, {"near-copies": (queries, exact), **{
            name: (q, top10(vectors, q)) for name, q in hard_queries(vectors, len(queries)).items()}},
            args.server_indexes.split(","))
        return
    try:
        if not args.no_server:
            try:
                process, address = milvus_server(scratch / "server")
                started.append(process)
                targets["Milvus 2.3 server"] = f"milvus://{address}/bench"
            except ServerUnavailable as exc:
                print(f"(no server: {exc})")
        results: dict[str, dict[str, float]] = {}
        for name, location in targets.items():
            rows = ingest(location, vectors)
            settle(location)  # sealed and indexed: searches as a collection at rest
            results[name] = {"rows/s": rows, **search(location, queries, exact)}
            print(name, results[name], flush=True)
        index_results: dict[str, dict[str, float]] = {}
        if "Milvus 2.3 server" in targets:
            for index_kind in args.server_indexes.split(","):
                location = f"{targets['Milvus 2.3 server']}?index={index_kind}&consistency=bounded"
                build = settle(location)  # opening with another ?index= rebuilds it
                index_results[index_kind] = {**search(location, queries, exact), "build s": build}
                print("server", index_kind, index_results[index_kind], flush=True)
        code_results: dict[str, dict[str, float]] = {}
        for name, location in targets.items():
            if name == "Milvus 2.3 server":
                continue  # one vector field: the float index above is its only layout
            build = use_codes(location, args.codes)
            code_results[name] = {**search(location, queries, exact), "build s": build}
            print(name, "codes", code_results[name], flush=True)
        if "Milvus 2.3 server" in targets:
            server, kind, pgrp = targets["Milvus 2.3 server"].rsplit("/", 1)[0], "Milvus 2.3 server", started[0].pid
        else:
            process, address = lite_server(scratch / "workers.db")
            started.append(process)
            server, kind, pgrp = f"milvus://{address}", "Milvus Lite over loopback", process.pid
        one = workers(f"{server}/one", vectors, 1, scratch / "one", pgrp)["rows/s"]
        two = workers(f"{server}/two", vectors, 2, scratch / "two", pgrp)["rows/s"]
    finally:
        for process in started:
            stop(process)
    print(f"\n{args.images:,} vectors, {args.dim}-d, {args.queries} queries, k=10; load: {os.getloadavg()[0]:.1f} (1-min)")
    print("| target | ingest rows/s | search p50 ms | search p99 ms | recall@10 |")
    print("|---|---|---|---|---|")
    for name, figures in results.items():
        print(row(f"{name}, exact float", figures, results["local"]) if name != "local" else row("local, exact float", figures, None))
    for name, figures in index_results.items():
        print(row(f"Milvus 2.3 server, {name}, bounded (build {figures['build s']:.0f} s)", figures, results["local"]))
    for name, figures in code_results.items():
        print(row(f"{name}, {args.codes} codes 256 bits + re-rank", figures, code_results["local"] if name != "local" else None))
    print(row(f"{kind}, one ingest worker", {"rows/s": one}, results["local"]))
    print(row(f"{kind}, two ingest workers at once ({two / one:.2f}x one)", {"rows/s": two}, results["local"]))
    print("\ncodes build (fit + write every code), s: " + ", ".join(f"{n} {f['build s']:.1f}" for n, f in code_results.items()))


def print_workers(scratch: Path, vectors: np.ndarray, no_server: bool) -> None:
    """Ingest only: the local baseline, then one and two worker processes on one Milvus server."""
    began = time.process_time()  # every thread of this process
    local = ingest(str(scratch / "local"), vectors)
    local_cpu = time.process_time() - began
    print("local", f"{local:,.0f} rows/s, {local_cpu:.1f} CPU s", flush=True)
    try:
        if no_server:
            raise ServerUnavailable("--no-server")
        process, address = milvus_server(scratch / "server")
        kind = "Milvus 2.3 server"
    except ServerUnavailable as exc:
        print(f"(no server: {exc}; Milvus Lite over loopback instead)")
        process, address = lite_server(scratch / "workers.db")
        kind = "Milvus Lite over loopback"
    try:
        figures = {count: workers(f"milvus://{address}/w{count}", vectors, count, scratch / f"w{count}", process.pid)
                   for count in (1, 2)}
    finally:
        stop(process)
    print(f"\n{len(vectors):,} vectors, {vectors.shape[1]}-d, {os.cpu_count()} cores; "
          f"load: {os.getloadavg()[0]:.1f} (1-min)")
    print("| ingest | rows/s | wall s | workers on a core / waiting, s | server on a core / waiting, s | CPU s in all |")
    print("|---|---|---|---|---|---|")
    print(f"| local, one process | {local:,.0f} | {len(vectors) / local:.1f} | {local_cpu:.1f} / - | - | {local_cpu:.1f} |")
    for count, f in figures.items():
        ratios = f" ({f['rows/s'] / local:.2f}x local" + (f", {f['rows/s'] / figures[1]['rows/s']:.2f}x one)" if count > 1 else ")")
        cpu = f["workers cpu s"] + f["server cpu s"]
        print(f"| {kind}, {count} worker{'s' * (count > 1)} | {f['rows/s']:,.0f}{ratios} | {f['wall s']:.1f} "
              f"({f['wall s'] * local / len(vectors):.1f}x local) | {f['workers cpu s']:.1f} / {f['workers wait s']:.1f} | "
              f"{f['server cpu s']:.1f} / {f['server wait s']:.1f} | {cpu:.1f} ({cpu / local_cpu:.1f}x local) |")


#: Shares of the images given a second file, for ``--copies`` (cumulative: each adds to the last).
COPY_SHARES = (0.0, 0.01, 0.1)


def print_copies(scratch: Path, vectors: np.ndarray, queries: np.ndarray) -> None:
    from glimpse.milvus.files import FileRow, SharedFiles
    from glimpse.query.filters import Filter

    check = SharedFiles._copy
    SharedFiles._copy = lambda self, written: None
    unchecked = ingest(f"milvus-lite://{scratch}/unchecked.db", vectors)
    SharedFiles._copy = check
    location = f"milvus-lite://{scratch}/copies.db"
    checked = ingest(location, vectors)
    settle(location)
    print(f"ingest rows/s: {unchecked:,.0f} without the check, {checked:,.0f} with it ({checked / unchecked:.2f}x)")
    filters = {"no filter": None, "1% of the rows": Filter(path_glob="img/000*"),
               "second files only": Filter(path_prefix="copy")}
    figures = {}
    with glimpse.open(location) as col:
        ids = col._ensure_index().ids()
        done = 0
        for share in COPY_SHARES:
            upto = int(share * len(ids))
            col._meta.files.put([FileRow(f"copy/{i:07d}", int(item), 0, 0) for i, item in enumerate(ids[done:upto], done)])
            done = upto
            latencies: dict[str, list[float]] = {name: [] for name in filters}
            for q in queries:
                for name, where in filters.items():
                    began = time.perf_counter()
                    hits = col.search(vector=q, k=10, filters=where)
                    latencies[name].append((time.perf_counter() - began) * 1000)
                    assert len(hits) == (10 if name != "second files only" else min(10, upto)), (name, share, len(hits))
            figures[share] = {name: float(np.percentile(values, 50)) for name, values in latencies.items()}
            print(share, figures[share], flush=True)
    print(f"\n{len(vectors):,} vectors, {len(queries)} queries, k=10, Milvus Lite; load: {os.getloadavg()[0]:.1f} (1-min)")
    print("| images with a second file | copies' rows | " + " | ".join(f"p50 ms, {name}" for name in filters) + " |")
    print("|---|---|" + "---|" * len(filters))
    for share, cells in figures.items():
        print(f"| {share:.0%} | {2 * int(share * len(vectors)):,} | " + " | ".join(
            f"{ms:.1f}" + (f" ({ms / cells['no filter']:.2f}x no filter)" if name != "no filter" else "")
            for name, ms in cells.items()) + " |")


def print_filters(targets: dict[str, str], vectors: np.ndarray, queries: np.ndarray) -> None:
    figures = {}
    for name, location in targets.items():
        ingest(location, vectors)
        settle(location)
        figures[name] = filtered(location, queries)
        print(name, figures[name], flush=True)
    print(f"\n{len(vectors):,} vectors, {len(queries)} queries, k=10; load: {os.getloadavg()[0]:.1f} (1-min)")
    print("| glob | matched in | " + " | ".join(f"{name} p50 ms" for name in targets) + " |")
    print("|---|---|" + "---|" * len(targets))
    for glob, how in GLOBS:
        cells = [f"{figures[name][glob]:.1f}" + (f" ({figures[name][glob] / figures['local'][glob]:.2f}x)"
                                                 if name != "local" else "") for name in targets]
        print(f"| `{glob}` | {how} | " + " | ".join(cells) + " |")


def print_hard(scratch: Path, vectors: np.ndarray, sets: dict[str, tuple[np.ndarray, np.ndarray]],
               indexes: list[str]) -> None:
    process, address = milvus_server(scratch / "server")
    figures = {}
    try:
        ingest(f"milvus://{address}/hard", vectors)
        for kind in indexes:
            location = f"milvus://{address}/hard?index={kind}&consistency=bounded"
            build = settle(location)
            figures[kind] = {name: search(location, q, exact) for name, (q, exact) in sets.items()}
            print(kind, f"build {build:.0f} s", figures[kind], flush=True)
    finally:
        stop(process)
    print(f"\n{len(vectors):,} vectors, {len(next(iter(sets.values()))[0])} queries a set, k=10, Milvus 2.3.5 server, "
          f"bounded; load: {os.getloadavg()[0]:.1f} (1-min)")
    print("| index | " + " | ".join(f"{name} recall@10 (p50 ms)" for name in sets) + " |")
    print("|---|" + "---|" * len(sets))
    for kind, found in figures.items():
        print(f"| {kind} | " + " | ".join(f"{f['recall']:.3f} ({f['p50']:.1f})" for f in found.values()) + " |")


if __name__ == "__main__":
    main()
