"""Does storing a binarizer's parameters as float16 change search? File size and recall, float32 vs float16.

    python benchmarks/binarizer_storage.py EMBEDDINGS_DIR BINARIZER_FILE

EMBEDDINGS_DIR is a ``glimpse eval`` embedding cache (``~/.glimpse/eval/ENCODER/``): its
``images-*.npz`` is the database, ``texts-*.npz`` the text queries and ``generated-*.npz``
(augmented copies) the image queries. BINARIZER_FILE is a binarizer fitted and saved with
float32 parameters (``glimpse eval`` caches one per fit). The same fit is scored twice: as
saved (float32) and rounded to float16 as ``save`` now stores it.
Recall@10 is against the exact float top-10, for the code scan alone and for a 30x shortlist
re-ranked by the float vectors (as a collection searches).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from glimpse.codes import load_binarizer, unpack_codes


def vectors(folder: Path, prefix: str) -> np.ndarray:
    with np.load(sorted(folder.glob(f"{prefix}-*.npz"))[0]) as z:
        return z["vectors"].astype(np.float32)


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / truth.shape[1] for t, f in zip(truth, found)]))


def score(binarizer, database: np.ndarray, queries: np.ndarray, k: int = 10, oversample: int = 30) -> tuple[float, float]:
    exact = queries @ database.T
    truth = np.argsort(-exact, axis=1)[:, :k]
    asym = binarizer.query_vector(queries) @ unpack_codes(binarizer.encode(database), binarizer.bits).T
    order = np.argsort(-asym, axis=1, kind="stable")
    short = order[:, : k * oversample]
    reranked = np.take_along_axis(short, np.argsort(-np.take_along_axis(exact, short, axis=1), axis=1)[:, :k], axis=1)
    return recall(truth, order[:, :k]), recall(truth, reranked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("embeddings", type=Path)
    parser.add_argument("binarizer", type=Path)
    args = parser.parse_args()
    database = vectors(args.embeddings, "images")
    queries = {"text -> image": vectors(args.embeddings, "texts"), "copy -> image": vectors(args.embeddings, "generated")}
    full, half = load_binarizer(args.binarizer), load_binarizer(args.binarizer)
    half._set_params(half._stored_params(), half.dim)  # what save() stores and load() gives back
    with tempfile.TemporaryDirectory() as tmp:
        size16 = half.save(Path(tmp) / "b.npz").stat().st_size
    print(f"{full.name} {full.bits} bits, {full.dim}-d; database {len(database)} vectors, "
          f"{database.size * 2:,} bytes as float16")
    print(f"binarizer file: float32 {args.binarizer.stat().st_size:,} bytes, float16 {size16:,} bytes")
    changed = float(np.mean(np.unpackbits(full.encode(database) ^ half.encode(database))))
    print(f"database code bits that differ: {changed:.5f}")
    print(f"{'queries':<16}{'params':<9}{'R@10 codes':>12}{'R@10 re-ranked x30':>20}")
    for name, q in queries.items():
        for label, b in (("float32", full), ("float16", half)):
            codes, reranked = score(b, database, q)
            print(f"{name:<16}{label:<9}{codes:>12.4f}{reranked:>20.4f}")


if __name__ == "__main__":
    main()
