"""Malformed `glimpse upgrade` inputs: each is one clear ValueError (CLI: exit 2) and changes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import glimpse
from glimpse.encoders import create_encoder
from glimpse.upgrade.state import active

B = 4


@pytest.fixture
def col(tmp_path: Path, make_image) -> glimpse.Collection:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        make_image(photos / f"p{i:02d}.png", seed=i)
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([photos], batch_size=B)
    return col


@pytest.mark.parametrize("options, message", [
    ({"sample": "5"}, "sample must be a whole number"),
    ({"sample": 1.5}, "sample must be a whole number"),
    ({"sample": True}, "sample must be a whole number"),
    ({"backfill": "x"}, "backfill must be a whole number"),
    ({"backfill": -1}, "backfill must be at least 0"),
    ({"batch_size": None}, "batch_size must be a whole number"),
    ({"workers": 2.5}, "workers must be a whole number"),
    ({"sample_seed": "a"}, "sample_seed must be a whole number"),
    ({"order": None}, "unknown backfill order"),
    ({"order": ["random"]}, "unknown backfill order"),
])
def test_wrong_option_types_are_refused_before_anything_starts(col, options, message):
    with pytest.raises(ValueError, match=message):
        col.upgrade("hash", dim=32, **options)
    assert active(col._meta.get_meta()) is None and col.encoder.dim == 64


@pytest.mark.parametrize("options, message", [
    ({"dim": 0}, "dim must be between 1 and 4096"),
    ({"dim": "32"}, "dim must be a whole number"),
    ({"dim": 10**9}, "dim must be between 1 and 4096"),
    ({"seed": "x"}, "seed must be a whole number"),
])
def test_a_malformed_encoder_option_starts_no_upgrade(col, options, message):
    # dim=0 once started an upgrade that could never switch ("cannot mmap an empty file" on every resume)
    with pytest.raises(ValueError, match=message):
        col.upgrade("hash", **options)
    assert active(col._meta.get_meta()) is None
    assert col.search(text="a photo", k=3)


def test_an_encoder_name_of_the_wrong_type_is_a_value_error():
    with pytest.raises(ValueError, match="unknown encoder"):
        create_encoder(["hash"])


def test_resuming_with_other_model_options_is_refused_and_the_sample_stays_whole(col):
    def interrupt(done, total):
        if done >= B:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        col.upgrade("hash", dim=32, seed=1, sample=8, batch_size=B, progress=interrupt)
    before = dict(active(col._meta.get_meta()))
    assert before["phase"] == "sampling" and before["done"] == B
    with pytest.raises(ValueError, match="its own model options"):
        col.upgrade(dim=48, batch_size=B)  # once wrote 48-d vectors into the 32-d sample file
    with pytest.raises(ValueError, match="its own model options"):
        col.upgrade(create_encoder("hash", dim=32, seed=2), batch_size=B)
    assert active(col._meta.get_meta()) == before
    assert col.upgrade(batch_size=B).phase == "finished"
    assert col.encoder.dim == 32 and np.isfinite(col._read_vectors(np.array(col.item_ids()))).all()
