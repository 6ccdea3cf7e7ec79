"""Search speed, recall and RAM: exact float against binary codes, 10k to 1M vectors, and a
10M codes-only scan against the machine's measured memory bandwidth.

    python benchmarks/search.py [--sizes 10000,100000,1000000] [--scan 10000000]
                                [--methods sign,itq,learned] [--bits 64,128,256,512]
                                [--oversample 10,30,100] [--queries 100] [--data DIR] [--cache DIR]
    python benchmarks/search.py --models structured,iso0.79,iso0.93,real,mix [--n 100000]
                                [--anchors ivfpq,ivfrabitq,scann,hnsw] [--anchor-lists L] [--workdir DIR]
                                [--clock cpu] [--quick N] [--exact-timed N] [--build-only]
    python benchmarks/search.py --vectors DB.npy --query-vectors Q.npy [--text-query-vectors T.npy] [--fit-first F]

Vectors. The default encoder's real embeddings of captioned-dev (857 photos x 12 augmented
variants, cached by ``benchmarks/binarizers.py`` under ``--cache``): the 8,327 variants of 757
sources open the database; the rest of it is those vectors tiled with *structured* noise
(Gaussian in the real vectors' top-256 principal directions, with their variances, plus 25%
isotropic), scaled so a tiled copy has the cosine to its source that a real augmented
variant has to its original. Without ``--data`` the sources are a synthetic clustered set.

Queries. ``img``: real vectors of the 100 held-out photos (never in the database);
``txt``: their captions. Ground truth is always the exact float top-10 (``IndexFlatIP``).

Baselines, measured in this run:
* ``flat-ip``: FAISS ``IndexFlatIP`` on float32. FAISS only uses BLAS for a batch when it
  has at least ``faiss.cvar.distance_compute_blas_threshold`` queries (default 20); its own
  SIMD loop serves smaller batches. Each batch size is timed both ways and the faster one is
  the baseline, so the codes are never compared against a handicapped scan.
* ``ham-raw``: a raw FAISS ``IndexBinaryFlat`` over the same codes (Hamming top-10, no ids,
  no re-rank): the floor any code scan pays.

Data models against the anchors (issue 15), ``--models structured,iso0.79,iso0.93,real
--size N``: per data model, a collection built as a user would (``glimpse.open(dir,
encoder="precomputed", dim=D)``, ``add_vectors`` of the float16 rows, ``use_codes()`` with the
defaults; its vector file preloaded first, as ``glimpse serve`` has it, unless ``--cold``), against exact
search and the anchors run in the same process: FAISS IVF-PQ32, FAISS
IVF-RaBitQ (1 bit per dimension) and ScaNN (tree + anisotropic 32-byte codes), each re-ranking
its top candidates from the same float16 vector file with the same fp16 scan, and FAISS HNSW32
on floats; each swept (probes, re-rank depth, efSearch). ``structured`` is the tiling above;
``iso<cos>`` copies of real vectors plus isotropic Gaussian noise at that cosine to their
source; ``mix`` a heavy-tailed Gaussian mixture around them (Zipf cluster sizes, a cosine
per cluster, part of each cluster's noise in its own subspace; the model no setting was
tuned on); ``real`` the real vectors alone (3,285 here). ``--vectors`` runs the same
protocol on your own vectors instead (any dimension; rows are L2-normalised; the queries of
``--query-vectors`` report as ``img``, those of ``--text-query-vectors`` as ``txt``; ``benchmarks/shapes.py``
writes such files for other data shapes: CLIP-sized, isotropic, low-rank, duplicates, drift, queries from
no distribution of the database). ``--fit-first F`` fits the codes on the first F of the rows and adds
the rest afterwards (drift; a refit on doubling may follow, reported). Recall counts ties: a found row
whose exact score reaches the k-th exact score is right (among identical rows any k are the top k). Per model
it prints every setting, the cheapest setting of each method that reaches recall@10 >= 0.95
for image *and* text queries (p50 over both, batch 1, one thread), the default's filtered
searches (1% and 30% of the ids) against IVF-PQ32 and exact, and batches of 64 (every core)
for exact and the cheapest setting of each method. ``--clock cpu`` times batch-1 queries in this
process's CPU time (steadier than wall time on a loaded machine); ``--quick N`` (for 1M) times the exact
scan on N evenly spaced queries only (a batched search gives the truth), runs glimpse at its default
setting only and leaves out the filtered searches; ``--exact-timed N`` only the first of these.
``--workdir`` keeps each model's collection and its built anchors (IVF indexes and HNSW32 through
``faiss.write_index``, ScaNN through its own ``serialize``) for later runs. At 1M x 1664 the run
holds the floats once (6.7 GB: the exact index is the HNSW's own storage), and ScaNN is built
before them from a first part of the rows plus upserts, so no second float copy is made.

Configurations: ``ham`` (Hamming top-10), ``ham+rrO`` (Hamming top 10 x O, re-ranked
exactly from the float16 vector file through the memory map, as a collection does),
``casc+rrO`` (Hamming top 40 x O re-scored asymmetrically to 10 x O, then the same
re-rank), ``asym+rrO`` (asymmetric scan of every code for the shortlist, then re-rank). Latency is batch 1 (p50/p99
over the queries), throughput is batches of 64. ``B/img`` is the RAM the search path holds
per image, read off FAISS's own arrays (codes plus their 8-byte ids).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import faiss  # noqa: E402

from binarizers import N_HELD_OUT, build_embeddings, default_cache, make_binarizer, recall  # noqa: E402
import glimpse  # noqa: E402
from glimpse.codes import load_binarizer  # noqa: E402
from glimpse.storage import VectorStore  # noqa: E402
from glimpse.backends.binary import IVF_FROM, BinaryIndex, ivf_lists  # noqa: E402
from glimpse.backends.exact import exact_top  # noqa: E402
from glimpse.backends.base import CodeStage  # noqa: E402
from glimpse.backends.ivfcodes import MISSES  # noqa: E402

K = 10
#: With --isotropic: each photo and 4 augmented variants (5 x 657 photos covers 3,000 real rows).
ISO_VARIANTS = 5


# -- data -----------------------------------------------------------------------------------


def load_sources(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str]:
    """(database seeds, image queries, text queries, target cosine to source, label)."""
    if args.data and (args.data / "captions.tsv").exists():
        emb = build_embeddings(args.data, args.cache, 11)
        images = emb["images"]
        n_db = len(images) - N_HELD_OUT
        seeds = images[:n_db, 1:].reshape(-1, images.shape[2])
        # How close a real augmented variant is to its original: the noise is scaled to match.
        target = float(np.mean(np.einsum("sd,svd->sv", images[:, 0], images[:, 1:])))
        return (np.ascontiguousarray(seeds), images[n_db:].reshape(-1, images.shape[2]),
                emb["captions"][n_db:], target, "real captioned-dev embeddings")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((300, 512)).astype(np.float32)
    def draw(n: int) -> np.ndarray:
        x = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.standard_normal((n, 512)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    return draw(8000), draw(1200), draw(200), 0.85, "synthetic clustered vectors (no --data)"


class Tiler:
    """Row i of the database: seed i, or a seed plus structured noise (deterministic by row)."""

    def __init__(self, seeds: np.ndarray, target_cosine: float):
        self.seeds = seeds
        centred = (seeds - seeds.mean(axis=0))[:: max(1, len(seeds) // 4000)]
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        spread = s[:256] / np.sqrt(len(centred))  # standard deviation along each direction
        self.basis = (spread[:, None] * vt[:256]).astype(np.float32)
        # A quarter of the top directions' average spread, in every direction.
        self.iso = 0.25 * float(np.sqrt((spread**2).sum() / seeds.shape[1]))
        self.sigma = 1.0
        self.sigma = self._calibrate(target_cosine)

    def _noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        g = rng.standard_normal((n, len(self.basis)), dtype=np.float32)
        iso = rng.standard_normal((n, self.seeds.shape[1]), dtype=np.float32) * self.iso
        return self.sigma * (g @ self.basis + iso)

    def _calibrate(self, target: float) -> float:
        rng = np.random.default_rng(99)
        src = self.seeds[rng.integers(0, len(self.seeds), 2000)]
        noise = self._noise(rng, 2000)
        lo, hi = 0.0, 10.0
        for _ in range(40):
            mid = (lo + hi) / 2
            x = src + mid * noise
            cos = np.mean(np.sum(x * src, axis=1) / np.linalg.norm(x, axis=1))
            lo, hi = (mid, hi) if cos > target else (lo, mid)
        return lo

    def rows(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.seeds.shape[1]), np.float32)
        real = max(0, min(stop, len(self.seeds)) - start)
        out[:real] = self.seeds[start : start + real]
        if real < len(out):
            rng = np.random.default_rng([7, start])
            n = len(out) - real
            x = self.seeds[rng.integers(0, len(self.seeds), n)] + self._noise(rng, n)
            out[real:] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


# -- timing ---------------------------------------------------------------------------------


def latencies(fn, queries: np.ndarray, batch: int = 1) -> np.ndarray:
    fn(queries[:batch])  # warm caches and lazy set-up
    out = []
    for i in range(0, len(queries) - batch + 1, batch):
        t = time.perf_counter()
        fn(queries[i : i + batch])
        out.append(time.perf_counter() - t)
    return np.array(out)


def timing(fn, queries: np.ndarray) -> dict[str, float]:
    one = latencies(fn, queries[: max(10, len(queries))])
    wide = np.tile(queries, (max(1, 192 // len(queries)), 1))[:192]
    batch = latencies(fn, wide, 64)
    return {"p50": 1e3 * float(np.percentile(one, 50)), "p99": 1e3 * float(np.percentile(one, 99)),
            "qps64": 64 / float(np.median(batch))}


def flat_timing(index: faiss.Index, queries: np.ndarray) -> dict[str, float]:
    """IndexFlatIP timed with and without BLAS for each batch size; the faster one counts."""
    search = lambda q: index.search(q, K)  # noqa: E731
    best: dict[str, float] = {}
    for threshold in (1, 10**9):  # BLAS for every batch / FAISS's SIMD loop for every batch
        faiss.cvar.distance_compute_blas_threshold = threshold
        got = timing(search, queries)
        best = got if not best else {
            "p50": min(best["p50"], got["p50"]), "p99": min(best["p99"], got["p99"]),
            "qps64": max(best["qps64"], got["qps64"])}
    faiss.cvar.distance_compute_blas_threshold = 1  # what glimpse's FlatIndex uses
    return best


# -- memory bandwidth -----------------------------------------------------------------------


def memory_bandwidth(gib: float = 1.0) -> dict[int, float]:
    """Read bandwidth (bytes/s) summing a buffer far larger than the caches, 1 and 2 threads."""
    buf = np.ones(int(gib * 2**30) // 8, np.uint64)
    out = {}
    for threads in (1, 2):
        parts = np.array_split(buf, threads)
        times = []
        for _ in range(5):
            workers = [threading.Thread(target=np.sum, args=(p,)) for p in parts]
            t = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            times.append(time.perf_counter() - t)
        out[threads] = buf.nbytes / min(times)
    return out


# -- the benchmark ----------------------------------------------------------------------------


def build_database(tiler: Tiler, n: int, workdir: Path) -> tuple[faiss.IndexFlatIP, np.ndarray, VectorStore]:
    """The float16 vector file a collection would hold, and IndexFlatIP over the same values.

    The float matrix is a zero-copy view of the flat index's storage, so 1M x 1664 floats
    live in RAM once (6.7 GB), not twice.
    """
    dim = tiler.seeds.shape[1]
    store = VectorStore(workdir / "vectors.f16", dim)
    flat = faiss.IndexFlatIP(dim)
    for start in range(0, n, 65536):
        half = tiler.rows(start, min(n, start + 65536)).astype(np.float16)
        store.write(start, half)
        flat.add(half.astype(np.float32))  # rank exactly what the store holds
    view = faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim)
    return flat, view, store


def fit_binarizers(args, vectors: np.ndarray) -> dict[tuple[str, int], object]:
    """Each binarizer fitted once, on a sample of the largest database (a collection fits on
    a sample of its own vectors too)."""
    rng = np.random.default_rng(1)
    sample = vectors[np.sort(rng.choice(len(vectors), min(len(vectors), args.fit_sample), replace=False))]
    key = hashlib.sha256(sample[:: max(1, len(sample) // 64)].tobytes()).hexdigest()[:12]
    fitted = {}
    for method in args.methods.split(","):
        for bits in [int(b) for b in args.bits.split(",")]:
            file = args.cache / f"search-fit-{method}-{bits}-{len(sample)}-{key}.npz"
            try:
                fitted[(method, bits)] = load_binarizer(file)  # reruns skip fitting
                continue
            except (OSError, ValueError):
                pass
            t = time.perf_counter()
            fitted[(method, bits)] = make_binarizer(method, bits).fit(sample)
            print(f"  fit {method}-{bits} on {len(sample)}: {time.perf_counter() - t:.1f}s", file=sys.stderr)
            args.cache.mkdir(parents=True, exist_ok=True)
            fitted[(method, bits)].save(file)
    return fitted


def run_size(n: int, big: faiss.IndexFlatIP, vectors: np.ndarray, store: VectorStore,
             queries: dict[str, np.ndarray], binarizers: dict, args) -> list[dict]:
    dim = vectors.shape[1]
    if n == big.ntotal:
        flat = big
    else:
        flat = faiss.IndexFlatIP(dim)
        flat.add(vectors[:n])
    f32 = vectors[:n]
    ids = np.arange(n, dtype=np.int64)
    reader = lambda wanted: store.read(wanted, n, np.float16)  # noqa: E731  (as a collection reads)
    base = flat_timing(flat, queries["img"])
    truth = {name: flat.search(q, K)[1] for name, q in queries.items()}
    rows = [{"n": n, "config": "flat-ip (baseline)", "bytes": dim * 4, **base,
             "img": 1.0, "txt": 1.0}]
    raw_bits = 256 if any(b == 256 for _, b in binarizers) else max(b for _, b in binarizers)
    raw_method = next(m for m, b in binarizers if b == raw_bits)
    for (method, bits), binarizer in binarizers.items():
        index = BinaryIndex(binarizer, reader)
        for start in range(0, n, 65536):
            index.add(ids[start : start + 65536], f32[start : start + 65536])
        held = index.nbytes() / n
        name = f"{method}-{bits}"
        if (method, bits) == (raw_method, raw_bits):
            raw = faiss.IndexBinaryFlat(bits)
            for start in range(0, n, 65536):
                raw.add(binarizer.encode(f32[start : start + 65536]))
            codes_q = binarizer.encode(queries["img"])
            got = timing(lambda q: raw.search(q, K), codes_q)
            rows.append({"n": n, "config": f"ham-raw {name} (baseline)", "bytes": bits // 8,
                         **got, "img": recall(raw.search(codes_q, K)[1], truth["img"]), "txt": None})
            del raw
        configs = [("ham", {"rerank": False, "scoring": "hamming"})]
        for o in args.oversample:
            configs += [(f"{short}+rr{o}", {"rerank": True, "oversample": o, "scoring": scoring})
                        for short, scoring in (("ham", "hamming"), ("casc", "cascade"), ("asym", "asymmetric"))]
        for label, kw in configs:
            search = lambda q: index.search(q, K, **kw)  # noqa: E731
            got = timing(search, queries["img"])
            rows.append({"n": n, "config": f"{label} {name}", "bytes": f"{held:.0f}", **got,
                         "img": recall(search(queries["img"])[1], truth["img"]),
                         "txt": recall(search(queries["txt"])[1], truth["txt"])})
        print(f"  n={n} {name} done", file=sys.stderr)
    return rows


def tiled_codes(n: int, base: np.ndarray, bits: int) -> np.ndarray:
    """``base`` codes repeated up to ``n`` rows, each repeat with 3% of its bits flipped."""
    rng = np.random.default_rng(5)
    codes = np.empty((n, base.shape[1]), np.uint8)
    for start in range(0, n, len(base)):
        stop = min(n, start + len(base))
        flips = np.packbits(rng.random((stop - start, bits), dtype=np.float32) < 0.03, axis=1, bitorder="little")
        codes[start:stop] = base[: stop - start] ^ (flips if start else 0)
    return codes


def scan(codes: np.ndarray, bits: int, queries: np.ndarray, bandwidth: dict[int, float]) -> list[str]:
    """Batch-1 Hamming scans of every code (k=100) against the measured read bandwidth."""
    n = len(codes)
    best_bw = max(bandwidth.values())
    lines = [f"memory read bandwidth: 1 thread {bandwidth[1] / 1e9:.1f} GB/s, "
             f"2 threads {bandwidth[2] / 1e9:.1f} GB/s (numpy sum over 1 GiB)"]
    flat = faiss.IndexBinaryFlat(bits)
    flat.add(codes)
    shards = faiss.IndexBinaryShards(bits, True, True)  # one thread per shard
    for half in np.array_split(np.arange(n), 2):
        part = faiss.IndexBinaryFlat(bits)
        part.add(codes[half[0] : half[-1] + 1])
        shards.add_shard(part)
    for label, index in (("IndexBinaryFlat, 1 thread", flat), ("2 shards, 1 thread each", shards)):
        secs = np.median(latencies(lambda q: index.search(q, 100), queries))
        rate = codes.nbytes / secs
        lines.append(f"{n:,} x {bits}-bit codes, {label}: {1e3 * secs:.1f} ms/query, "
                     f"{rate / 1e9:.1f} GB/s = {100 * rate / best_bw:.0f}% of measured bandwidth")
    return lines


def layouts(codes: np.ndarray, binarizer, queries: np.ndarray, sizes: list[int]) -> list[str]:
    """glimpse's BinaryIndex, flat scan against IVF, Hamming top-100 (no re-rank)."""
    lines = ["| codes | layout | build s | p50 ms | p99 ms | top-100 overlap with flat |", "|---|---|---|---|---|---|"]
    for n in sizes:
        results = {}
        for lists in (0, ivf_lists(max(n, IVF_FROM))):
            t = time.perf_counter()
            index = BinaryIndex(binarizer, lists=lists)
            for start in range(0, n, 65536):  # the first 65536 codes train the lists
                index.add_codes(np.arange(start, min(n, start + 65536)), codes[start : min(n, start + 65536)])
            built = time.perf_counter() - t
            search = lambda q: index.search(q, 100, stage=CodeStage(rerank=False))  # noqa: E731
            lat = latencies(search, queries)
            results[lists] = search(queries)[1]
            overlap = recall(results[lists], results[0])
            label = "flat" if not lists else f"IVF {lists} lists, {index.probes} probes"
            lines.append(f"| {n:,} | {label} | {built:.1f} | {1e3 * np.percentile(lat, 50):.2f} | "
                         f"{1e3 * np.percentile(lat, 99):.2f} | {overlap:.3f} |")
    return lines


def print_table(rows: list[dict]) -> None:
    base = {r["n"]: r for r in rows if r["config"].startswith("flat-ip")}
    print("| n | config | B/img | p50 ms | p99 ms | x flat (p50) | q/s @64 | x flat (q/s) | img R@10 | txt R@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = base[r["n"]]
        txt = "" if r["txt"] is None else f"{r['txt']:.3f}"
        print(f"| {r['n']:,} | {r['config']} | {r['bytes']} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{b['p50'] / r['p50']:.1f} | {r['qps64']:,.0f} | {r['qps64'] / b['qps64']:.1f} | "
              f"{r['img']:.3f} | {txt} |")


# -- isotropic near-copies, through encoder="precomputed" (issue 15) --------------------------


def isotropic_sources(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(``--real`` database vectors, image queries, text queries, the cosine of a real augmented
    variant to its photo), all real default-encoder vectors.

    The last ``--queries`` photos of captioned-dev are the image queries (their captions, the
    text queries); the database's real vectors are the other photos and their augmented
    variants (``benchmarks/binarizers.py``'s augmentations), photo by photo.
    """
    emb = build_embeddings(args.data, args.cache, ISO_VARIANTS - 1)
    images, held = emb["images"], args.queries
    real = images[:-held].reshape(-1, images.shape[2])[: args.real]
    target = float(np.mean(np.einsum("sd,svd->sv", images[:, 0], images[:, 1:])))
    return (np.ascontiguousarray(real), np.ascontiguousarray(images[-held:, 0]),
            np.ascontiguousarray(emb["captions"][-held:][: args.text_queries]), target)


def isotropic_rows(real: np.ndarray, n: int, cosine: float, seed: int = 7) -> np.ndarray:
    """float16 (n, dim): the real vectors, then copies of random ones plus isotropic Gaussian
    noise scaled so a copy has ``cosine`` to its source (1 / sqrt(1 + dim * sigma^2))."""
    dim = real.shape[1]
    sigma = np.sqrt((1 / cosine**2 - 1) / dim)
    out = np.empty((n, dim), np.float16)
    out[: len(real)] = real
    rng = np.random.default_rng(seed)
    for start in range(len(real), n, 16384):
        stop = min(n, start + 16384)
        x = real[rng.integers(0, len(real), stop - start)] + sigma * rng.standard_normal((stop - start, dim), dtype=np.float32)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def rerank_fixed(reader, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The anchors' re-rank: their top candidates scored exactly from the float16 vector file,
    with the same fp16 scan the glimpse backends use (a caption on the columns where it is not
    zero, as theirs), so only the candidate stage differs; no row check (the anchors have none)."""
    out = np.full((len(queries), K), -1, np.int64)
    for row, (query, found) in enumerate(zip(queries, candidates)):
        _, best = exact_top(reader, query, found[found >= 0], K, lambda ids, rows: np.ones(len(ids), bool))
        out[row, : len(best)] = best
    return out


#: The clock of the batch-1 timings: wall time, or with ``--clock cpu`` this process's CPU time (other
#: jobs' time slices inflate it less on a loaded machine).
CLOCK = time.perf_counter


#: Scores this close to the k-th exact score count as ties with it (float32 sums of the same float16 rows
#: in another order differ by about 1e-7; near-copies that are not identical differ by far more).
TIE = 1e-5


def tied_recall(found: np.ndarray, truth: np.ndarray, queries: np.ndarray, stored: np.ndarray) -> float:
    """recall@K where a tie counts: a found id is right when its exact score reaches the K-th exact
    score of ``truth`` (less ``TIE``). Among 5,000 identical rows any 10 are the exact top-10, and
    comparing ids alone would score an exact answer at 0."""
    hits = []
    for query, got, want in zip(queries, found, truth):
        want, got = want[want >= 0], np.unique(got[got >= 0])  # np.unique: each id once, sorted for the map
        if not len(want):
            continue
        bar = float((np.asarray(stored[np.sort(want)], np.float32) @ query).min()) - TIE
        scores = np.asarray(stored[got], np.float32) @ query if len(got) else np.zeros(0)
        hits.append(min(len(want), int((scores >= bar).sum())) / len(want))
    return float(np.mean(hits)) if hits else 1.0


def per_query(search, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch-1 seconds per query (after one warm-up) and the ids each query found."""
    search(queries[:1])
    seconds, found = [], []
    for i in range(len(queries)):
        t = CLOCK()
        found.append(search(queries[i : i + 1])[0])
        seconds.append(CLOCK() - t)
    return np.array(seconds), np.vstack(found)


def mixture_rows(real: np.ndarray, n: int, seed: int = 13) -> np.ndarray:
    """float16 (n, dim): a clustered Gaussian mixture around the real vectors, heavy-tailed:
    cluster sizes follow a Zipf law (a few photos with hundreds of copies, most with none or a
    handful), each cluster's noise has its own cosine to the source (0.70-0.97) and half of its
    energy in a random 16-d subspace of its own (an edit, a crop series, a re-encode chain)."""
    dim = real.shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float16)
    out[: len(real)] = real
    weights = 1.0 / np.arange(1, len(real) + 1) ** 1.1
    source = rng.choice(len(real), size=n - len(real), p=weights / weights.sum())
    cosine = rng.uniform(0.70, 0.97, len(real))
    for start in range(0, len(source), 16384):
        part = source[start : start + 16384]
        noise = rng.standard_normal((len(part), dim), dtype=np.float32) / np.sqrt(2 * dim)
        for cluster in np.unique(part):  # each cluster's own 16-d noise subspace
            rows = np.flatnonzero(part == cluster)
            basis = np.random.default_rng([seed, int(cluster)]).standard_normal((16, dim), dtype=np.float32)
            noise[rows] += rng.standard_normal((len(rows), 16), dtype=np.float32) @ basis / np.sqrt(2 * 16 * dim)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        scale = np.sqrt(1 / cosine[part] ** 2 - 1)[:, None]
        x = real[part] + scale * noise
        out[len(real) + start : len(real) + start + len(part)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def model_rows(model: str, real: np.ndarray, n: int, target: float) -> np.ndarray:
    """float16 database rows of a data model (see ``--models``)."""
    if model == "real":
        return real.astype(np.float16)
    if model.startswith("iso"):
        return isotropic_rows(real, n, float(model[3:]))
    if model == "mix":
        return mixture_rows(real, n)
    if model == "structured":
        tiler = Tiler(real, target)
        return np.vstack([tiler.rows(i, min(n, i + 65536)).astype(np.float16) for i in range(0, n, 65536)])
    raise SystemExit(f"unknown data model {model!r}: use structured, iso<cosine>, mix or real (or --vectors FILE.npy)")


def file_sources(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(database vectors, image-like queries, text-like queries) from the user's .npy files,
    each row L2-normalised as the collection's inner product expects."""
    def load(path: Path | None) -> np.ndarray:
        if path is None:
            return np.zeros((0, 0), np.float32)
        x = np.load(path, mmap_mode="r")
        if x.ndim != 2:
            raise SystemExit(f"{path}: expected a 2-d array of vectors, got shape {x.shape}")
        return x
    vectors, queries, text = load(args.vectors), load(args.query_vectors), load(args.text_query_vectors)
    if not len(queries):
        raise SystemExit("--vectors needs --query-vectors FILE.npy (queries, one per row)")
    for name, x in (("--query-vectors", queries), ("--text-query-vectors", text)):
        if len(x) and x.shape[1] != vectors.shape[1]:
            raise SystemExit(f"{name} has {x.shape[1]} dimensions, --vectors {vectors.shape[1]}")
    unit = lambda x: np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), np.float32)  # noqa: E731
    text = unit(text) if len(text) else np.zeros((0, vectors.shape[1]), np.float32)
    return vectors, unit(queries), text


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float16 L2-normalised copy of (possibly memory-mapped) ``vectors``, in chunks."""
    out = np.empty(vectors.shape, np.float16)
    for start in range(0, len(vectors), 65536):
        x = np.asarray(vectors[start : start + 65536], np.float32)
        out[start : start + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


#: The IVF anchor families and their FAISS factory strings (the ones --workdir keeps).
IVF_ANCHORS = {"ivfpq": "PQ32", "ivfrabitq": "RaBitQ"}
#: Each IVF anchor's sweep: lists probed x candidates re-ranked. 128 lists and 10,000 rows were added once the
#: vector file was preloaded: at 1M ``mix`` IVF-RaBitQ's caption recall still rose at 64 / 3,000 (0.926).
IVF_SWEEP = [(probes, top) for probes in (16, 32, 64, 128) for top in (100, 300, 1000, 3000, 10_000)]


class Anchors:
    """The compressed and graph indexes glimpse is measured against, each with a sweep; every
    code-based one re-ranks its candidates with ``rerank_fixed`` (ScaNN's own exact reorder
    would hold the float vectors in RAM: 6,656 bytes per image)."""

    def __init__(self, stored: np.ndarray, lists: int, reader, keep: Path | None = None):
        self.stored, self.flat, self.lists, self.reader = stored, None, lists, reader
        self.keep = keep  # where built anchors are kept for later runs (--workdir)
        self.n, self.dim = stored.shape
        self.built: dict[str, faiss.Index] = {}
        self.want_hnsw, self.graph, self.hnsw_built, self.searcher, self.scann_built = False, None, "", None, ""

    def _train_rows(self) -> np.ndarray:
        """20 rows per list (k-means in the full dimension is most of an anchor's build time)."""
        return np.ascontiguousarray(self.stored[:: max(1, self.n // (20 * self.lists))].astype(np.float32))

    def _ivf(self, spec: str) -> faiss.Index:
        if spec in self.built:
            return self.built[spec]
        kept = self.keep / f"IVF{self.lists},{spec}.faiss" if self.keep else None
        if kept is not None and kept.exists():
            self.built[spec] = faiss.read_index(str(kept))
            return self.built[spec]
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # builds use every core; searches one
        index = faiss.index_factory(self.dim, f"IVF{self.lists},{spec}", faiss.METRIC_INNER_PRODUCT)
        faiss.extract_index_ivf(index).cp.niter = 10
        index.train(self._train_rows())
        for start in range(0, self.n, 65536):
            index.add(self.stored[start : start + 65536].astype(np.float32))
        faiss.omp_set_num_threads(1)
        if kept is not None:
            faiss.write_index(index, str(kept))
        self.built[spec] = index
        return index

    def ivfpq(self):
        index = self._ivf("PQ32")
        for probes, top in IVF_SWEEP:
            params = faiss.SearchParametersIVF(nprobe=probes)
            yield (f"FAISS IVF{self.lists},PQ32 nprobe {probes}, re-rank {top}", 32 + 8,
                   lambda q, p=params, t=top: rerank_fixed(self.reader, q, index.search(q, t, params=p)[1]))

    def ivfrabitq(self):
        index = self._ivf("RaBitQ")
        per_image = faiss.extract_index_ivf(index).code_size + 8
        for probes, top in IVF_SWEEP:
            params = faiss.IVFRaBitQSearchParameters(nprobe=probes, qb=8)
            yield (f"FAISS IVF{self.lists},RaBitQ ({self.dim} bits) nprobe {probes}, re-rank {top}", per_image,
                   lambda q, p=params, t=top: rerank_fixed(self.reader, q, index.search(q, t, params=p)[1]))

    def exact(self) -> faiss.IndexFlat:
        """The exact float32 index (the truth and the exact baseline). With the HNSW anchor it is
        the HNSW's own storage, so 1M x 1664 floats are in RAM once (6.7 GB), not twice; with
        ``--workdir`` that HNSW is kept there (graph and floats) and read back by later runs."""
        if not self.want_hnsw:
            self.flat = faiss.IndexFlatIP(self.dim)
            for start in range(0, self.n, 65536):
                self.flat.add(self.stored[start : start + 65536].astype(np.float32))
            return self.flat
        kept = self.keep / "HNSW32.faiss" if self.keep else None
        if kept is not None and kept.exists():
            self.graph = faiss.read_index(str(kept))
            self.hnsw_built = "read from --workdir"
        else:
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            self.graph = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            t = time.perf_counter()
            for start in range(0, self.n, 65536):
                self.graph.add(self.stored[start : start + 65536].astype(np.float32))
            self.hnsw_built = f"built in {time.perf_counter() - t:.0f} s wall on {os.cpu_count()} threads"
            faiss.omp_set_num_threads(1)
            if kept is not None:
                faiss.write_index(self.graph, str(kept) + ".tmp")
                os.replace(str(kept) + ".tmp", kept)  # a killed write is redone, never read half
        self.flat = faiss.downcast_index(self.graph.storage)
        return self.flat

    def hnsw(self):
        print(f"(HNSW32 on floats {self.hnsw_built})")
        for ef in (64, 128, 256, 512, 1024):
            yield (f"FAISS HNSW32 (floats) efSearch {ef}", self.dim * 4 + 32 * 2 * 4,
                   lambda q, e=ef: self.graph.search(q, K, params=faiss.SearchParametersHNSW(efSearch=e))[1])

    #: ScaNN is built from this many rows, then the rest is upserted (its tree and codebooks train
    #: on a sample of them).
    SCANN_FIRST = 131072

    def _scann(self):
        """ScaNN's searcher (tree + anisotropic codes, no reorder), built from the first SCANN_FIRST
        rows and then the rest upserted in chunks, so the build never holds a float32 copy of the
        whole collection; with ``--workdir`` it is serialized there and loaded by later runs."""
        import scann

        if self.searcher is not None:
            return self.searcher
        kept = self.keep / f"scann-{self.lists}" if self.keep else None
        if kept is not None and (kept / "done").exists():
            self.searcher = scann.scann_ops_pybind.load_searcher(str(kept))
            self.scann_built = "read from --workdir"
            return self.searcher
        t = time.perf_counter()
        first = min(self.n, self.SCANN_FIRST)
        rows = lambda a, b: np.ascontiguousarray(self.stored[a:b].astype(np.float32))  # noqa: E731
        self.searcher = (scann.scann_ops_pybind.builder(rows(0, first), K, "dot_product")
                         .tree(num_leaves=self.lists, num_leaves_to_search=32,
                               training_sample_size=min(first, 40 * self.lists))
                         .score_ah(self.dim // 64, anisotropic_quantization_threshold=0.2)
                         .build(docids=list(range(first))))
        for start in range(first, self.n, 65536):
            stop = min(self.n, start + 65536)
            self.searcher.upsert(list(range(start, stop)), rows(start, stop), batch_size=4096)
        self.scann_built = f"built in {time.perf_counter() - t:.0f} s wall"
        if kept is not None:
            shutil.rmtree(kept, ignore_errors=True)
            kept.mkdir(parents=True)
            self.searcher.serialize(str(kept))
            (kept / "done").write_text("complete\n")  # a killed serialize is redone, never loaded
        return self.searcher

    def scann(self):
        try:
            import scann  # noqa: F401
        except ImportError:
            print("(ScaNN not installed: pip install scann==1.4.2)")
            return
        searcher = self._scann()
        print(f"(ScaNN {self.scann_built})")
        for leaves in (16, 32, 64, 128, 256):  # text queries need many leaves to reach 0.95
            for top in (100, 300, 1000, 3000):
                yield (f"ScaNN tree {self.lists} + AH 32 B, leaves {leaves}, re-rank {top}", 32 + 4,
                       lambda q, l=leaves, t=top: rerank_fixed(
                           self.reader, q, np.asarray(searcher.search(q[0], final_num_neighbors=t, leaves_to_search=l)[0],
                                                      dtype=np.int64)[None]))


def models_benchmark(args) -> None:
    """Per data model: glimpse's default codes (built through ``encoder="precomputed"`` and
    ``add_vectors``) against exact search and the anchors, each swept; then the cheapest
    setting of each that reaches recall@10 >= 0.95 for image and for text queries, and the
    default's filtered (1%, 30%) and batch-64 searches against the anchors'."""
    faiss.omp_set_num_threads(1)
    if args.vectors:
        vectors, img, txt = file_sources(args)
        models, about = ["file"], (f"{len(vectors):,} vectors of {args.vectors}; {len(img)} queries of "
                                   f"{args.query_vectors}" + (f", {len(txt)} of {args.text_query_vectors}" if len(txt) else ""))
    else:
        real, img, txt, target = isotropic_sources(args)
        models, about = args.models, (f"{len(real):,} real {real.shape[1]}-d default-encoder vectors; {len(img)} image / "
                                      f"{len(txt)} text queries (other real photos, their captions)")
    queries = np.vstack([img, txt])
    kinds = {"img": slice(0, len(img))} | ({"txt": slice(len(img), len(queries))} if len(txt) else {})
    print(f"{about}; recall@10 against the exact top-10; batch 1, one thread; faiss {faiss.__version__}; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    summary = []
    for model in models:
        size = len(vectors) if model == "file" else len(real) if model == "real" else args.size
        make_rows = (lambda: unit_rows(vectors)) if model == "file" else (lambda: model_rows(model, real, size, target))
        sources = hashlib.blake2b((vectors if model == "file" else real).tobytes(), digest_size=6).hexdigest()
        with model_collection(args, f"{model}-{size}", make_rows, sources) as (col, built):
            index = col._ensure_index()
            # As a server has them (see Collection.preload): a first read of each row costs no page fault.
            preloaded = 0 if args.cold else col.preload().result()
            n = index.count()
            stored = col._vectors.view(n)
            dim = stored.shape[1]
            anchors = Anchors(stored, args.anchor_lists or index.lists, index.reader,
                              args.workdir / f"{model}-{size}" if args.workdir else None)
            anchors.want_hnsw = "hnsw" in args.anchors
            if args.build_only:
                for family in IVF_ANCHORS.keys() & set(args.anchors):
                    anchors._ivf(IVF_ANCHORS[family])
                if "scann" in args.anchors and importlib.util.find_spec("scann"):
                    anchors._scann()
                if anchors.want_hnsw:
                    anchors.exact()
                print(f"built {model}, n={n:,}: {built}; anchors {', '.join(anchors.built) or 'none'}"
                      + (f", ScaNN {anchors.scann_built}" if anchors.searcher is not None else "")
                      + (f", HNSW32 {anchors.hnsw_built}" if anchors.graph is not None else ""), flush=True)
                continue
            if "scann" in args.anchors and importlib.util.find_spec("scann"):
                anchors._scann()  # before the floats are in RAM: its build holds rows of its own
            flat = anchors.exact()
            truth = flat.search(queries, K)[1]
            print(f"\n### {model}: {n:,} vectors; {built}; {index.describe()}; vector file "
                  + (f"preloaded ({preloaded / 1e9:.2f} GB)" if preloaded else "not preloaded")
                  + f"; load average {os.getloadavg()[0]:.1f}")
            print("| method | B/img | " + " | ".join(f"p50 ms {kind}" for kind in kinds) + " | p50 ms all | "
                  + " | ".join(f"{kind} R@10" for kind in kinds) + " |")
            print("|---|---|" + "---|" * (2 * len(kinds) + 1))
            results = []

            def measure(label: str, per_image: float, search, timed: np.ndarray | None = None) -> None:
                """``timed``: time these queries only (the exact scan at 1M: its ids are the truth)."""
                if timed is None:
                    seconds, found = per_query(search, queries)
                else:
                    seconds, found = np.full(len(queries), np.nan), truth
                    seconds[timed] = per_query(search, queries[timed])[0]
                got = {kind: tied_recall(found[part], truth[part], queries[part], stored) for kind, part in kinds.items()}
                p50 = {kind: 1e3 * float(np.nanmedian(seconds[part])) for kind, part in kinds.items()}
                p50["all"] = 1e3 * float(np.nanmedian(seconds))
                results.append((label, per_image, p50, got, search))
                print(f"| {label} | {per_image:,.0f} | " + " | ".join(f"{p50[kind]:.2f}" for kind in kinds)
                      + f" | {p50['all']:.2f} | " + " | ".join(f"{got[kind]:.3f}" for kind in kinds) + " |", flush=True)

            timed = args.exact_timed or args.quick
            measure("exact (FAISS IndexFlatIP, float32)", dim * 4, lambda q: flat.search(q, K)[1],
                    np.linspace(0, len(queries) - 1, timed).astype(int) if timed else None)
            # code, factors and id, each id's float16 norm outside the projection (ids are rows here), and the
            # runs of rows with an identical twin (found once here for codes of an older version)
            per_image = (index.count() * (faiss.extract_index_ivf(index._index).code_size + 8 + 2)
                         + index._twin_table().nbytes) / n
            default_probes = index.probes
            for probes in [default_probes] if args.quick else sorted({default_probes // 2, default_probes, 2 * default_probes}):
                for misses in [MISSES] if args.quick else (0.5, 0.2, MISSES):
                    measure(f"glimpse ivf-rabitq {index.binarizer.bits} bits, probes {probes}+/{index.lists}, misses {misses}"
                            + (" (default)" if (probes, misses) == (default_probes, MISSES) else ""), per_image,
                            lambda q, p=probes, mm=misses: glimpse_search(index, q, p, mm))
            index.probes, index.misses = default_probes, MISSES
            for family in args.anchors:
                t = time.perf_counter()
                for label, size, search in getattr(anchors, family)():
                    if t and family in IVF_ANCHORS:
                        print(f"({family} built in {time.perf_counter() - t:.0f}s)", flush=True)
                    t = 0
                    measure(label, size, search)
            exact_p50 = results[0][2]["all"]
            print(f"\ncheapest setting reaching recall@10 >= 0.95 for {' and '.join(kinds)} queries ({model}, n={n:,}):")
            print("| method | setting | B/img | p50 ms | x exact | " + " | ".join(f"{kind} R@10" for kind in kinds) + " |")
            print("|---|---|---|---|---|" + "---|" * len(kinds))
            cheapest = []
            for family in ("glimpse", "FAISS IVF", "FAISS HNSW", "ScaNN"):
                for rabitq in ((False, True) if family == "FAISS IVF" else (None,)):
                    mine = [r for r in results if r[0].startswith(family) and (rabitq is None or ("RaBitQ" in r[0]) == rabitq)]
                    good = [r for r in mine if min(r[3].values()) >= 0.95]
                    if not mine:
                        continue
                    best = min(good, key=lambda r: r[2]["all"]) if good else max(mine, key=lambda r: min(r[3].values()))
                    cheapest.append(best)
                    line = (f"| {best[0].split(',')[0] if good else family} | {best[0]}{'' if good else ' (best reached)'} | "
                            f"{best[1]:,.0f} | {best[2]['all']:.2f} | {exact_p50 / best[2]['all']:.0f} | "
                            + " | ".join(f"{best[3][kind]:.3f}" for kind in kinds) + " |")
                    print(line)
                    summary.append(f"| {model} | {n:,} " + line)
            if not args.quick:
                filtered(index, flat, queries, stored, anchors)
            batched(queries, truth, stored, [("exact (FAISS IndexFlatIP, BLAS)", lambda q: flat.search(q, K)[1])]
                    + [(r[0], r[4]) for r in cheapest if not r[0].startswith("ScaNN")])
            col.close()
    print("\nsummary (per data model: cheapest setting at recall@10 >= 0.95, p50 over all queries)")
    print("| data model | n | method | setting | B/img | p50 ms | x exact | " + " | ".join(f"{kind} R@10" for kind in kinds) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(kinds))
    print("\n".join(summary))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


@contextlib.contextmanager
def model_collection(args, name: str, make_rows, sources: str) -> Iterator[tuple[object, str]]:
    """A data model's collection, built as a user would (``glimpse.open(dir, encoder="precomputed",
    dim=D)``, ``add_vectors`` of ``make_rows()``, ``use_codes()`` with the defaults), and how it
    was built. With ``--workdir`` it is kept there and reused by later runs of the same model and size
    from the same ``sources`` (a fingerprint of the vectors the rows derive from: a new encoder
    version changes them, and its queries must not meet rows of the old one)."""
    with contextlib.ExitStack() as stack:
        if args.workdir:
            home = args.workdir / name / "col"
        else:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="glimpse-models-"))) / "col"
        done = home.parent / "built.txt"  # written once the build finished: a killed build is redone
        stamp = f"sources {sources}"
        if done.exists() and "sources " in done.read_text() and stamp not in done.read_text():
            print(f"{name}: rebuilding, the workdir's collection was built from other sources", flush=True)
            done.unlink()
        if done.exists():
            col = glimpse.open(home)
            col.use_codes()  # this code's default settings (the fit is kept)
            built = f"reused the collection of an earlier run ({done.read_text().strip()})"
        else:
            shutil.rmtree(home, ignore_errors=True)
            rows = make_rows()
            n, dim = rows.shape
            col = glimpse.open(home, encoder="precomputed", dim=dim)
            first = round(args.fit_first * n) if args.fit_first else n  # rows added before the codes are fitted
            t = time.perf_counter()
            col.add_vectors(rows[:first], [f"v/{i}" for i in range(first)])
            added = time.perf_counter() - t
            t = time.perf_counter()
            col.use_codes()  # the default kind and settings
            built = f"add_vectors {first / added:,.0f}/s; codes fitted and built in {time.perf_counter() - t:.0f}s"
            if first < n:  # the rest added to fitted codes, as a growing collection is
                col.add_vectors(rows[first:], [f"v/{i}" for i in range(first, n)])
                built += (f" on the first {first:,} rows, then {n - first:,} added; codes fitted on "
                          f"{col.settings().codes.fitted_on:,} rows at the end")
            del rows
            if args.workdir:
                done.write_text(f"{built}; {stamp}\n")
        stack.callback(col.close)
        yield col, built


def glimpse_search(index, queries: np.ndarray, probes: int, misses: float) -> np.ndarray:
    """The index's ids for ``queries`` at one sweep setting (kept on the index, so a batch of
    the same setting can be timed later)."""
    index.probes, index.misses = probes, misses
    return index.search(queries, K)[1]


def filtered(index, flat, queries: np.ndarray, stored: np.ndarray, anchors) -> None:
    """The default's filtered searches (a random 1% and 30% of the ids), against exact search
    with the same filter and IVF-PQ32 + re-rank 1000 with FAISS's selector."""
    n = len(stored)
    rng = np.random.default_rng(11)
    ivfpq = anchors._ivf("PQ32") if n >= 20 * anchors.lists else None
    print("\n| search | glimpse p50 ms | glimpse R@10 | glimpse k filled | IVF-PQ32 p50 ms | IVF-PQ32 R@10 | exact p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for share in (0.01, 0.3):
        allowed = np.sort(rng.choice(n, size=max(K, int(share * n)), replace=False)).astype(np.int64)
        selector = faiss.IDSelectorBatch(allowed)
        exact_seconds, want = per_query(lambda q: flat.search(q, K, params=faiss.SearchParameters(sel=selector))[1], queries)
        seconds, got = per_query(lambda q: index.search(q, K, allowed=allowed)[1], queries)
        cells = [f"{1e3 * np.median(seconds):.2f}", f"{tied_recall(got, want, queries, stored):.3f}", f"{np.mean((got >= 0).sum(axis=1) == K):.2f}"]
        if ivfpq is not None:
            params = faiss.SearchParametersIVF(nprobe=min(anchors.lists, int(np.ceil(32 / share))), sel=selector)
            pq_seconds, pq = per_query(lambda q: rerank_fixed(anchors.reader, q, ivfpq.search(q, 1000, params=params)[1]), queries)
            cells += [f"{1e3 * np.median(pq_seconds):.2f}", f"{tied_recall(pq, want, queries, stored):.3f}"]
        else:
            cells += ["", ""]
        print(f"| filter passing {share:.0%} | " + " | ".join(cells) + f" | {1e3 * np.median(exact_seconds):.2f} |")


def batched(queries: np.ndarray, truth: np.ndarray, stored: np.ndarray, methods: list[tuple[str, object]]) -> None:
    """Batches of 64 queries (every core: FAISS's threads, glimpse's parallel re-rank), for
    exact search and the cheapest setting of each method that reached recall 0.95."""
    wide = np.tile(queries, (max(1, 192 // len(queries)) + 1, 1))[:192]
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    print(f"\n| batch of 64 ({os.cpu_count()} cores) | queries/s | x exact | R@10 |")
    print("|---|---|---|---|")
    exact_rate = None
    for label, search in methods:
        search(wide[:64])  # warm-up
        seconds, found = [], []
        for start in range(0, len(wide), 64):
            t = time.perf_counter()
            found.append(search(wide[start : start + 64]))
            seconds.append(time.perf_counter() - t)
        rate = 64 / float(np.median(seconds))
        exact_rate = exact_rate or rate
        print(f"| {label} | {rate:,.0f} | {rate / exact_rate:.1f} | {tied_recall(np.vstack(found)[: len(queries)], truth, queries, stored):.3f} |",
              flush=True)
    faiss.omp_set_num_threads(1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "captioned-dev")
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--scan", type=int, default=10_000_000, help="codes-only scan size (0: skip)")
    ap.add_argument("--methods", default="sign,itq,learned")
    ap.add_argument("--bits", default="64,128,256,512")
    ap.add_argument("--oversample", type=lambda v: [int(x) for x in v.split(",")], default=[10, 30, 100],
                    help="re-rank shortlists of k x each of these")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--fit-sample", type=int, default=20_000)
    ap.add_argument("--models", type=lambda v: v.split(","), default=None,
                    help="instead: these data models against the anchors (structured, iso<cosine>, real), e.g. "
                         "structured,iso0.79,iso0.93,real")
    ap.add_argument("--size", "--n", type=int, default=100_000, help="with --models: database size")
    ap.add_argument("--real", type=int, default=100_000, help="with --models: real vectors in the database (at most)")
    ap.add_argument("--text-queries", type=int, default=50, help="with --models: caption queries")
    ap.add_argument("--anchors", type=lambda v: v.split(",") if v else [], default=["ivfpq", "ivfrabitq", "scann", "hnsw"],
                    help="with --models: anchor families to run")
    ap.add_argument("--anchor-lists", type=int, help="with --models: the anchors' IVF lists / ScaNN leaves "
                                                       "(default: as many as glimpse's lists)")
    ap.add_argument("--vectors", type=Path, help="instead of --models: your own database vectors (FILE.npy, n x dim)")
    ap.add_argument("--query-vectors", type=Path, help="with --vectors: queries (FILE.npy), reported as 'img'")
    ap.add_argument("--text-query-vectors", type=Path, help="with --vectors: a second query set (FILE.npy), as 'txt'")
    ap.add_argument("--workdir", type=Path, help="with --models/--vectors: keep each model's collection and "
                                                  "anchors here and reuse them in later runs (default: a "
                                                  "temporary folder, deleted)")
    ap.add_argument("--build-only", action="store_true", help="with --workdir: build the collections and "
                                                              "anchors, measure nothing")
    ap.add_argument("--quick", type=int, default=0, metavar="N",
                    help="with --models: time the exact scan on N of the queries (evenly spaced; its ids are "
                         "the truth), glimpse at its default setting only, no filtered searches (for 1M)")
    ap.add_argument("--exact-timed", type=int, default=0, metavar="N",
                    help="with --models: time the exact scan on N of the queries only (evenly spaced; its ids "
                         "are the truth); everything else as without it (--quick N implies it)")
    ap.add_argument("--fit-first", type=float, default=0.0, metavar="F",
                    help="with --models/--vectors: fit the codes on the first F of the rows (0 < F < 1), then add the "
                         "rest (drift: a collection that grows after its codes were fitted)")
    ap.add_argument("--cold", action="store_true",
                    help="with --models/--vectors: leave the vector file unmapped, as in a fresh process (by default it is "
                         "preloaded first, as `glimpse serve` does: Collection.preload)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="with --models: batch-1 timings in wall time or this process's CPU time")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.models or args.vectors:
        args.queries = 200 if args.queries == 100 else args.queries
        models_benchmark(args)
        return
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    seeds, img, txt, target, label = load_sources(args)
    tiler = Tiler(seeds, target)
    pick = np.random.default_rng(3).choice(len(img), args.queries, replace=False)
    queries = {"img": np.ascontiguousarray(img[pick], np.float32),
               "txt": np.ascontiguousarray(txt[: args.queries], np.float32)}
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"sources: {label}; {len(seeds)} seeds, {seeds.shape[1]}-d, tiled copies at cosine "
          f"{target:.3f} to their seed; {os.cpu_count()} cores; faiss {faiss.__version__}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="glimpse-search-") as tmp:
        big, vectors, store = build_database(tiler, max(sizes), Path(tmp))
        binarizers = fit_binarizers(args, vectors)
        for n in sizes:
            rows += run_size(n, big, vectors, store, queries, binarizers, args)
        print_table(rows)
        if args.scan:
            main_bits = 256 if ("learned", 256) in binarizers else max(b for _, b in binarizers)
            chosen = binarizers.get(("learned", main_bits)) or next(iter(binarizers.values()))
            codes = tiled_codes(args.scan, chosen.encode(vectors[:1_000_000]), chosen.bits)
            del big, vectors
            queries_f = np.ascontiguousarray(queries["img"][:50])
            for line in scan(codes, chosen.bits, chosen.encode(queries_f), memory_bandwidth()):
                print(line)
            steps = sorted({s for s in (1_000_000, IVF_FROM, args.scan) if s <= args.scan})
            for line in layouts(codes, chosen, queries_f, steps):
                print(line)


if __name__ == "__main__":
    main()
