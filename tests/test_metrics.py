import numpy as np
import pytest

from glimpse.eval.metrics import median_rank, ranks, recall_at_k

# 3 queries x 4 items; relevant items 0, 2, 3.
SCORES = np.array(
    [
        [0.9, 0.1, 0.2, 0.3],  # item 0 is best -> rank 1
        [0.5, 0.8, 0.6, 0.1],  # item 2 (0.6) behind item 1 (0.8) -> rank 2
        [0.4, 0.3, 0.2, 0.1],  # item 3 is worst -> rank 4
    ]
)
RELEVANT = [0, 2, 3]


def test_ranks_hand_computed():
    assert ranks(SCORES, RELEVANT).tolist() == [1, 2, 4]


def test_recall_at_k():
    assert recall_at_k(SCORES, RELEVANT, 1) == pytest.approx(1 / 3)
    assert recall_at_k(SCORES, RELEVANT, 2) == pytest.approx(2 / 3)
    assert recall_at_k(SCORES, RELEVANT, [1, 3, 4]) == pytest.approx({1: 1 / 3, 3: 2 / 3, 4: 1.0})


def test_median_rank():
    assert median_rank(SCORES, RELEVANT) == 2.0
    assert median_rank(SCORES[:2], RELEVANT[:2]) == 1.5


def test_ties_count_against_relevant():
    # A constant scorer must not get every query at rank 1.
    flat = np.zeros((2, 5))
    assert ranks(flat, [0, 4]).tolist() == [5, 5]
    assert recall_at_k(flat, [0, 4], 1) == 0.0


def test_shape_checked():
    with pytest.raises(ValueError):
        ranks(SCORES, [0, 1])
