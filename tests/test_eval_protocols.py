"""Each protocol's figures on tiny hand-made ground truths, and configuration scoring."""

import numpy as np
import pytest

from glimpse.eval.configs import Config, Scorer, parse_configs
from glimpse.eval.datasets import Items, Judgement, Task, revisitop_judgements
from glimpse.eval.protocols import score_task


def arrays(lists):
    return [np.asarray(x, dtype=np.int64) for x in lists]


def task(protocol, positives, ignore=None, n_db=None, **options):
    n_q = len(positives)
    n_db = n_db or 1 + max(int(max(p, default=0)) for p in positives)
    return Task("t", Items("texts", texts=[f"q{i}" for i in range(n_q)]),
                Items("texts", texts=[f"d{i}" for i in range(n_db)]), protocol,
                {"": Judgement(arrays(positives), None if ignore is None else arrays(ignore))}, options)


def run(t, scores):
    scores = np.asarray(scores, dtype=np.float32)
    return score_task(t, lambda rows: scores[rows], len(scores))


def test_recall_protocol():
    scores = [[0.9, 0.1, 0.2], [0.1, 0.2, 0.9], [0.5, 0.5, 0.1]]
    out = run(task("recall", [[0], [1], [1]]), scores)
    # ranks: 1; 2; 2 (tied with item 0, which has the lower index: the reference order puts it first)
    assert out.figures["R@1"] == pytest.approx(1 / 3)
    assert out.figures["R@5"] == 1.0
    assert out.figures["MRR"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert out.figures["median rank"] == 2
    assert out.bounds["optimistic"]["R@1"] == pytest.approx(2 / 3)  # the tie broken for item 1
    assert out.bounds["pessimistic"]["R@1"] == pytest.approx(1 / 3)
    assert out.curve[1] == pytest.approx(1 / 3) and out.curve[2] == 1.0
    assert out.top[1].tolist() == [2, 1, 0]


def test_recall_median_rank_and_constant_scorer_as_open_clip():
    # Ranks 1 and 2: open_clip's median rank is the floor, 1.
    out = run(task("recall", [[0], [0]]), [[0.9, 0.1], [0.1, 0.9]])
    assert out.figures["median rank"] == 1
    # A constant scorer over two items: open_clip gets R@1 0.5 (ties in index order).
    out = run(task("recall", [[0], [1]]), np.zeros((2, 2)))
    assert out.figures["R@1"] == 0.5 and out.figures["median rank"] == 1
    assert out.bounds["pessimistic"]["R@1"] == 0.0 and out.bounds["optimistic"]["R@1"] == 1.0
    assert out.bounds["pessimistic"]["median rank"] == 2


def test_revisitop_easy_medium_hard():
    # Database items: 0 easy, 1 hard, 2 junk, 3 negative. Ranking by score: 2, 1, 3, 0.
    gnd = [{"easy": [0], "hard": [1], "junk": [2]}]
    t = Task("landmarks", Items("texts", texts=["q"]), Items("texts", texts=list("abcd")), "revisitop",
             revisitop_judgements(gnd))
    out = run(t, [[0.1, 0.8, 0.9, 0.5]])
    f = out.figures
    # E: hard and junk removed -> [3, 0]: easy at position 1 -> (0 + 1/2) / 2.
    assert f["E mAP"] == pytest.approx(0.25)
    assert f["E mP@1"] == 0.0 and f["E mP@5"] == pytest.approx(0.5)
    # M: junk removed -> [1, 3, 0]: positions 0 and 2 -> the trapezoid AP 0.7917.
    assert f["M mAP"] == pytest.approx((1 + (0.5 + 2 / 3) / 2) / 2)
    assert f["M mP@1"] == 1.0 and f["M mP@10"] == pytest.approx(2 / 3)
    # H: junk and easy removed -> [1, 3]: hard first.
    assert f["H mAP"] == 1.0 and f["H mP@5"] == 1.0


def test_revisitop_skips_queries_without_positives():
    gnd = [{"easy": [0], "hard": [], "junk": []}, {"easy": [1], "hard": [], "junk": []}]
    t = Task("l", Items("texts", texts=["a", "b"]), Items("texts", texts=["x", "y"]), "revisitop",
             revisitop_judgements(gnd))
    out = run(t, [[0.9, 0.1], [0.9, 0.1]])
    assert out.figures["H mAP"] != out.figures["H mAP"]  # NaN: no query has a hard positive
    assert out.figures["E mAP"] == pytest.approx((1 + 0.25) / 2)


def test_revisitop_item_both_positive_and_junk_is_a_positive():
    # Item 0 is easy and junk; ranking by score: 1, 0. revisitop counts it as a positive.
    gnd = [{"easy": [0], "hard": [], "junk": [0]}]
    t = Task("l", Items("texts", texts=["a"]), Items("texts", texts=["x", "y"]), "revisitop", revisitop_judgements(gnd))
    f = run(t, [[0.1, 0.9]]).figures
    assert f["M mAP"] == pytest.approx(0.25) and f["E mAP"] == pytest.approx(0.25)
    assert f["M mP@1"] == 0.0 and f["M mP@5"] == pytest.approx(0.5)  # numbers, not NaN


def test_groups_map_excludes_query_and_ns_counts_it():
    # Two queries (database items 0 and 3), groups {0,1,2} and {3,4}.
    t = Task("g", Items("texts", texts=["a", "b"]), Items("texts", texts=list("abcde")), "groups",
             {"": Judgement(arrays([[1, 2], [4]]), arrays([[0], [3]])),
              "with query": Judgement(arrays([[0, 1, 2], [3, 4]]))}, {"ns": True})
    scores = [[1.0, 0.2, 0.8, 0.5, 0.1], [0.3, 0.2, 0.1, 1.0, 0.05]]
    out = run(t, scores)
    # q0 without itself: [2, 3, 1, 4] -> relevant at 1 and 3; q1: [0, 1, 2, 4] -> relevant at 4.
    # INRIA Holidays' trapezoid AP: q0 (1 + (1/2 + 2/3) / 2) / 2, q1 (0 + 1/4) / 2.
    assert out.figures["mAP"] == pytest.approx(((1 + (0.5 + 2 / 3) / 2) / 2 + 0.125) / 2)
    # N-S (top 4 with the query): q0 has 0, 2, 1 -> 3; q1 has only 3 -> 1.
    assert out.figures["N-S"] == pytest.approx(2.0)


def test_groups_map_is_holidays_ap():
    # The smallest case: one relevant image at rank 2 (the query itself removed) -> 0.25, not 0.5.
    t = Task("g", Items("texts", texts=["a"]), Items("texts", texts=list("abc")), "groups",
             {"": Judgement(arrays([[2]]), arrays([[0]])), "with query": Judgement(arrays([[0, 2]]))})
    assert run(t, [[1.0, 0.5, 0.2]]).figures["mAP"] == pytest.approx(0.25)


def test_hashing_map_at_k_and_tie_orders():
    # One query; Hamming similarities with a four-way tie; relevant items 0 and 3.
    t = task("hashing", [[0, 3]], n_db=6, map_at=2)
    out = run(t, [[1.0, 0.5, 0.5, 0.5, 0.5, -1.0]])
    assert out.figures["mAP"] == pytest.approx((1 + 2 / 4) / 2)  # reference: item 3 after 1 and 2, rank 4
    assert out.bounds["pessimistic"]["mAP"] == pytest.approx((1 + 2 / 5) / 2)  # last of the tie: rank 5
    assert out.bounds["optimistic"]["mAP"] == pytest.approx(1.0)  # first of the tie: rank 2
    assert out.figures["mAP@2"] == pytest.approx(1.0)  # only the rank-1 item is within the top 2


def test_hashing_tie_orders_do_not_bound_map_at_k():
    # The case: Hamming distances [0, 1, 2, 2], relevant {0, 2}, k = 3.
    t = task("hashing", [[0, 2]], n_db=4, map_at=3)
    out = run(t, [[-0.0, -1.0, -2.0, -2.0]])
    assert out.figures["mAP@3"] == pytest.approx(5 / 6)  # CalcTopMap's figure
    assert out.bounds["pessimistic"]["mAP@3"] == 1.0  # above the reference and the optimistic figure
    assert out.bounds["optimistic"]["mAP@3"] == pytest.approx(5 / 6)
    assert out.bounds["pessimistic"]["mAP"] == pytest.approx(0.75)  # mAP@all: pessimistic is the lower bound
    assert out.figures["mAP"] == pytest.approx(5 / 6)


def test_copy_protocol_with_breakdown():
    t = task("copy", [[0], [1], [1]])
    t.breakdown = {"crop": np.array([0, 1]), "flip": np.array([2])}
    out = run(t, [[0.9, 0.1], [0.95, 0.3], [0.1, 0.7]])
    assert out.figures["mAP"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert out.figures["R@1"] == pytest.approx(2 / 3)
    assert out.breakdown["crop"]["R@1"] == 0.5 and out.breakdown["flip"]["R@1"] == 1.0
    assert out.quality.tolist() == pytest.approx([1, 0.5, 1])


def test_composed_recall_and_subset():
    # Reference = database item 0 (excluded); target item 2; the subset is {0, 2, 3}.
    t = Task("c", Items("texts", texts=["q"]), Items("texts", texts=list("abcde")), "composed",
             {"": Judgement(arrays([[2]]), arrays([[0]])),
              "subset": Judgement(arrays([[2]]), arrays([[0, 1, 4]]))}, {"ks": (1, 5)})
    out = run(t, [[1.0, 0.9, 0.5, 0.4, 0.8]])
    # Whole database without the reference: 1, 4, 2 -> rank 3. Subset without reference: 2 first.
    assert out.figures["R@1"] == 0.0 and out.figures["R@5"] == 1.0
    assert out.figures["R_subset@1"] == 1.0


def test_parse_configs():
    names = [c.name for c in parse_configs("learned:256,itq:128:asym")]
    assert names == ["float", "learned-256", "learned-256 +rerank100", "itq-128-asym", "itq-128-asym +rerank100"]
    assert [c.name for c in parse_configs("")] == ["float"]
    for bad in ("learned", "learned:abc", "nope:64", "itq:100", "itq:64:fast"):
        with pytest.raises(ValueError):
            parse_configs(bad)
    assert Config("sign", 256).bytes_per_image(1664) == 40 and Config().bytes_per_image(1664) == 6656


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("spec", ["float", "itq:16", "itq:16:asym", "itq:16:cascade"])
def test_eval_scores_are_the_backends_search_results(vectors, spec):
    """Each configuration's ranking is what the engine's backend returns, ids and scores alike.

    The backend is built as a collection builds it (float32 vectors behind the re-rank) and
    asked as a collection asks it: k = 10, oversample = shortlist / 10."""
    from glimpse.backends import FlatIndex
    from glimpse.backends.base import CodeStage
    from glimpse.backends.binary import BinaryIndex

    db, queries = vectors[:250], vectors[250:]
    configs = parse_configs("" if spec == "float" else spec, shortlist=40)
    for config in configs[1:] if spec != "float" else configs:
        scorer = Scorer.prepare(config, db)
        got = scorer.scores(queries)
        if config.binarizer is None:
            index = FlatIndex(db.shape[1])
            index.add(np.arange(len(db)), db)
            want_scores, want_ids = index.search(queries, 10)
        else:
            index = BinaryIndex(scorer.binarizer, lambda ids: db[ids])
            index.add(np.arange(len(db)), db)  # codes of the same fit, encoded again
            # Codes only, a cascade's ranking is its search at k = shortlist (the shortlist is its code stage).
            k = 10 if config.rerank or config.scoring != "cascade" else 40
            want_scores, want_ids = index.search(queries, k, stage=CodeStage(scoring=config.scoring, oversample=4, rerank=config.rerank))
            want_scores, want_ids = want_scores[:, :10], want_ids[:, :10]
        # The backend's results carry the harness's scores, and they are its 10 best.
        assert np.array_equal(np.take_along_axis(got, want_ids, axis=1), want_scores), config.name
        assert np.array_equal(-np.sort(-got, axis=1)[:, :10], want_scores), config.name
        if config.rerank or config.binarizer is None:  # exact cosines, no ties: the very same ids, in order
            assert np.array_equal(np.argsort(-got, axis=1, kind="stable")[:, :10], want_ids), config.name


def test_codes_only_scores_are_hamming_similarities(vectors):
    from glimpse.codes import hamming_distances

    scorer = Scorer.prepare(Config("sign", 32), vectors)
    s = scorer.scores(vectors[:5])
    d = hamming_distances(scorer.binarizer.encode(vectors[:5]), scorer.codes)
    assert s == pytest.approx(1 - 2 * d / 32)
    # Re-rank: the shortlist comes first, in exact order, above every other item.
    rr = Scorer.prepare(Config("sign", 32, rerank=True, shortlist=20), vectors).scores(vectors[:5])
    top = np.argsort(-rr, axis=1)[:, :20]
    assert (np.sort(top, axis=1) == np.sort(np.argsort(-s, axis=1, kind="stable")[:, :20], axis=1)).all()
    assert rr[0, 0] == pytest.approx(1.0, abs=1e-5)  # a query's own vector wins after re-rank


def test_too_few_vectors_to_fit_is_a_clear_error(vectors):
    # The default codes (learned:256) on a small folder: it said "use fewer bits", of bits never given.
    with pytest.raises(ValueError, match=r"needs at least .*--codes itq:N\) or score float search only \(--codes ''\)"):
        Scorer.prepare(Config("itq", 32), vectors[:10])


def test_fitted_binarizers_are_kept_across_runs(vectors, tmp_path):
    first = Scorer.prepare(Config("itq", 16), vectors, store=tmp_path)
    assert len(list(tmp_path.glob("binarizer-itq-*.npz"))) == 1
    again = Scorer.prepare(Config("itq", 16, rerank=True), vectors, store=tmp_path)
    assert np.array_equal(again.codes, first.codes)
    Scorer.prepare(Config("itq", 16), vectors[:-1], store=tmp_path)  # other data: fitted anew
    assert len(list(tmp_path.glob("binarizer-itq-*.npz"))) == 2
    # The same vectors in another order (another adapter over one folder) reuse the fit.
    shuffled = Scorer.prepare(Config("itq", 16), vectors[::-1], store=tmp_path)
    assert len(list(tmp_path.glob("binarizer-itq-*.npz"))) == 2
    assert np.array_equal(shuffled.codes, first.codes[::-1])
