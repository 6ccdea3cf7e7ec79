"""Dual-space scoring's calibration: old-space scores put on a query's new scale."""

from __future__ import annotations

import numpy as np

from glimpse.upgrade.dual import on_new_scale


def test_an_old_score_takes_the_new_score_at_its_quantile_whatever_the_shapes():
    rng = np.random.default_rng(0)
    sample_old = rng.normal(0.2, 0.05, 2000)  # symmetric
    sample_new = 0.1 + rng.exponential(0.04, 2000)  # skewed: a long upper tail, as text scores often have
    for q in (0.5, 0.9, 0.99):
        mapped = on_new_scale(np.array([np.quantile(sample_old, q)]), sample_old, sample_new)[0]
        assert abs(np.mean(sample_new <= mapped) - q) < 0.005
    scores = np.linspace(0.0, 0.5, 500)  # beyond the sample's extremes too
    assert np.all(np.diff(on_new_scale(scores, sample_old, sample_new)) > 0)  # old/old order kept
    stacked = on_new_scale(np.stack([scores, scores]), np.stack([sample_old, sample_old]), np.stack([sample_new] * 2))
    assert np.allclose(stacked[1], on_new_scale(scores, sample_old, sample_new))
