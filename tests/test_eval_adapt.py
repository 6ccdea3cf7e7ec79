"""glimpse eval captioned --adapt: rows before/after adaptation, scored only on held-out pairs."""

from __future__ import annotations

import numpy as np

from glimpse.eval.configs import Config, Scorer, parse_configs
from glimpse.eval.datasets import Items, Judgement, Task
from glimpse.eval.runner import held_out_adaptation
from glimpse.encoders import create_encoder
from glimpse.query.adapt import held_out_split


def _captioned(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 16)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    # Captions see their image through a fixed distortion that an adapter can learn to undo;
    # the first 20 images have a second caption, so captions and images do not pair one to one.
    owner = np.concatenate([np.arange(n), np.arange(20)])
    twist = np.linalg.qr(rng.standard_normal((16, 16)))[0].astype(np.float32)
    texts = images[owner] @ twist + 0.05 * rng.standard_normal((len(owner), 16)).astype(np.float32)
    task = Task("text→image", Items("texts", texts=[f"caption of {i}" for i in owner]),
                Items("images", paths=[f"/img/{i}.jpg" for i in range(n)]), "recall",
                {"": Judgement([np.array([i]) for i in owner])})
    return task, texts, images


def _number(path: str) -> int:
    return int(path.split("/")[-1].split(".")[0])


def test_adaptation_rows_score_only_the_held_out_half_and_help():
    task, texts, images = _captioned()
    encoder = create_encoder("hash")
    float_only = [Scorer.prepare(Config(), images)]
    first = held_out_adaptation(task, texts, float_only, ["ridge"], seed=3, encoder=encoder)
    again = held_out_adaptation(task, texts, float_only, ["ridge"], seed=3, encoder=encoder)
    (plain_task, (plain,)), (ridge_task, (ridge,)) = first
    assert [t.database.paths for t, _ in first] == [t.database.paths for t, _ in again]  # deterministic split
    assert plain_task.database.paths == ridge_task.database.paths and len(plain_task.database.paths) == 30
    split = plain_task.options["split"]
    assert split["test_gallery"] == plain_task.database.paths and split["seed"] == 3
    held = {_number(p) for p in plain_task.database.paths}
    trained = set(range(60)) - held
    assert split["train_images"] == len(trained) == 30
    assert split["train_captions"] + split["test_captions"] == len(texts)
    assert split["train_captions"] == sum(1 for t in task.queries.texts if int(t.split()[-1]) in trained)
    queried = [int(t.split()[-1]) for t in plain_task.queries.texts]
    assert set(queried) == held and len(queried) == split["test_captions"]  # every held-out caption, no other
    # Each query's one relevant item is its own image, inside the held-out gallery.
    positives = [plain_task.database.paths[int(p[0])] for p in plain_task.judgements[""].positives]
    assert [_number(p) for p in positives] == queried
    assert ridge.score.figures["R@10"] > plain.score.figures["R@10"] + 0.5  # the twist is learnt on the other half
    assert held_out_adaptation(task, texts, float_only, ["ridge"], seed=4, encoder=encoder)[0][0].database.paths != \
        plain_task.database.paths


def test_adaptation_rows_per_code_configuration_use_the_held_out_codes():
    task, texts, images = _captioned()
    fitted: dict = {}
    scorers = [Scorer.prepare(c, images, fitted=fitted) for c in parse_configs("itq:8:asym", shortlist=5)]
    out = held_out_adaptation(task, texts, scorers, ["ridge"], seed=3, encoder=create_encoder("hash"))
    sub, rows = out[1]
    assert [r.config.name for r in rows] == ["float", "itq-8-asym", "itq-8-asym +rerank5"]
    held = np.array([_number(p) for p in sub.database.paths])
    code = scorers[1].subset(held)
    assert np.array_equal(code.codes, scorers[1].codes[held]) and code.database.shape == (30, 16)
    # The code rows rank the held-out gallery only, with the codes fitted on every image.
    assert code.scores(texts[:3]).shape == (3, 30)


def test_held_out_split_holds_out_the_last_share_of_a_seeded_permutation():
    order = np.random.default_rng(7).permutation(857)
    held = held_out_split(857, 0.5, seed=7)
    assert not held[order[:428]].any() and held[order[428:]].all()  # the rule the report states
    for count, share, want in [(10, 0.3, 3), (100, 0.2, 20), (15, 0.2, 3), (5, 0.0, 0), (3, 0.99, 3)]:
        assert held_out_split(count, share, seed=1).sum() == want
    assert not np.array_equal(held, held_out_split(857, 0.5, seed=8))
