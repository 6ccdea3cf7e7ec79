"""Scores are cosines: whatever the calibration or the float16 storage, none passes 1."""

from __future__ import annotations

import numpy as np

from glimpse.upgrade.dual import on_new_scale


def test_an_old_self_score_mapped_onto_a_wider_new_scale_stays_a_cosine():
    rng = np.random.default_rng(0)
    sample_old = rng.normal(0.3, 0.05, 300)  # the query's own image is not in the sample: old max about 0.45
    sample_new = rng.normal(0.5, 0.15, 300)  # a wider new scale: ratio of spreads 3
    old = np.array([-1.0, -0.9, 0.2, 0.6, 0.9, 0.99, 1.0, 1.0004])  # 1.0004: a float16 self-score
    mapped = on_new_scale(old, sample_old, sample_new)
    assert mapped.max() <= 1 and mapped.min() >= -1
    assert np.all(np.diff(mapped[:-1]) > 0)  # the order of every score a cosine can take is kept
    stacked = on_new_scale(np.stack([old, old]), np.stack([sample_old] * 2), np.stack([sample_new] * 2))
    assert stacked.max() <= 1
