import numpy as np
import pytest

from glimpse.encoders import l2_normalize
from glimpse.query.refine import REFINES, refine


def store(n=40, dim=16, seed=0):
    vectors = l2_normalize(np.random.default_rng(seed).standard_normal((n, dim)))
    ids = np.arange(1000, 1000 + n, dtype=np.int64)  # ids are not rows: the reader maps them
    by_id = dict(zip(ids.tolist(), vectors))
    return ids, vectors, lambda wanted: np.stack([by_id[int(i)] for i in wanted])


@pytest.mark.parametrize("method", REFINES)
def test_rerank_is_pure_and_works_on_a_plain_candidate_list(method):
    ids, vectors, read = store()
    query = l2_normalize(vectors[3] + 0.3 * vectors[7])
    scores = vectors @ query
    order = np.argsort(-scores)[:25]
    cand_ids, cand_scores = ids[order].copy(), scores[order].copy()
    first = refine(method, query, cand_ids, cand_scores, read)
    second = refine(method, query, cand_ids, cand_scores, read)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert np.array_equal(cand_ids, ids[order]) and np.array_equal(cand_scores, scores[order])  # inputs untouched
    assert sorted(first[0].tolist()) == sorted(cand_ids.tolist())  # a re-ordering, nothing new
    assert np.all(np.diff(first[1]) <= 1e-6)  # best first


def test_aqe_pulls_towards_the_top_candidates_cluster():
    rng = np.random.default_rng(1)
    centre = l2_normalize(rng.standard_normal(32))
    cluster = l2_normalize(centre + 0.35 * rng.standard_normal((6, 32)))
    others = l2_normalize(rng.standard_normal((30, 32)))
    vectors = np.concatenate([cluster, others])
    ids = np.arange(len(vectors))
    query = l2_normalize(cluster[0] + 0.8 * others[0])
    scores = vectors @ query
    order = np.argsort(-scores)
    new_ids, _ = refine("aqe", query, ids[order], scores[order], lambda i: vectors[i], n=2)
    in_top = lambda ranked: len(set(ranked[:6].tolist()) & set(range(6)))  # noqa: E731
    assert in_top(new_ids) >= in_top(ids[order])


def test_bad_input_is_refused():
    ids, vectors, read = store()
    with pytest.raises(ValueError, match="unknown refine"):
        refine("magic", vectors[0], ids[:3], np.zeros(3), read)
    with pytest.raises(ValueError, match="same length"):
        refine("aqe", vectors[0], ids[:3], np.zeros(2), read)
    one = refine("superglobal", vectors[0], ids[:1], np.ones(1), read)
    assert one[0].tolist() == ids[:1].tolist()
