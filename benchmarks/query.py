"""Measurements behind the query defaults: composed-query alpha, re-ranking, caption adaptation.

    python benchmarks/query.py [--data ../shared/data/captioned-dev] [--only compose|rerank|adapt]

Everything runs on captioned-dev with the default encoder; the photos are indexed once into
a cached collection (``--collection``). Figures and the choices made from them are in
``benchmarks/QUERY_NOTES.md``.

* **compose**: a composed-retrieval proxy. For each photo T, the reference is a random one of
  T's 10 nearest photos (by image vector), the modification text is the first sentence of T's
  caption; T must be found among all photos but the reference. Image alone, text alone,
  WeiMoCIR alpha sweep, PDV beta sweep.
* **rerank**: copy detection (augmented copies of each photo must find their original) and
  text->image on full captions, each with re-ranking off, alpha-QE and SuperGlobal.
* **adapt**: train on a seeded half of the captions, score text->image on the other half's
  photos only (the held-out gallery), before and after; ridge and contrastive.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import glimpse  # noqa: E402
from glimpse.encoders import bridge  # noqa: E402
from glimpse.metrics import median_rank, recall_at_k  # noqa: E402
from glimpse.query.compose import compose, compose_direction  # noqa: E402
from glimpse.query.refine import CANDIDATES, refine  # noqa: E402


def load_captions(data: Path) -> tuple[list[Path], list[str]]:
    with open(data / "captions.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(data / r["image"]).absolute() for r in rows], [r["caption"] for r in rows]


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip())[0]


def open_indexed(collection: Path, data: Path) -> glimpse.Collection:
    col = glimpse.open(collection)
    if len(col) == 0:
        t0 = time.perf_counter()
        col.add([data / "images"])
        print(f"indexed {len(col)} photos in {time.perf_counter() - t0:.1f}s into {collection}")
    return col


def image_vectors(col: glimpse.Collection, paths: list[Path]) -> np.ndarray:
    """Stored vectors of ``paths``, in that order (what search scores against)."""
    ids = np.array([col._meta.item_for_path(str(p)) for p in paths], dtype=np.int64)
    col._ensure_index()
    return col._read_vectors(ids)


def report(name: str, scores: np.ndarray, relevant: np.ndarray) -> dict:
    r = recall_at_k(scores, relevant, [1, 5, 10])
    print(f"  {name:<38} R@1 {r[1]:.3f}  R@5 {r[5]:.3f}  R@10 {r[10]:.3f}  median rank {median_rank(scores, relevant):4.0f}")
    return r


def bench_compose(vectors: np.ndarray, texts: np.ndarray, seed: int = 0) -> None:
    n = len(vectors)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    near = np.argsort(-sims, axis=1)[:, :10]
    rng = np.random.default_rng(seed)
    ref = near[np.arange(n), rng.integers(0, 10, n)]
    target = np.arange(n)
    print(f"\ncompose: {n} queries, reference = a random one of the target's 10 nearest photos, "
          "modifier = first sentence of the target's caption; reference excluded")

    def score(queries: np.ndarray) -> np.ndarray:
        s = queries @ vectors.T
        s[np.arange(n), ref] = -np.inf  # the reference image is excluded, as search does
        return s

    report("image alone", score(vectors[ref]), target)
    report("text alone", score(texts), target)
    best = (0.0, "")
    for alpha in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        q = np.stack([compose(vectors[r], t, alpha) for r, t in zip(ref, texts)])
        r = report(f"WeiMoCIR alpha={alpha}", score(q), target)
        best = max(best, (r[10], f"WeiMoCIR alpha={alpha}"))
    dims = slice(bridge.VISUAL_DIM, None)
    for beta in (0.1, 0.2, 0.3, 0.5, 0.7, 1.0):
        q = np.stack([compose_direction(vectors[r], t, beta, dims) for r, t in zip(ref, texts)])
        r = report(f"PDV beta={beta}", score(q), target)
        best = max(best, (r[10], f"PDV beta={beta}"))
    print(f"  best R@10: {best[1]} ({best[0]:.3f})")


def ranked_recall(lists: list[np.ndarray], relevant: np.ndarray) -> dict[int, float]:
    """R@1/5/10 from ranked id lists (a relevant id missing from its list counts as a miss)."""
    ranks = np.array([int(np.flatnonzero(ids == r)[0]) + 1 if (ids == r).any() else 10**9
                      for ids, r in zip(lists, relevant)])
    return {k: float((ranks <= k).mean()) for k in (1, 5, 10)}


def bench_rerank(vectors: np.ndarray, queries: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Each query set: (query vectors, relevant index); candidates = top 100 of the gallery."""
    read = lambda ids: vectors[ids]  # noqa: E731 - the gallery stands in for a vector store
    settings = [("off", None, {})]
    settings += [(f"aqe n={n}", "aqe", {"n": n}) for n in (1, 2, 3, 5)]
    settings += [(f"superglobal k={k} beta={b}", "superglobal", {"k": k, "beta": b})
                 for k in (2, 3, 5) for b in (1.0, 3.0)]
    for name, (q, relevant) in queries.items():
        print(f"\nrerank, {name}: {len(q)} queries over {len(vectors)} photos, top {CANDIDATES} candidates")
        scores = q @ vectors.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :CANDIDATES]
        for label, method, options in settings:
            t0 = time.perf_counter()
            lists = [ids if method is None else refine(method, qi, ids, s[ids], read, **options)[0]
                     for qi, ids, s in zip(q, top, scores)]
            ms = (time.perf_counter() - t0) / len(q) * 1e3
            r = ranked_recall(lists, relevant)
            print(f"  {label:<28} R@1 {r[1]:.3f}  R@5 {r[5]:.3f}  R@10 {r[10]:.3f}   {ms:.2f} ms/query")


def copy_queries(enc, paths: list[Path], per_kind: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Augmented copies (crop, small JPEG q25, rotate+colour+text) of a seeded sample of photos."""
    from PIL import Image

    from quality import augmentations  # benchmarks/quality.py: the same copies it measures

    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(paths), size=min(per_kind, len(paths)), replace=False))
    originals = [Image.open(paths[i]).convert("RGB") for i in pick]
    out = {}
    for kind, augment in augmentations(seed).items():
        copies = [augment(im) for im in originals]
        out[f"copies ({kind})"] = (enc.encode_images(copies), pick)
    return out


def bench_adapt(collection: Path, paths: list[Path], captions: list[str]) -> None:
    """Two folds by file name (its tens digit odd or even): train on one, score on the other.

    Scoring goes through ``Collection.search`` with a path filter that keeps only the
    held-out photos: the same held-out gallery before and after."""
    import shutil
    import tempfile

    from glimpse.query.filters import Filter

    tens = np.array([int(p.stem) // 10 % 2 if len(p.stem) > 1 else -1 for p in paths])
    odd, even = tens == 1, tens == 0
    print("\nadapt: two folds (photos whose name's tens digit is odd / even), text->image on the "
          "held-out photos only, full captions")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "col"
        shutil.copytree(collection, work)
        col = glimpse.open(work)
        for fold, (train, test, glob) in enumerate([(even, odd, "*[13579]?.jpg"), (odd, even, "*[02468]?.jpg")]):
            tsv = Path(tmp) / f"train{fold}.tsv"
            tsv.write_text("image\tcaption\n" + "".join(f"{paths[i]}\t{captions[i]}\n" for i in np.flatnonzero(train)))
            held = Filter(path_glob=glob)
            queries = [(str(paths[i]), captions[i]) for i in np.flatnonzero(test)]

            def r10(adapted: bool) -> float:
                return float(np.mean([any(h.path == p for h in col.search(text=c, k=10, filters=held, adapted=adapted))
                                      for p, c in queries]))

            col.remove_adapt()
            print(f"  fold {fold}: {train.sum()} training pairs, {test.sum()} held-out photos")
            print(f"    {'no adaptation':<14} R@10 {r10(False):.3f}")
            for kind in ("ridge", "contrastive"):
                t0 = time.perf_counter()
                col.adapt(tsv, kind=kind, holdout=0)
                took = time.perf_counter() - t0
                print(f"    {kind:<14} R@10 {r10(True):.3f}   (adapt took {took:.1f}s)")
        col.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "captioned-dev")
    ap.add_argument("--collection", type=Path, default=Path("~/.cache/glimpse/bench/captioned-dev").expanduser())
    ap.add_argument("--only", choices=["compose", "rerank", "adapt"])
    ap.add_argument("--copies", type=int, default=300, help="photos to make copies of (rerank)")
    args = ap.parse_args()
    if not (args.data / "captions.tsv").exists():
        sys.exit(f"no captioned-dev at {args.data} (give --data)")
    paths, captions = load_captions(args.data)
    col = open_indexed(args.collection, args.data)
    vectors = image_vectors(col, paths)
    if args.only in (None, "compose"):
        bench_compose(vectors, col.encoder.encode_texts([first_sentence(c) for c in captions]))
    if args.only in (None, "rerank"):
        queries = copy_queries(col.encoder, paths, args.copies)
        queries["text->image (full captions)"] = (col.encoder.encode_texts(captions), np.arange(len(paths)))
        bench_rerank(vectors, queries)
    if args.only in (None, "adapt"):
        bench_adapt(args.collection, paths, captions)


if __name__ == "__main__":
    main()
