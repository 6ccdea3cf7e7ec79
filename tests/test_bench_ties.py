"""The recall scorer of ``benchmarks/search.py`` (issue 15): ties at the k-th score count as found."""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def search():
    return load_benchmark("search")


def test_identical_rows_tied_at_the_kth_score_count_as_found(search):
    rng = np.random.default_rng(0)
    copy = rng.standard_normal(16).astype(np.float32)
    stored = np.vstack([np.repeat(copy[None] / np.linalg.norm(copy), 30, axis=0),
                        rng.standard_normal((70, 16)).astype(np.float32) * 0.01]).astype(np.float16)
    query = (copy / np.linalg.norm(copy))[None].astype(np.float32)
    truth = np.arange(10)[None]  # FAISS's pick among 30 identical rows
    assert search.tied_recall(np.arange(20, 30)[None], truth, query, stored) == 1.0  # ids alone: 0.0
    assert search.tied_recall(np.r_[20:25, 40:45][None], truth, query, stored) == 0.5  # lower scores miss
    assert search.tied_recall(np.r_[20, 20, 20, 40:47][None], truth, query, stored) == 0.1  # an id counts once
