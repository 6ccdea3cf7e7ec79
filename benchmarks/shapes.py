"""Data shapes for ``benchmarks/search.py --vectors`` (issue 15: "recall held on any data").

    python benchmarks/shapes.py OUT [--n 100000] [--shapes clip512,clip768,gauss256,gauss768,rank24,dups,drift15,drift55,ood]

Writes ``OUT/SHAPE/db.npy`` (the database rows), ``q.npy`` (queries, reported as ``img``) and,
where a shape has a second query set, ``t.npy`` (reported as ``txt``), then runs nothing: each shape
is measured by ``python benchmarks/search.py --vectors OUT/SHAPE/db.npy --query-vectors
OUT/SHAPE/q.npy [--text-query-vectors OUT/SHAPE/t.npy]``. Built from the default encoder's real
vectors of captioned-dev (``benchmarks/search.py``'s ``isotropic_sources``: 200 held-out photos and
50 of their captions as queries) and its ``mix`` model:

* ``clip512``, ``clip768``: ``mix`` rows and both query sets through one random orthogonal
  projection to 512 / 768 dimensions (CLIP-sized vectors with the same neighbourhoods, roughly).
* ``gauss256``, ``gauss768``: isotropic Gaussian unit vectors (no structure at all), queries alike;
  the ``txt`` set are database rows plus noise at cosine 0.9 (a query with a clear neighbour).
* ``rank24``: rank-24 Gaussian vectors in 768 dimensions (a low intrinsic dimension), plus noise of
  1% of their norm; queries alike.
* ``dups``: clusters of 10 to 5,000 rows (log-uniform sizes) around real photos, every other cluster
  exact copies, the rest near-copies (cosine 0.999); ``img`` the held-out photos, ``txt`` members
  of the clusters with a little noise (their exact top-10 are ties).
* ``drift<P>``: the first P% of the rows ``mix`` around half of the photos, the rest ``mix`` around
  the other half, turned by a random rotation (another distribution the codes were not fitted on:
  measure with ``--fit-first 0.P``; at 55% no refit on doubling sees the rest); ``img`` the
  held-out photos, ``txt`` the same turned.
* ``ood``: ``mix`` rows; ``img`` the captions (text against image vectors), ``txt`` random unit
  vectors (queries from no distribution of the database at all).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search import isotropic_sources, mixture_rows  # noqa: E402

SHAPES = ["clip512", "clip768", "gauss256", "gauss768", "rank24", "dups", "drift15", "drift55", "ood"]


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rotation(rng: np.random.Generator, dim: int, out: int) -> np.ndarray:
    """(dim, out) with orthonormal columns, Haar-random."""
    q, r = np.linalg.qr(rng.standard_normal((dim, out)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def projected(rows: np.ndarray, turn: np.ndarray) -> np.ndarray:
    out = np.empty((len(rows), turn.shape[1]), np.float16)
    for start in range(0, len(rows), 65536):
        out[start : start + 65536] = unit(rows[start : start + 65536].astype(np.float32) @ turn)
    return out


def gaussian(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    return unit(rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float16)


def shape(name: str, n: int, real: np.ndarray, img: np.ndarray, txt: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([15, SHAPES.index(name)])
    dim = real.shape[1]
    if name.startswith("clip"):
        turn = rotation(rng, dim, int(name[4:]))
        return {"db": projected(mixture_rows(real, n), turn), "q": projected(img, turn), "t": projected(txt, turn)}
    if name.startswith("gauss"):
        d = int(name[5:])
        db = gaussian(rng, n, d)
        near = db[rng.integers(0, n, 50)].astype(np.float32)
        noise = unit(rng.standard_normal(near.shape, dtype=np.float32))
        return {"db": db, "q": gaussian(rng, 200, d), "t": unit(0.9 * near + np.sqrt(1 - 0.81) * noise)}
    if name.startswith("rank"):
        basis = rotation(rng, 768, int(name[4:])).T
        draw = lambda m: unit(rng.standard_normal((m, len(basis)), dtype=np.float32) @ basis  # noqa: E731
                              + 0.01 / np.sqrt(768) * rng.standard_normal((m, 768), dtype=np.float32))
        return {"db": draw(n).astype(np.float16), "q": draw(200), "t": draw(50)}
    if name == "dups":
        sizes = []
        while sum(sizes) < n:
            sizes.append(int(np.exp(rng.uniform(np.log(10), np.log(5000)))))
        sizes[-1] -= sum(sizes) - n
        sources = rng.choice(len(real), len(sizes), replace=len(sizes) > len(real))
        parts = []
        for number, (source, size) in enumerate(zip(sources, sizes)):
            rows = np.repeat(real[source][None], size, axis=0)
            if number % 2:  # near-copies at cosine 0.999
                rows = unit(rows + np.sqrt(1 / 0.999**2 - 1) * unit(rng.standard_normal(rows.shape, dtype=np.float32)))
            parts.append(rows.astype(np.float16))
        db = np.concatenate(parts)
        members = db[rng.integers(0, n, 50)].astype(np.float32)
        return {"db": db, "q": img, "t": unit(members + 0.05 * unit(rng.standard_normal(members.shape, dtype=np.float32)))}
    if name.startswith("drift"):
        half = len(real) // 2
        first = round(int(name[5:]) / 100 * n)
        turn = rotation(rng, dim, dim)
        later = projected(mixture_rows(real[half:], n - first, seed=14), turn)
        return {"db": np.concatenate([mixture_rows(real[:half], first), later]), "q": img, "t": projected(img, turn)}
    if name == "ood":
        return {"db": mixture_rows(real, n), "q": txt, "t": gaussian(rng, 50, dim)}
    raise SystemExit(f"unknown shape {name!r}: use {', '.join(SHAPES)}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--shapes", type=lambda v: v.split(","), default=SHAPES)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "captioned-dev")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--real", type=int, default=100_000)
    ap.add_argument("--text-queries", type=int, default=50)
    args = ap.parse_args(argv)
    if args.cache is None:
        from binarizers import default_cache
        args.cache = default_cache()
    real, img, txt, _ = isotropic_sources(args)
    for name in args.shapes:
        arrays = shape(name, args.n, real, img, txt)
        (args.out / name).mkdir(parents=True, exist_ok=True)
        for key, array in arrays.items():
            np.save(args.out / name / f"{key}.npy", array)
        print(f"{name}: " + ", ".join(f"{key} {a.shape} {a.dtype}" for key, a in arrays.items()), flush=True)


if __name__ == "__main__":
    main()
