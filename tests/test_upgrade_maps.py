"""The upgrade's old->new map: what it is fitted on, how it is chosen, and its calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glimpse.encoders import create_encoder, l2_normalize
from glimpse.upgrade.maps import Pairs, SpaceMap, calibrate, fit_kind, fit_map
from glimpse.upgrade.views import prompts, sample_pairs, view

VISUAL, TEXT = 48, 16


def two_spaces(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Old and new image vectors laid out like the offline encoders ([visual, text]) and texts [0, text].

    The new text half is a linear function of the old vector (a map can learn it), the new visual
    half mostly not (fresh noise): a map predicts the text half better than the visual one."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(VISUAL + TEXT, TEXT))
    old = l2_normalize(rng.normal(size=(n, VISUAL + TEXT)))
    visual = 0.3 * old[:, :VISUAL] + rng.normal(size=(n, VISUAL))
    new = np.hstack([0.9 * l2_normalize(visual), 0.44 * l2_normalize(old @ mixing)])
    texts = np.hstack([np.zeros((TEXT * 4, VISUAL)), l2_normalize(rng.normal(size=(TEXT * 4, TEXT)))])
    return old, l2_normalize(new), texts


def text_share(vectors: np.ndarray) -> float:
    return float((l2_normalize(vectors)[:, VISUAL:] ** 2).sum(1).mean())


def test_mapped_vectors_hold_the_true_share_in_the_text_span(tmp_path: Path):
    """Else text queries favour mapped images over re-embedded ones, and quality drops as the backfill advances."""
    old, new, texts = two_spaces(400, seed=0)
    pairs = Pairs(old[:200], new[:200], np.arange(200), (texts, texts))
    space_map, quality, _ = fit_map(pairs)
    held_old, truth = old[200:], text_share(new[200:])
    assert abs(text_share(space_map(held_old)) - truth) < 0.02
    assert quality.pairs == 200 and quality.text is not None
    space_map.save(tmp_path / "map.npz")
    assert np.array_equal(SpaceMap.load(tmp_path / "map.npz")(held_old), space_map(held_old))
    ridge = fit_kind("ridge", pairs, 1.0, 0.3)
    assert text_share(ridge(held_old)) - truth > 0.04  # the bias the calibration removes
    calibrated = calibrate(ridge, new[:200], texts)
    assert abs(text_share(calibrated(held_old)) - truth) < 0.02


def test_candidates_are_cross_validated_over_the_whole_sample():
    old, new, texts = two_spaces(120, seed=1)
    views = old + 0.05 * np.random.default_rng(2).normal(size=old.shape)
    pairs = Pairs(np.vstack([old, views]), np.vstack([new, new]), np.concatenate([np.arange(120)] * 2), (texts, texts))
    space_map, quality, candidates = fit_map(pairs)
    assert quality.pairs == 120  # every sampled image measured once, views only fitted on
    assert {"orthogonal", "ridge:1", "ridge:1+text 0.3"} <= set(candidates)
    best = max(candidates.values(), key=lambda q: q["mrr"] * q["text"])
    assert candidates[space_map.kind] == best
    assert fit_map(pairs.reversed())[0].matrix.shape == (VISUAL + TEXT, VISUAL + TEXT)


def test_too_small_a_sample_gets_an_unmeasured_ridge_map():
    """Procrustes on 6 pairs fixes 6 directions and turns the others at random: mapped images lost themselves."""
    old, new, texts = two_spaces(200, seed=3)
    space_map, quality, candidates = fit_map(Pairs(old[:6], new[:6], np.arange(6), (texts, texts)))
    assert space_map.kind == "ridge" and quality is None and candidates == {}

    def mean_rank(mapped: np.ndarray) -> float:  # of each image's own mapped vector, its true one querying
        scores = l2_normalize(new[6:]) @ mapped.T
        return float((scores > np.diag(scores)[:, None]).sum(1).mean())

    orthogonal = fit_kind("orthogonal", Pairs(old[:6], new[:6], np.arange(6)))
    assert mean_rank(space_map(old[6:])) < mean_rank(orthogonal(old[6:])) - 5


def test_views_are_seeded_mirrored_crops(make_image, tmp_path: Path):
    image = image_of(make_image(tmp_path / "a.png", seed=0))
    one, again = view(image, np.random.default_rng(5)), view(image, np.random.default_rng(5))
    assert np.array_equal(np.asarray(one), np.asarray(again))
    assert one.width * one.height < image.width * image.height


def test_sample_pairs_add_a_view_per_readable_image_and_the_prompts(make_image, tmp_path: Path):
    from glimpse.ingest.scan import stat_entry

    old, new = create_encoder("hash"), create_encoder("hash", dim=32, seed=1)
    files = {0: stat_entry(make_image(tmp_path / "a.png", seed=0)),
             2: stat_entry(make_image(tmp_path / "b.png", seed=1))}
    (tmp_path / "broken.png").write_bytes(b"not an image")
    files[1] = stat_entry(tmp_path / "broken.png")
    old_x, new_y = np.zeros((3, old.dim), np.float32), np.zeros((3, new.dim), np.float32)
    pairs = sample_pairs(old, new, old_x, new_y, files, seed=0, workers=1)
    assert pairs.group.tolist() == [0, 1, 2, 0, 2]  # the sample, then a view of each readable image
    assert pairs.x.shape == (5, old.dim) and pairs.y.shape == (5, new.dim)
    whole = new.encode_images([image_of(tmp_path / "a.png")])[0]
    assert not np.allclose(pairs.y[3], whole) and np.isclose(np.linalg.norm(pairs.y[3]), 1)  # another image: a view
    assert len(pairs.texts[0]) == len(prompts()) == 1000 and pairs.texts[1].shape[1] == new.dim


def test_the_prompts_go_through_one_text_tower_when_both_encoders_share_it(monkeypatch):
    old, same = create_encoder("hash"), create_encoder("hash", seed=1)  # 64-d both; hash texts ignore the seed
    encoded = []
    monkeypatch.setattr(same, "encode_texts", lambda texts: encoded.append(len(texts)) or old.encode_texts(texts))
    pairs = sample_pairs(old, same, np.zeros((0, 64), np.float32), np.zeros((0, 64), np.float32), {}, seed=0, workers=1)
    assert len(pairs.texts[1]) == 1000 and max(encoded) < 1000  # the probe texts only


def image_of(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def test_an_unknown_kind_is_refused():
    old, new, _ = two_spaces(4, seed=4)
    with pytest.raises(ValueError, match="unknown map"):
        fit_kind("procrustes", Pairs(old, new, np.arange(4)))


def test_a_query_pulled_back_scores_mapped_vectors_without_mapping_them():
    """What a raw vector query scores the images there before the switch by (glimpse.upgrade.dual.ThroughMap)."""
    old, new, texts = two_spaces(120, seed=2)
    pairs = Pairs(old[:60], new[:60], np.arange(60), (texts, texts))
    plain = fit_kind("ridge", pairs, 1.0, 0.3)
    for space_map in (plain, calibrate(plain, new[:60], texts)):
        query = l2_normalize(np.random.default_rng(3).normal(size=VISUAL + TEXT))
        scores = space_map.scores(space_map.pulled_back(query), old[60:], space_map.part_norms(old[60:]))
        assert np.allclose(scores, space_map(old[60:]) @ query, atol=1e-5)
