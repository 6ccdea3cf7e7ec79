"""Each metric pinned to its published definition on small hand-built cases.

The ``literal_*`` helpers below write the definitions out step by step, as their papers and
evaluation kits state them, so the vectorised metrics are checked against an independent
reading rather than against themselves.
"""

import itertools

import numpy as np
import pytest

from glimpse.metrics import (
    TIES,
    average_precision,
    average_precision_at_k,
    count_in_top,
    first_ranks,
    mean_reciprocal_rank,
    median_of_ranks,
    median_rank,
    precision_at_k,
    query_tie_ranks,
    ranks,
    recall_at_k,
    recall_from_ranks,
    revisitop_precision_at_k,
    tie_ranks,
    trapezoid_average_precision,
)

# 3 queries x 4 items; relevant items 0, 2, 3.
SCORES = np.array(
    [
        [0.9, 0.1, 0.2, 0.3],  # item 0 is best -> rank 1
        [0.5, 0.8, 0.6, 0.1],  # item 2 (0.6) behind item 1 (0.8) -> rank 2
        [0.4, 0.3, 0.2, 0.1],  # item 3 is worst -> rank 4
    ]
)
RELEVANT = [0, 2, 3]


# -- literal readings of the reference definitions -------------------------------------------


def literal_positions(ranking: list[int], positives: set[int], junk: set[int]) -> list[int]:
    """revisitop's positions: each positive's 0-based place minus the junk strictly above it.

    An item in both sets is a positive at its own place and junk for everything below it.
    """
    out = []
    for place, item in enumerate(ranking):
        if item in positives:
            out.append(place - sum(1 for above in ranking[:place] if above in junk))
    return out


def literal_trapezoid_ap(positions: list[int], n_relevant: int) -> float:
    """INRIA Holidays / revisitop: trapezoids under the precision-recall curve."""
    ap = 0.0
    for j, r in enumerate(positions):  # 0-based positions of relevant items, junk removed
        left = 1.0 if r == 0 else j / r
        right = (j + 1) / (r + 1)
        ap += (left + right) / 2 / n_relevant
    return ap


def literal_holidays_ap(results: list[str], query: str, relevant: set[str]) -> float:
    """holidays_map.py: the query's own entry in its result list is skipped, not counted."""
    positions, seen_query = [], 0
    for place, name in enumerate(results):
        if name == query:
            seen_query = 1
        elif name in relevant:
            positions.append(place - seen_query)
    return literal_trapezoid_ap(positions, len(relevant))


def literal_calc_top_map(distances: list[float], relevant: set[int], k: int) -> float:
    """DeepHash-pytorch CalcTopMap for one query: stable sort by distance, the top k, mean
    precision at the relevant ones found there (0 when none is)."""
    order = sorted(range(len(distances)), key=lambda i: distances[i])[:k]
    hits, precisions = 0, []
    for place, item in enumerate(order, 1):
        if item in relevant:
            hits += 1
            precisions.append(hits / place)
    return sum(precisions) / len(precisions) if precisions else 0.0


def literal_revisitop_precision(positions: list[int], k: int) -> float:
    """revisitop mP@k for one query: the cut-off shrinks to the last positive's 1-based rank."""
    ranks_ = [p + 1 for p in positions]
    cut = min(max(ranks_), k)
    return sum(1 for r in ranks_ if r <= cut) / cut


def literal_open_clip_median(zero_based: list[int]) -> int:
    """open_clip: floor of the median of 0-based positions, plus one."""
    s = sorted(zero_based)
    n = len(s)
    middle = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return int(np.floor(middle)) + 1


# -- rankings and tie orders ------------------------------------------------------------------


def test_tie_orders_hand_computed():
    row = np.array([0.5, 0.5, 0.5, 0.9])
    got = tie_ranks(row, [0, 2])
    # Reference: by index among equals -> 3, 0, 1, 2. Pessimistic: 3, 1, 0, 2. Optimistic: 3, 0, 2, 1.
    assert got["reference"].tolist() == [2, 4]
    assert got["pessimistic"].tolist() == [3, 4]
    assert got["optimistic"].tolist() == [2, 3]
    assert set(got) == set(TIES)


def test_ignored_items_leave_the_ranking():
    row = np.array([0.9, 0.5, 0.5, 0.1])
    assert tie_ranks(row, [2], ignore=[0])["reference"].tolist() == [2]
    assert tie_ranks(row, [2], ignore=[0])["pessimistic"].tolist() == [2]
    assert tie_ranks(row, [2], ignore=[1])["pessimistic"].tolist() == [2]


def test_reference_order_is_a_stable_sort_and_bounds_hold_for_every_tie_break():
    """Random Hamming-like scores: the reference order is a stable sort by score, and no
    ordering of tied items puts a relevant item above its optimistic or below its pessimistic rank."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(2, 9))
        row = rng.integers(0, 3, n).astype(float)
        positives = np.flatnonzero(rng.random(n) < 0.4)
        got = tie_ranks(row, positives)
        stable = list(np.argsort(-row, kind="stable"))
        assert got["reference"].tolist() == [p + 1 for p in literal_positions(stable, set(positives), set())]
        # Every tie-break: any permutation that keeps the score order.
        for perm in itertools.permutations(range(n)):
            if any(row[a] < row[b] for a, b in zip(perm, perm[1:])):
                continue
            r = np.array([p + 1 for p in literal_positions(list(perm), set(positives), set())])
            assert (got["optimistic"] <= r).all() and (r <= got["pessimistic"]).all()


def test_query_tie_ranks_rows():
    out = query_tie_ranks(SCORES, [np.array([0]), np.array([2, 1]), np.array([3])])
    assert [r.tolist() for r in out["reference"]] == [[1], [1, 2], [4]]
    assert first_ranks(out["reference"] + [np.array([], dtype=np.int64)]).tolist() == [1, 1, 4, np.inf]
    with pytest.raises(ValueError):
        query_tie_ranks(SCORES, [np.array([0])])


# -- single relevant item from a score matrix (open_clip's R@K and median rank) ---------------


def test_ranks_hand_computed():
    assert ranks(SCORES, RELEVANT).tolist() == [1, 2, 4]


def test_recall_at_k():
    assert recall_at_k(SCORES, RELEVANT, 1) == pytest.approx(1 / 3)
    assert recall_at_k(SCORES, RELEVANT, 2) == pytest.approx(2 / 3)
    assert recall_at_k(SCORES, RELEVANT, [1, 3, 4]) == pytest.approx({1: 1 / 3, 3: 2 / 3, 4: 1.0})


def test_median_rank_is_open_clips_floor():
    assert median_rank(SCORES, RELEVANT) == 2.0
    # Ranks [1, 2]: open_clip reports 1 (np.median would say 1.5).
    assert median_rank(SCORES[:2], RELEVANT[:2]) == 1.0
    for ranks_ in ([1, 2], [1, 2, 3, 4], [3, 8], [5], [2, 2, 9, 10]):
        assert median_of_ranks(ranks_) == literal_open_clip_median([r - 1 for r in ranks_])
    assert np.isnan(median_of_ranks([]))


def test_constant_scorer_two_items_is_open_clips_half():
    # Two queries, each relevant to its own item, every score equal: open_clip's argsort keeps
    # index order, so query 0 finds item 0 first and query 1 finds item 1 second: R@1 = 0.5.
    flat = np.zeros((2, 2))
    assert ranks(flat, [0, 1]).tolist() == [1, 2]
    assert recall_at_k(flat, [0, 1], 1) == 0.5
    assert recall_at_k(flat, [0, 1], 1, ties="pessimistic") == 0.0
    assert recall_at_k(flat, [0, 1], 1, ties="optimistic") == 1.0


def test_single_relevant_ranks_agree_with_tie_ranks():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (30, 12)).astype(float)
    relevant = rng.integers(0, 12, 30)
    for ties in TIES:
        want = [tie_ranks(row, [r])[ties][0] for row, r in zip(scores, relevant)]
        assert ranks(scores, relevant, ties).tolist() == want


def test_bad_arguments():
    with pytest.raises(ValueError):
        ranks(SCORES, [0, 1])
    with pytest.raises(ValueError, match="ties must be one of"):
        ranks(SCORES, RELEVANT, ties="random")


# -- figures from ranks ------------------------------------------------------------------------


def test_average_precision_hand_computed():
    # Relevant at ranks 1 and 3: (1/1 + 2/3) / 2.
    assert average_precision([1, 3]) == pytest.approx((1 + 2 / 3) / 2)
    # A third relevant item never retrieved counts zero.
    assert average_precision([1, 3], n_relevant=3) == pytest.approx((1 + 2 / 3) / 3)


def test_average_precision_at_k_is_calc_top_map():
    # Relevant at 1, 3, 6; AP@5 averages precision over the two inside the top 5 only.
    assert average_precision_at_k([1, 3, 6], 5) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision_at_k([1, 3, 6], 2) == 1.0
    assert average_precision_at_k([4, 9], 3) == 0.0
    rng = np.random.default_rng(11)
    for _ in range(100):
        distances = rng.integers(0, 5, 10).astype(float)
        relevant = set(np.flatnonzero(rng.random(10) < 0.3).tolist())
        k = int(rng.integers(1, 11))
        got = tie_ranks(-distances, sorted(relevant))["reference"]
        assert average_precision_at_k(got, k) == pytest.approx(literal_calc_top_map(list(distances), relevant, k))


def test_tie_bounds_do_not_bound_map_at_k():
    # The case: distances [0, 1, 2, 2], relevant {0, 2}, k = 3.
    got = tie_ranks(-np.array([0.0, 1, 2, 2]), [0, 2])
    at3 = {t: average_precision_at_k(r, 3) for t, r in got.items()}
    assert at3["pessimistic"] == 1.0  # item 2 pushed out of the top 3
    assert at3["optimistic"] == pytest.approx(5 / 6)
    assert at3["reference"] == pytest.approx(literal_calc_top_map([0, 1, 2, 2], {0, 2}, 3)) == pytest.approx(5 / 6)
    # mAP@all is bounded: pessimistic lowest.
    full = {t: average_precision(r, 2) for t, r in got.items()}
    assert full["pessimistic"] == pytest.approx(0.75) and full["optimistic"] == full["reference"] == pytest.approx(5 / 6)


@pytest.mark.parametrize("ranks_, n", [([1, 3], 2), ([2], 1), ([1, 2, 7, 8], 5), ([5, 6, 20], 3)])
def test_trapezoid_ap_matches_the_literal_definition(ranks_, n):
    assert trapezoid_average_precision(ranks_, n) == pytest.approx(literal_trapezoid_ap([r - 1 for r in ranks_], n))


def test_trapezoid_ap_hand_computed():
    # The smallest case: one relevant image at rank 2 -> (0 + 1/2) / 2 (non-interpolated: 0.5).
    assert trapezoid_average_precision([2], 1) == pytest.approx(0.25)
    assert average_precision([2], 1) == pytest.approx(0.5)
    # Positions 0 and 2: (1 + 1)/2 + (1/2 + 2/3)/2, over 2 relevant -> 0.7917 (plain AP: 0.8333).
    assert trapezoid_average_precision([1, 3], 2) == pytest.approx((1 + (0.5 + 2 / 3) / 2) / 2)
    assert np.isnan(trapezoid_average_precision([], 0))


def test_holidays_ap_with_the_query_in_its_own_results():
    # holidays_map.py: results list the query at rank 1; it is skipped and the rest move up.
    results = ["q", "a", "x", "b", "y"]
    want = literal_holidays_ap(results, "q", {"a", "b"})
    scores = np.array([5.0, 4, 3, 2, 1])  # the same ranking as scores over items 0..4
    got = tie_ranks(scores, [1, 3], ignore=[0])["reference"]
    assert got.tolist() == [1, 3]
    assert trapezoid_average_precision(got, 2) == pytest.approx(want) == pytest.approx((1 + (0.5 + 2 / 3) / 2) / 2)


def test_revisitop_precision_cut_at_last_relevant():
    assert revisitop_precision_at_k([1, 2], 10) == 1.0  # cut shrinks to 2
    assert revisitop_precision_at_k([2, 5], 1) == 0.0
    assert revisitop_precision_at_k([2, 5], 5) == pytest.approx(2 / 5)
    assert precision_at_k([1, 2], 10) == pytest.approx(0.2)  # plain P@10 for contrast
    for positions in ([0], [3], [0, 4, 9], [2, 3, 14]):
        for k in (1, 5, 10):
            assert revisitop_precision_at_k([p + 1 for p in positions], k) == pytest.approx(
                literal_revisitop_precision(positions, k))


def test_item_both_positive_and_junk_counts_as_positive():
    """revisitop's compute_map: such an item is a positive at its place, junk for those below."""
    scores = np.array([0.1, 0.9, 0.5])  # ranking: 1, 2, 0
    got = tie_ranks(scores, [0], ignore=[0, 1])["reference"]  # item 0 both positive and junk
    assert got.tolist() == [2]  # junk item 1 above it is removed; item 0 itself stays
    assert trapezoid_average_precision(got, 1) == pytest.approx(0.25)
    assert revisitop_precision_at_k(got, 5) == pytest.approx(0.5)  # a number, not NaN
    # Below an overlapping item, positives move up one more place, as compute_map computes.
    ranking, positives, junk = [3, 0, 2, 1, 4], {0, 2, 4}, {0, 1}
    scores = np.zeros(5)
    scores[ranking] = [5, 4, 3, 2, 1]
    want = literal_positions(ranking, positives, junk)
    assert want == [1, 1, 2]
    for ties in TIES:  # no tied scores: every order agrees
        assert tie_ranks(scores, sorted(positives), sorted(junk))[ties].tolist() == [p + 1 for p in want]


def test_reciprocal_rank_ns_and_recall():
    assert mean_reciprocal_rank([1, 2, 4]) == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert mean_reciprocal_rank([np.inf, 1]) == pytest.approx(0.5)
    assert count_in_top([1, 2, 5, 9], 4) == 2
    assert recall_from_ranks([1, 3, np.inf], 3) == pytest.approx(2 / 3)


def test_pessimistic_bounds_every_figure_but_ap_at_k_from_below():
    """Per the module docstring: random tied cases, every tie-break order between the bounds."""
    rng = np.random.default_rng(5)
    figures = {
        "AP": lambda r, n: average_precision(r, n),
        "trapezoid AP": trapezoid_average_precision,
        "revisitop P@3": lambda r, n: revisitop_precision_at_k(r, 3),
        "P@3": lambda r, n: precision_at_k(r, 3),
        "R@2": lambda r, n: recall_from_ranks(first_ranks([r]), 2),
        "RR": lambda r, n: mean_reciprocal_rank(first_ranks([r])),
    }
    for _ in range(300):
        n = 7
        row = rng.integers(0, 3, n).astype(float)
        positives = np.flatnonzero(rng.random(n) < 0.4)
        if not len(positives):
            continue
        got = tie_ranks(row, positives)
        shuffled = rng.permutation(n)
        any_order = shuffled[np.argsort(-row[shuffled], kind="stable")]  # a random tie-break
        r = np.array([p + 1 for p in literal_positions(list(any_order), set(positives), set())])
        for name, f in figures.items():
            low, high, mid = (f(got[t], len(positives)) for t in ("pessimistic", "optimistic", "reference"))
            assert low - 1e-12 <= f(r, len(positives)) <= high + 1e-12, name
            assert low - 1e-12 <= mid <= high + 1e-12, name
