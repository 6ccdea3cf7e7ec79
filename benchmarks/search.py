"""Search speed, recall and RAM: exact float against binary codes, 10k to 1M vectors, and a
10M codes-only scan against the machine's measured memory bandwidth.

    python benchmarks/search.py [--sizes 10000,100000,1000000] [--scan 10000000]
                                [--methods sign,itq,learned] [--bits 64,128,256,512]
                                [--oversample 10,30,100] [--queries 100] [--data DIR] [--cache DIR]

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

Configurations: ``ham`` (Hamming top-10), ``ham+rrO`` (Hamming top 10 x O, re-ranked
exactly from the float16 vector file through the memory map, as a collection does),
``casc+rrO`` (Hamming top 40 x O re-scored asymmetrically to 10 x O, then the same
re-rank), ``asym+rrO`` (asymmetric scan of every code for the shortlist, then re-rank). Latency is batch 1 (p50/p99
over the queries), throughput is batches of 64. ``B/img`` is the RAM the search path holds
per image, read off FAISS's own arrays (codes plus their 8-byte ids).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
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
from glimpse.backends.base import CodeStage  # noqa: E402

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


def isotropic_sources(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(``--real`` database vectors, image queries, text queries), all real default-encoder vectors.

    The last ``--queries`` photos of captioned-dev are the image queries (their captions, the
    text queries); the database's real vectors are the other photos and their augmented
    variants (``benchmarks/binarizers.py``'s augmentations), photo by photo.
    """
    emb = build_embeddings(args.data, args.cache, ISO_VARIANTS - 1)
    images, held = emb["images"], args.queries
    real = images[:-held].reshape(-1, images.shape[2])[: args.real]
    return (np.ascontiguousarray(real), np.ascontiguousarray(images[-held:, 0]),
            np.ascontiguousarray(emb["captions"][-held:][: args.text_queries]))


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


def adaptive_search(index: BinaryIndex, query: np.ndarray, k: int, first: int, pool: int, z: float) -> np.ndarray:
    """A shortlist sized per query (experiment): asymmetric code scores of every code, the top
    ``first`` re-ranked exactly, the code scores' error measured on them (the asymmetric score
    is ``q . (x - mean)`` up to the codes' loss, so exact ~ code + offset), then candidates
    taken in code order while their predicted exact score is within ``z`` deviations of the
    k-th exact score so far (at most ``pool``). Returns the top-k ids."""
    code_scores, ids = index._asymmetric(query[None], pool, *index._flat_codes())
    code_scores, ids = code_scores[0], ids[0]
    done = first
    exact = index.reader(ids[:first]).astype(np.float32) @ query
    error = exact - code_scores[:first]
    offset, spread = float(np.mean(error)), float(np.std(error))
    while done < pool:
        kth = np.partition(exact, -k)[-k]
        reach = int(np.searchsorted(-code_scores, -(kth - offset - z * spread)))
        if reach <= done:
            break
        step = min(pool, max(reach, 2 * done))
        exact = np.concatenate([exact, index.reader(ids[done:step]).astype(np.float32) @ query])
        done = step
    return ids[np.argsort(-exact, kind="stable")[:k]]


class ResidualCodes:
    """Experiment: a coarse quantiser (spherical k-means, ``lists`` centroids) and learned-256
    codes of each vector's residual to its centroid, as IVF-PQ and BEBR do. A query scores
    the members of its ``probes`` nearest lists by ``q . centroid + asymmetric(q, residual
    code)`` (both calibrated, so lists compare), then re-ranks the top ``shortlist`` exactly.
    RAM per image: the 32-byte code and an 8-byte id, as a list-ordered array."""

    def __init__(self, stored: np.ndarray, lists: int, sample: int, reader):
        n, dim = stored.shape
        train = np.ascontiguousarray(stored[:: max(1, n // sample)].astype(np.float32))
        kmeans = faiss.Kmeans(dim, lists, niter=10, spherical=True, seed=1)
        kmeans.train(train)
        self.centroids = kmeans.centroids
        self.quantizer = faiss.IndexFlatIP(dim)
        self.quantizer.add(self.centroids)
        assign = np.concatenate([self.quantizer.search(stored[i : i + 65536].astype(np.float32), 1)[1][:, 0]
                                 for i in range(0, n, 65536)])
        train_lists = self.quantizer.search(train, 1)[1][:, 0]
        self.binarizer = make_binarizer("learned", 256).fit(train - self.centroids[train_lists])
        self.order = np.argsort(assign, kind="stable")
        self.starts = np.searchsorted(assign[self.order], np.arange(lists + 1))
        self.codes = np.empty((n, 32), np.uint8)
        for i in range(0, n, 65536):
            rows = self.order[i : i + 65536]
            self.codes[i : i + len(rows)] = self.binarizer.encode(stored[rows].astype(np.float32) - self.centroids[assign[rows]])
        self.reader = reader
        self.lists = lists

    def search(self, query: np.ndarray, k: int, probes: int, shortlist: int) -> np.ndarray:
        near_scores, near = self.quantizer.search(query[None], probes)
        spans = [np.arange(self.starts[c], self.starts[c + 1]) for c in near[0]]
        positions = np.concatenate(spans)
        base = np.repeat(near_scores[0], [len(s) for s in spans])
        weights = self.binarizer.query_vector(query[None])[0].reshape(32, 8)
        table = weights @ (((np.arange(256)[:, None] >> np.arange(8)) & 1) * 2 - 1).T.astype(np.float32)
        estimate = base + table[np.arange(32), self.codes[positions]].sum(axis=1)
        top = positions[np.argpartition(-estimate, min(shortlist, len(estimate) - 1))[:shortlist]]
        ids = np.sort(self.order[top])
        exact = self.reader(ids).astype(np.float32) @ query
        return ids[np.argsort(-exact, kind="stable")[:k]]


def timed(search, queries: np.ndarray) -> tuple[float, np.ndarray]:
    """Batch-1 p50 in ms over ``queries`` (after one warm-up), and the ids each query found."""
    search(queries[:1])
    seconds, found = [], []
    for i in range(len(queries)):
        t = time.perf_counter()
        found.append(search(queries[i : i + 1])[0])
        seconds.append(time.perf_counter() - t)
    return 1e3 * float(np.median(seconds)), np.vstack(found)


def isotropic_benchmark(args) -> None:
    """Recall@10 and batch-1 p50 of the default code path against FAISS's anchors, per cosine.

    Each row is printed as soon as its index is built (the slow builds come last)."""
    faiss.omp_set_num_threads(1)
    real, img, txt = isotropic_sources(args)
    n, dim = args.size, real.shape[1]
    print(f"isotropic near-copies: {len(real):,} real {dim}-d default-encoder vectors + noisy copies to {n:,}; "
          f"{len(img)} image / {len(txt)} text queries (other real photos, their captions); batch 1, one thread; "
          f"faiss {faiss.__version__}; load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for cosine in args.isotropic:
        rows = isotropic_rows(real, n, cosine)
        copies = rows[len(real) :: 997].astype(np.float32)
        with tempfile.TemporaryDirectory(prefix="glimpse-iso-") as tmp:
            col = glimpse.open(Path(tmp) / "col", encoder="precomputed", dim=dim)
            t = time.perf_counter()
            col.add_vectors(rows, [f"v/{i}" for i in range(n)])
            imported = time.perf_counter() - t
            t = time.perf_counter()
            col.use_codes()  # the defaults: learned-256, cascade (image) / asymmetric (text), re-rank x30
            fitted = time.perf_counter() - t
            del rows
            index = col._ensure_index()
            stored = col._vectors.view(n)
            sources = real[np.argmax(copies @ real.T, axis=1)]
            print(f"\n### cosine {cosine}: measured copy-to-source cosine {np.mean(np.sum(copies * sources, axis=1)):.3f}; "
                  f"add_vectors {n / imported:,.0f} vectors/s, codes fitted and built in {fitted:.0f}s")
            flat = faiss.IndexFlatIP(dim)
            for start in range(0, n, 65536):
                flat.add(stored[start : start + 65536].astype(np.float32))
            truth = {"img": flat.search(img, K)[1], "txt": flat.search(txt, K)[1]}
            print("| index | B/img in RAM | p50 ms | x exact | image R@10 | text R@10 |")
            print("|---|---|---|---|---|---|")
            exact_p50 = []

            def row(label: str, per_image: float, image_search, text_search=None) -> None:
                p50, found = timed(image_search, img)
                exact_p50.append(p50)
                got_txt = recall(timed(text_search or image_search, txt)[1], truth["txt"])
                print(f"| {label} | {per_image:,.0f} | {p50:.2f} | {exact_p50[0] / p50:.0f} | "
                      f"{recall(found, truth['img']):.3f} | {got_txt:.3f} |", flush=True)

            row("FAISS IndexFlatIP (exact)", dim * 4, lambda q: flat.search(q, K)[1])
            held = index.nbytes() / n
            for o in args.oversample:
                row(f"glimpse learned-256, cascade (img) / asymmetric (txt) + re-rank x{o}" + (" (default)" if o == 30 else ""),
                    held, lambda q, o=o: index.search(q, K, stage=CodeStage(oversample=o, scoring="cascade"))[1],
                    lambda q, o=o: index.search(q, K, stage=CodeStage(oversample=o, scoring="asymmetric"))[1])
            for z in args.adaptive_z:
                row(f"glimpse learned-256, asymmetric + shortlist sized per query (z {z}, <= {args.adaptive_pool})", held,
                    lambda q, z=z: adaptive_search(index, q[0], K, 100, args.adaptive_pool, z)[None])
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            t = time.perf_counter()
            lists = args.ivf_lists
            ivfpq = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, 32, 8, faiss.METRIC_INNER_PRODUCT)
            ivfpq.cp.niter = 10
            ivfpq.train(np.ascontiguousarray(stored[:: max(1, n // (30 * lists))].astype(np.float32)))
            for start in range(0, n, 65536):
                ivfpq.add(stored[start : start + 65536].astype(np.float32))
            print(f"(IVF-PQ built in {time.perf_counter() - t:.0f}s)", flush=True)
            faiss.omp_set_num_threads(1)
            refine = faiss.IndexRefine(ivfpq, flat)  # shares the exact index's floats
            for top in (300, 1000, 3000):
                params = faiss.IndexRefineSearchParameters(k_factor=top / K, base_index_params=faiss.SearchParametersIVF(nprobe=32))
                row(f"FAISS IVF{lists},PQ32, nprobe 32, float refine of top {top}", 32 + 8,
                    lambda q, params=params: refine.search(q, K, params=params)[1])
            if args.residual_lists:
                t = time.perf_counter()
                residual = ResidualCodes(stored, args.residual_lists, 20_000, index.reader)
                print(f"(residual codes built in {time.perf_counter() - t:.0f}s)", flush=True)
                for probes, short in args.residual_probes:
                    row(f"experiment: IVF{args.residual_lists} + learned-256 residual codes, {probes} probes, re-rank {short}",
                        40, lambda q, p=probes, s=short: residual.search(q[0], K, p, s)[None])
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            t = time.perf_counter()
            hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            hnsw.add(faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim))
            print(f"(HNSW built in {time.perf_counter() - t:.0f}s)", flush=True)
            faiss.omp_set_num_threads(1)
            for ef in (128, 256, 512):
                row(f"FAISS HNSW32, efSearch {ef}", dim * 4 + 32 * 2 * 4,
                    lambda q, ef=ef: hnsw.search(q, K, params=faiss.SearchParametersHNSW(efSearch=ef))[1])
            col.close()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


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
    ap.add_argument("--isotropic", type=lambda v: [float(x) for x in v.split(",")], default=None,
                    help="instead: the isotropic near-copy data models at these cosines (e.g. 0.79,0.93)")
    ap.add_argument("--size", type=int, default=200_000, help="with --isotropic: database size")
    ap.add_argument("--real", type=int, default=3000, help="with --isotropic: real vectors in the database")
    ap.add_argument("--text-queries", type=int, default=50, help="with --isotropic: caption queries")
    ap.add_argument("--ivf-lists", type=int, default=1024, help="with --isotropic: IVF-PQ's lists")
    ap.add_argument("--adaptive-z", type=lambda v: [float(x) for x in v.split(",") if x], default=[2.0, 3.0],
                    help="with --isotropic: error-bound widths of the adaptive shortlist experiment")
    ap.add_argument("--adaptive-pool", type=int, default=4000, help="with --isotropic: its largest shortlist")
    ap.add_argument("--residual-lists", type=int, default=1024, help="with --isotropic: coarse lists of the "
                    "residual-codes experiment (0: skip it)")
    ap.add_argument("--residual-probes", default=[(16, 300), (32, 300), (32, 1000)],
                    type=lambda v: [tuple(int(y) for y in x.split(":")) for x in v.split(",")],
                    help="with --isotropic: PROBES:SHORTLIST pairs of the residual-codes experiment")
    args = ap.parse_args(argv)
    if args.isotropic:
        args.queries = 200 if args.queries == 100 else args.queries
        args.oversample = [30, 100, 300] if args.oversample == [10, 30, 100] else args.oversample
        isotropic_benchmark(args)
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
