"""Composed image+text queries with the real default encoder (slow: loads the models)."""

import pytest
from PIL import Image

import glimpse

skimage_data = pytest.importorskip("skimage.data", reason="needs scikit-image's sample photos")
pytestmark = pytest.mark.slow

PHOTOS = ["chelsea", "coffee", "astronaut", "rocket", "camera", "horse", "moon", "coins"]


def test_chelsea_plus_a_dog_moves_dog_like_results_up(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        Image.fromarray(getattr(skimage_data, name)()).convert("RGB").save(folder / f"{name}.png")
    # scikit-image ships no dog photo, so "dog-like" is what the encoder's text "a dog" ranks high.
    col = glimpse.open(tmp_path / "col")
    col.index([folder])
    chelsea = folder / "chelsea.png"
    dog_rank = {r.path: i for i, r in enumerate(col.search(text="a dog", k=len(PHOTOS)))}
    image_only = [r.path for r in col.search(image=chelsea, k=len(PHOTOS))][1:]  # itself first
    composed = [r.path for r in col.search(image=chelsea, text="a dog", k=len(PHOTOS) - 1)]
    assert str(chelsea) not in composed  # the reference is left out
    doggiest = min(image_only, key=dog_rank.get)
    assert composed.index(doggiest) <= image_only.index(doggiest)
    # The mean dog-rank of the top 3 gets better (lower) when the text is added.
    top = lambda paths: sum(dog_rank[p] for p in paths[:3]) / 3  # noqa: E731
    assert top(composed) <= top(image_only)
