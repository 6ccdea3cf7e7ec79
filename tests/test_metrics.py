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


# -- rankings with ties and ignored items ---------------------------------------------------

from glimpse.eval.metrics import (  # noqa: E402
    average_precision,
    average_precision_at_k,
    count_in_top,
    first_ranks,
    mean_reciprocal_rank,
    positive_ranks,
    precision_at_k,
    query_positive_ranks,
    revisitop_average_precision,
    revisitop_precision_at_k,
)


def test_positive_ranks_ties_and_ignore():
    row = np.array([0.9, 0.5, 0.5, 0.1])
    # Item 2 ties with item 1: pessimistic puts the non-relevant item 1 first.
    assert positive_ranks(row, [2]).tolist() == [3]
    assert positive_ranks(row, [2], ties="optimistic").tolist() == [2]
    # Ignored items leave the list: without item 0 the same item is at 2.
    assert positive_ranks(row, [2], ignore=[0]).tolist() == [2]
    # Tied relevant items take consecutive places after the tied non-relevant ones.
    assert positive_ranks(np.array([0.5, 0.5, 0.5, 0.9]), [0, 2]).tolist() == [3, 4]
    with pytest.raises(ValueError):
        positive_ranks(row, [0], ties="random")


def test_query_positive_ranks_rows():
    out = query_positive_ranks(SCORES, [np.array([0]), np.array([2, 1]), np.array([3])])
    assert [r.tolist() for r in out] == [[1], [1, 2], [4]]
    assert first_ranks(out + [np.array([], dtype=np.int64)]).tolist() == [1, 1, 4, np.inf]


def test_average_precision_hand_computed():
    # Relevant at ranks 1 and 3: (1/1 + 2/3) / 2.
    assert average_precision([1, 3]) == pytest.approx((1 + 2 / 3) / 2)
    # A third relevant item never retrieved counts zero.
    assert average_precision([1, 3], n_relevant=3) == pytest.approx((1 + 2 / 3) / 3)


def test_average_precision_at_k_is_deephash_calc_top_map():
    # Relevant at 1, 3, 6; AP@5 averages precision over the two inside the top 5 only.
    assert average_precision_at_k([1, 3, 6], 5) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision_at_k([1, 3, 6], 2) == 1.0
    assert average_precision_at_k([4, 9], 3) == 0.0


def revisitop_reference_ap(positions: list[int], n_relevant: int) -> float:
    """The protocol's definition written out literally: trapezoids under the P-R curve."""
    ap = 0.0
    for j, r in enumerate(positions):  # 0-based positions of relevant items, junk removed
        p0 = 1.0 if r == 0 else j / r
        p1 = (j + 1) / (r + 1)
        ap += (p0 + p1) / 2 / n_relevant
    return ap


@pytest.mark.parametrize("ranks_, n", [([1, 3], 2), ([2], 1), ([1, 2, 7, 8], 5), ([5, 6, 20], 3)])
def test_revisitop_ap_matches_reference_definition(ranks_, n):
    assert revisitop_average_precision(ranks_, n) == pytest.approx(
        revisitop_reference_ap([r - 1 for r in ranks_], n))


def test_revisitop_ap_interpolation_hand_computed():
    # Positions 0 and 2: (1 + 1)/2 + (1/2 + 2/3)/2, over 2 relevant -> 0.7917 (plain AP: 0.8333).
    assert revisitop_average_precision([1, 3], 2) == pytest.approx((1 + (0.5 + 2 / 3) / 2) / 2)
    assert revisitop_average_precision([2], 1) == pytest.approx(0.25)  # (0 + 1/2) / 2
    assert np.isnan(revisitop_average_precision([], 0))


def test_revisitop_precision_cut_at_last_relevant():
    assert revisitop_precision_at_k([1, 2], 10) == 1.0  # cut shrinks to 2
    assert revisitop_precision_at_k([2, 5], 1) == 0.0
    assert revisitop_precision_at_k([2, 5], 5) == pytest.approx(2 / 5)
    assert precision_at_k([1, 2], 10) == pytest.approx(0.2)  # plain P@10 for contrast


def test_reciprocal_rank_and_ns_score():
    assert mean_reciprocal_rank([1, 2, 4]) == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert mean_reciprocal_rank([np.inf, 1]) == pytest.approx(0.5)
    assert count_in_top([1, 2, 5, 9], 4) == 2


def test_hamming_ties_pessimistic_lower_bound():
    # 8-bit Hamming similarities: four items tie at 0.5, one relevant among them.
    row = np.array([1.0, 0.5, 0.5, 0.5, 0.5, -1.0])
    relevant = [0, 3]
    low = average_precision(positive_ranks(row, relevant), 2)
    high = average_precision(positive_ranks(row, relevant, ties="optimistic"), 2)
    assert low == pytest.approx((1 + 2 / 5) / 2)  # relevant 3 placed last of the tie: rank 5
    assert high == pytest.approx(1.0)  # placed first: rank 2
