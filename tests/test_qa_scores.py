"""Scores are cosines: whatever the calibration or the float16 storage, none passes 1."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.upgrade.dual import on_new_scale

runner = CliRunner()


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


def test_a_self_score_read_from_float16_vectors_shows_at_most_1_and_keeps_the_order(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    self_scores = np.einsum("ij,ij->i", vectors.astype(np.float16).astype(np.float32), vectors)
    query = vectors[int(np.argmax(self_scores))]  # stored as float16, its score to itself is above 1
    assert self_scores.max() > 1
    np.save(tmp_path / "v.npy", np.stack([query, vectors[0]]))
    assert runner.invoke(app, ["import-vectors", str(tmp_path / "v.npy"), "-c", str(tmp_path / "col")]).exit_code == 0
    col = glimpse.open(tmp_path / "col")
    hits = col.search(vector=query, k=2)
    assert [h.path for h in hits] == ["v.npy/0", "v.npy/1"] and hits[0].score == 1.0
    assert [h.score for h in col.search(vector=query, k=2, min_score=1.0)] == [1.0]
