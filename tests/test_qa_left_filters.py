"""A path filter holding a lone surrogate: a name's undecodable byte (``\\udc80``-``\\udcff``, as
``os.fsdecode`` gives it) matches that file, as a prefix already did (the glob raised
UnicodeEncodeError); any other lone surrogate names no file and is refused with one sentence."""

from __future__ import annotations

import os

import pytest

import glimpse
from glimpse.query.filters import Filter


@pytest.fixture
def named(tmp_path, make_image):
    folder = tmp_path / "p"
    folder.mkdir()
    for seed, name in enumerate([b"caf\xe9.png", b"cafe.png", "café.png".encode()]):
        make_image(os.fsdecode(os.path.join(os.fsencode(folder), name)), seed=seed)
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([folder])
        yield col, folder


def test_a_glob_with_an_undecodable_byte_finds_that_file(named):
    col, folder = named
    query = folder / "cafe.png"
    assert [h.path for h in col.search(image=query, k=5, filters=Filter(path_glob="caf\udce9*"))] == [
        os.fsdecode(os.path.join(os.fsencode(folder), b"caf\xe9.png"))]
    assert len(col.search(image=query, k=5, filters=Filter(path_glob="caf?.png"))) == 3


@pytest.mark.parametrize("field", ["path_glob", "path_prefix"])
def test_another_lone_surrogate_is_refused(named, field):
    col, folder = named
    with pytest.raises(ValueError, match=f"^{field} holds a lone surrogate, which names no file"):
        col.search(image=folder / "cafe.png", k=5, filters=Filter(**{field: "caf\ud800*"}))
