"""The hubness re-ranking of ``benchmarks/hubness.py`` (issue 16): a planted hub loses its place in the top."""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def hubness():
    return load_benchmark("hubness")


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def gallery(dim: int = 64, photos: int = 40):
    """Photos on (nearly) their own axes plus a hub on their mean. Each query is its photo's axis pulled
    towards the hub, so raw cosine ranks the hub first for every query; the bank holds queries of the
    same kind for photos outside the gallery (the other axes)."""
    rng = np.random.default_rng(0)
    axes = unit(np.eye(dim)[:photos] + 0.01 * rng.standard_normal((photos, dim)))
    hub = unit(axes.sum(axis=0, keepdims=True))
    images = np.vstack([axes, hub])
    queries = unit(axes + 1.2 * hub)
    bank = unit(np.eye(dim)[photos:] + 1.2 * hub)
    return images, queries, bank


def test_a_planted_hub_falls_below_the_photos_it_crowded_out(hubness):
    images, queries, bank_vectors = gallery()
    ids = np.arange(len(images))
    target = np.arange(len(queries))
    bank = hubness.Bank(bank_vectors, np.full(len(bank_vectors), -1))
    raw = hubness.corrected_ranks(queries, images, ids, target, bank, hubness.NONE, depth=20)
    assert np.all(raw == 2)  # the hub is above every query's photo
    fixed = hubness.corrected_ranks(queries, images, ids, target, bank, hubness.Setting("csls", 5, 1.0), depth=20)
    assert np.all(fixed == 1)


def test_rows_past_the_depth_keep_their_raw_rank(hubness):
    images, queries, bank_vectors = gallery()
    ids = np.arange(len(images))
    bank = hubness.Bank(bank_vectors, np.full(len(bank_vectors), -1))
    scores = queries @ images.T
    last = np.argsort(-scores, axis=1)[:, -1]  # each query's lowest photo, far past a depth of 5
    raw = hubness.corrected_ranks(queries, images, ids, last, bank, hubness.NONE, depth=5)
    fixed = hubness.corrected_ranks(queries, images, ids, last, bank, hubness.Setting("is", 0.05, 1.0), depth=5)
    assert np.all(raw > 5) and np.array_equal(raw, fixed)


def test_a_photos_own_captions_never_enter_its_hub_score(hubness):
    images, _, _ = gallery()
    ids = np.arange(len(images))
    own = images[:3] * 1.0  # captions identical to photos 0-2
    setting = hubness.Setting("csls", 1, 1.0)
    mine = hubness.Bank(own, np.arange(3)).hub(images, ids, setting)
    theirs = hubness.Bank(own, np.full(3, -1)).hub(images, ids, setting)
    assert np.allclose(theirs[:3], 1.0) and np.all(mine[:3] < 0.99)
    assert np.allclose(mine[3:], theirs[3:])
