"""Binary codes on real embeddings: recall of Hamming scans, asymmetric scoring and re-ranking.

    python benchmarks/binarizers.py [--data ../shared/data/captioned-dev] [--cache DIR]
                                    [--augment 11] [--bits 64,128,256,512,1024]
                                    [--methods sign,itq,learned1,learned2,learned4]
                                    [--fit-100k] [--embed-only]

Vectors: the default encoder on captioned-dev's 857 photographs plus ``--augment`` seeded
augmentations of each (crop, flip, colour jitter, rescale, rotation, JPEG re-encode), cached
as .npy under ``--cache`` (default ``$XDG_CACHE_HOME/glimpse/bench``; never the repository)
so reruns skip the encoder. Text queries are the captions (full and first sentence).

Protocol. The database is the 11 augmented variants of 757 source photographs (8,327
vectors); the binarizers are fit on it, as a collection fits on its own vectors. Three query
sets, each scored against the exact float top-10 of the database:

* ``novel``: all 12 variants of the 100 held-out sources (1,200). No query has a copy in the
  database, so its top-10 are other, merely similar photographs: the hard, honest case.
* ``copy``: the original (un-augmented) photo of 600 database sources. Its top-10 are mostly
  its own 11 variants: near-duplicate / "more like this" search.
* ``text``: the 857 captions, full and first sentence (1,714), visual half zero.

Columns: ``ham`` Hamming-only recall@10 (|Hamming top-10 ∩ float top-10| / 10); ``asym`` the
same with asymmetric scoring (<query_vector(q), ±1 code>, float query); ``rrO`` recall@10
after the Hamming top 10*O are re-ranked by exact float scores; ``a+rr10`` the same with the
shortlist taken by asymmetric score.

``--fit-100k`` also times fitting on 100k vectors: the real vectors tiled with small Gaussian
noise (labelled as such; only fit time is read from it).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

AUG_VERSION = "1"
N_HELD_OUT = 100


# -- data -----------------------------------------------------------------------------------


def first_sentence(text: str) -> str:
    parts = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    return parts[0] if parts else text


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One seeded, photo-realistic variant: crop, flip, colour, rotation, rescale, JPEG."""
    w, h = image.size
    scale = rng.uniform(0.35, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = int(min(w, round(w * np.sqrt(scale * aspect))))
    ch = int(min(h, round(h * np.sqrt(scale / aspect))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    im = image.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.6, 1.4))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.6, 1.4))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.5, 1.5))
    if rng.random() < 0.3:
        im = im.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    side = int(rng.integers(80, 225))
    f = side / max(im.size)
    im = im.resize((max(8, round(im.width * f)), max(8, round(im.height * f))),
                   Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(30, 91)))
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return im


def build_embeddings(data: Path, cache: Path, n_aug: int) -> dict[str, np.ndarray]:
    """Image vectors (n_src, 1 + n_aug, dim), caption vectors (n_src, dim) x2; cached."""
    from glimpse.encoders import create_encoder
    from glimpse.query.adapt import read_captions

    enc = create_encoder()
    paths, captions = zip(*read_captions(data / "captions.tsv"))
    # Keyed by the photos' names within the folder, so every spelling of --data finds one cache.
    names = [os.path.relpath(p, data) for p in paths]
    key = hashlib.sha256(
        "\n".join([enc.name, enc.version, AUG_VERSION, str(n_aug), *names]).encode()
    ).hexdigest()[:12]
    file = cache / f"binarizers-{enc.name}-v{enc.version}-{key}.npz"
    if file.exists():
        with np.load(file, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    images = np.zeros((len(paths), 1 + n_aug, enc.dim), np.float32)
    batch: list[Image.Image] = []
    slots: list[tuple[int, int]] = []

    def flush() -> None:
        vecs = enc.encode_images(batch)
        for (i, j), v in zip(slots, vecs):
            images[i, j] = v
        batch.clear()
        slots.clear()

    for i, p in enumerate(paths):
        with Image.open(p) as im0:
            im = im0.convert("RGB")
        rng = np.random.default_rng([1234, i])
        batch.append(im)
        slots.append((i, 0))
        for j in range(n_aug):
            batch.append(augment(im, rng))
            slots.append((i, j + 1))
        if len(batch) >= 64:
            flush()
        if i % 100 == 0:
            print(f"  encoded {i}/{len(paths)} sources, {time.perf_counter() - t0:.0f}s",
                  file=sys.stderr)
    if batch:
        flush()
    out = {
        "images": images,
        "captions": enc.encode_texts(captions),
        "short": enc.encode_texts([first_sentence(c) for c in captions]),
    }
    tmp = file.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, file)
    print(f"  built {images.shape[0] * images.shape[1]} image vectors in "
          f"{time.perf_counter() - t0:.0f}s -> {file}", file=sys.stderr)
    return out


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "glimpse" / "bench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "captioned-dev")
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--augment", type=int, default=11)
    ap.add_argument("--bits", default="64,128,256,512,1024")
    ap.add_argument("--methods", default="sign,itq,learned1,learned2,learned4")
    ap.add_argument("--fit-100k", action="store_true")
    ap.add_argument("--embed-only", action="store_true")
    return ap.parse_args(argv)


# -- measurement ----------------------------------------------------------------------------


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth)]))


def rerank(short: np.ndarray, exact: np.ndarray, k: int = 10) -> np.ndarray:
    s = np.take_along_axis(exact, short, axis=1)
    return np.take_along_axis(short, np.argsort(-s, axis=1, kind="stable")[:, :k], axis=1)


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def make_binarizer(method: str, bits: int, progress=None):
    from glimpse.codes import create_binarizer

    if method.startswith("learned"):
        bpd = int(method[len("learned"):] or 1)
        return create_binarizer("learned", bits=bits, seed=0, bits_per_dim=bpd, progress=progress)
    return create_binarizer(method, bits=bits, seed=0)


def evaluate(method: str, bits: int, db: np.ndarray, queries: dict[str, np.ndarray],
             exact: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
    import faiss

    from glimpse.codes import unpack_codes

    t0 = time.perf_counter()
    b = make_binarizer(method, bits).fit(db)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    codes = b.encode(db)
    enc_rate = len(db) / (time.perf_counter() - t0)
    index = faiss.IndexBinaryFlat(bits)
    index.add(codes)
    signs = unpack_codes(codes, bits)
    row: dict[str, float] = {"fit_s": fit_s, "enc_per_s": enc_rate}
    for name, q in queries.items():
        _, ham = index.search(b.encode(q), 200)
        asym = topk(b.query_vector(q) @ signs.T, 100)
        row[f"{name}.ham"] = recall(ham, truth[name])
        row[f"{name}.asym"] = recall(asym, truth[name])
        for o in (4, 10, 20):
            row[f"{name}.rr{o}"] = recall(rerank(ham[:, : 10 * o], exact[name]), truth[name])
        row[f"{name}.a+rr10"] = recall(rerank(asym, exact[name]), truth[name])
    return row


COLUMNS = [
    ("fit s", "fit_s", "{:6.1f}"), ("enc/s", "enc_per_s", "{:7.0f}"),
    ("N ham", "novel.ham", "{:.3f}"), ("N asym", "novel.asym", "{:.3f}"),
    ("N rr4", "novel.rr4", "{:.3f}"), ("N rr10", "novel.rr10", "{:.3f}"),
    ("N rr20", "novel.rr20", "{:.3f}"), ("C ham", "copy.ham", "{:.3f}"),
    ("C asym", "copy.asym", "{:.3f}"), ("C rr4", "copy.rr4", "{:.3f}"),
    ("T ham", "text.ham", "{:.3f}"), ("T asym", "text.asym", "{:.3f}"),
    ("T rr10", "text.rr10", "{:.3f}"), ("T rr20", "text.rr20", "{:.3f}"),
    ("T a+rr10", "text.a+rr10", "{:.3f}"),
]


def print_table(rows: list[tuple[str, int, dict[str, float]]]) -> None:
    head = f"{'method':<9}{'bits':>5} " + " ".join(f"{c:>8}" for c, _, _ in COLUMNS)
    print(head)
    print("-" * len(head))
    for method, bits, r in rows:
        cells = " ".join(f"{f.format(r[k]):>8}" for _, k, f in COLUMNS)
        print(f"{method:<9}{bits:>5} {cells}")
    print("N = novel image queries, C = copy queries, T = text queries; ham/asym: recall@10 of "
          "the Hamming / asymmetric top-10; rrO: Hamming top 10*O re-ranked by float; "
          "a+rr10: asymmetric top 100 re-ranked.")


def fit_100k(db: np.ndarray, methods: list[str], bits: int = 256) -> None:
    """Fit time on 100k vectors: the real ones tiled with small noise (timing only)."""
    from glimpse.encoders import l2_normalize

    rng = np.random.default_rng(7)
    reps = -(-100_000 // len(db))
    big = np.concatenate([db] * reps)[:100_000]
    big = l2_normalize(big + 0.01 * rng.standard_normal(big.shape).astype(np.float32))
    print(f"\nfit on 100,000 vectors (the {len(db)} real ones tiled + N(0, 0.01) noise), "
          f"{bits} bits:")
    for method in methods:
        ticks: list[str] = []
        t0 = time.perf_counter()
        b = make_binarizer(method, bits, progress=lambda p: ticks.append(f"{p.step}:{p.loss:.3f}"))
        b.fit(big)
        extra = ""
        if hasattr(b, "fit_seconds"):
            extra = f" (init {b.fit_seconds[0]:.1f}s, fine-tune {b.fit_seconds[1]:.1f}s; loss {ticks[0]} -> {ticks[-1]})"
        print(f"  {method:<9} {time.perf_counter() - t0:6.1f}s{extra}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    emb = build_embeddings(args.data, args.cache, args.augment)
    if args.embed_only:
        print({k: v.shape for k, v in emb.items()})
        return
    images = emb["images"]
    n_db = len(images) - N_HELD_OUT
    db = np.ascontiguousarray(images[:n_db, 1:].reshape(-1, images.shape[2]))
    pick = np.random.default_rng(0).choice(n_db, min(600, n_db), replace=False)
    queries = {
        "novel": np.ascontiguousarray(images[n_db:].reshape(-1, images.shape[2])),
        "copy": np.ascontiguousarray(images[pick, 0]),
        "text": np.concatenate([emb["captions"], emb["short"]]),
    }
    exact = {k: q @ db.T for k, q in queries.items()}
    truth = {k: topk(s, 10) for k, s in exact.items()}
    print(f"database {db.shape[0]} x {db.shape[1]}; queries: "
          + ", ".join(f"{k} {len(q)}" for k, q in queries.items()), file=sys.stderr)
    rows = []
    bits_list = [int(b) for b in args.bits.split(",")]
    for bits in bits_list:
        for method in args.methods.split(","):
            t0 = time.perf_counter()
            rows.append((method, bits, evaluate(method, bits, db, queries, exact, truth)))
            print(f"  {method} {bits}: {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    print_table(rows)
    if args.fit_100k:
        fit_100k(db, ["itq", "learned1", "learned2"])


if __name__ == "__main__":
    main()
