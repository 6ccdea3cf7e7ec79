"""Eval configurations with a re-ranking stage (--refine) and cascade code scoring."""

from __future__ import annotations

import numpy as np
import pytest

from glimpse.eval.configs import Config, Scorer, parse_configs
from glimpse.backends.binary import BinaryIndex
from glimpse.backends.base import CodeStage
from glimpse.query.refine import refine


def _data(n: int = 300, dim: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim))
    x = centres[rng.integers(0, 12, n)] + 0.5 * rng.standard_normal((n, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x[:-8], x[-8:]


def test_refine_rows_are_the_refine_stage_on_the_base_configs_candidates():
    database, queries = _data()
    configs = parse_configs("itq:32", refine=["aqe"])
    assert [c.name for c in configs] == ["float", "itq-32", "itq-32 +rerank100",
                                         "float +aqe", "itq-32 +aqe", "itq-32 +rerank100 +aqe"]
    base = Scorer.prepare(Config(), database)
    refined = Scorer.prepare(Config(refine="aqe"), database)
    got = refined.scores(queries)
    plain = base.scores(queries)
    for q in range(len(queries)):
        top = np.argsort(-plain[q], kind="stable")[:100]
        ids, scores = refine("aqe", queries[q], top, plain[q, top], lambda i: database[i])
        assert np.argsort(-got[q], kind="stable")[:100].tolist() == ids[np.argsort(-scores, kind="stable")].tolist()
    with pytest.raises(ValueError, match="refine"):
        parse_configs("", refine=["magic"])


def test_cascade_spec_scores_like_the_collections_binary_index():
    database, queries = _data(seed=1)
    (config,) = [c for c in parse_configs("itq:32:cascade", shortlist=10) if c.rerank]
    assert config.scoring == "cascade" and config.name == "itq-32-cascade +rerank10"
    scorer = Scorer.prepare(config, database)
    index = BinaryIndex(scorer.binarizer, lambda ids: database[ids], oversample=1)  # the same fitted codes
    index.add(np.arange(len(database)), database)
    want = index.search(queries, 10, stage=CodeStage(scoring="cascade"))[1]
    got = np.argsort(-scorer.scores(queries), axis=1, kind="stable")[:, :10]
    for q in range(len(queries)):
        assert set(got[q].tolist()) == set(want[q].tolist())
