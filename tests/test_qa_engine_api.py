"""Python API inputs: the paths of add/index/remove are a list, checked once (settings.check_paths)."""

from __future__ import annotations


import numpy as np
import pytest

import glimpse
from glimpse.query.filters import Filter
from test_qa_upgrade import col  # noqa: F401 - its fixture: 12 hash-encoded images in photos/


def test_removing_one_string_forgets_nothing_else(col, tmp_path):
    # It was taken letter by letter: "/" came first, and every file of the collection went.
    with pytest.raises(ValueError, match="paths must be a list of paths, not str"):
        col.remove(str(tmp_path / "photos" / "p00.png"))
    with pytest.raises(ValueError, match="paths must be a list of paths, not PosixPath"):
        col.remove(tmp_path / "photos" / "p00.png")
    assert len(col) == 12 and not col.stats().excluded
    assert col.remove([tmp_path / "photos" / "p00.png"]) == 1 and len(col) == 11


@pytest.mark.parametrize("method", ["add", "index"])
def test_adding_one_string_or_a_wrong_item_is_one_value_error(col, tmp_path, method):
    for paths, message in ((str(tmp_path / "photos"), "not str"), (tmp_path / "photos", "not PosixPath"),
                           ([None], "got None"), ([3], "got 3"), ([b"/tmp"], "got b'/tmp'"), (5, "not int")):
        with pytest.raises(ValueError, match=message):  # TypeErrors, or a scan of '/', before
            getattr(col, method)(paths)
    assert len(col) == 12


def test_removing_one_key_string_from_precomputed_vectors_forgets_nothing(tmp_path):
    with glimpse.open(tmp_path / "vec", encoder="precomputed", dim=4) as col:
        col.add_vectors(np.eye(4, dtype=np.float32), ["s/1", "h/2", "shop", "o"])
        with pytest.raises(ValueError, match="not str"):  # removed s/1, h/2, shop and o, letter by letter
            col.remove("shop")
        assert len(col) == 4
        assert col.remove(["shop"]) == 1 and len(col) == 3


@pytest.mark.parametrize("query, message", [
    ({"text": 5}, "the text query must be a string, not int"),  # was "the text query is empty"
    ({"text": b"a cat"}, "the text query must be a string, not bytes"),
    ({"image": np.zeros((8, 8, 3), np.uint8)}, "a query image must be a path, bytes or a PIL image, not ndarray"),
    ({"image": None, "terms": [(np.zeros(3), 1.0)]}, None),  # the query language's own check
    ({"image": 3.5, "text": "a cat"}, "not float"),  # TypeErrors before
])
def test_a_query_of_the_wrong_type_says_what_it_must_be(col, query, message):
    with pytest.raises(ValueError, match=message):
        col.search(**query)


def test_numpy_integers_are_whole_numbers(tmp_path):
    # add_vectors returns int64 ids; search(like=ids[0]) said "an item id is a whole number ..., got 1"
    with glimpse.open(tmp_path / "vec", encoder="precomputed", dim=4) as col:
        ids = col.add_vectors(np.eye(4, dtype=np.float32) + 0.1, ["a", "b", "c", "d"], batch_size=np.int64(2))
        found = col.search(like=ids[0], k=np.int64(2), oversample=np.int32(5))
        assert len(found) == 2 and ids[0] not in [r.id for r in found]
        assert col.search(terms=[(ids[1], 1.0)], k=1)
        assert col.item(int(ids[2])).paths == ["c"]
    assert Filter(min_width=np.int64(5)).min_width == 5
    for bad in (np.bool_(True), True, 2.0, "2"):
        with pytest.raises(ValueError, match="k must be a whole number"):
            glimpse.SearchRequest(text="x", k=bad)


def test_a_collection_inside_an_indexed_folder_never_indexes_its_thumbnails(tmp_path, make_image):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        make_image(folder / f"p{i}.png", seed=i)
    with glimpse.open(folder / "col", encoder="hash") as col:  # glimpse index . -c ./col
        col.add([folder])
        (col.path / "thumbnails" / "256").mkdir(parents=True)
        make_image(col.path / "thumbnails" / "256" / "0.jpg", seed=0)  # as glimpse serve writes them
        report = col.index()
        assert (report.embedded, len(col)) == (0, 3)  # the thumbnail became a fourth image


def test_yes_no_options_must_be_bools(col, tmp_path):
    # finish="no" is a true string: the upgrade finished and dropped the old vectors (no abort any more)
    with pytest.raises(ValueError, match="finish must be True or False, not 'no'"):
        col.upgrade("hash", dim=32, sample=4, backfill=0, finish="no", batch_size=4)
    with pytest.raises(ValueError, match="abort must be True or False"):
        col.upgrade(abort="yes")
    assert col.stats().upgrade is None and col.encoder.dim == 64
    with pytest.raises(ValueError, match="prune must be True or False"):  # "no" pruned
        col.add([tmp_path / "photos"], prune="no")
    with pytest.raises(ValueError, match="follow_symlinks must be True or False"):
        col.index(follow_symlinks="false")
    for field in ("exact", "adapted", "rerank"):
        with pytest.raises(ValueError, match=f"{field} must be True or False"):
            col.search(text="a photo", **{field: "false"})
    assert len(col.search(text="a photo", exact=np.bool_(True), rerank=None, k=3)) == 3
    assert col.upgrade("hash", dim=32, sample=4, backfill=0, finish=np.False_, batch_size=4).phase == "backfilling"


@pytest.mark.parametrize("kwargs, message", [
    ({"encoder": "precomputed", "dim": True}, "dim must be a whole number"),  # a 1-d collection before
    ({"encoder": "precomputed", "dim": 10**9}, "dim must be between 1 and 65536"),  # made, 2 GB rows
    ({"encoder": "hash", "create": "no"}, "create must be True or False"),  # created it
])
def test_open_refuses_options_it_would_misread_and_makes_nothing(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        glimpse.open(tmp_path / "new", **kwargs)
    assert not (tmp_path / "new").exists()


def test_open_without_a_path_is_a_value_error():
    with pytest.raises(ValueError, match="the collection path must be a str or os.PathLike, not NoneType"):
        glimpse.open(None)


def test_a_progress_that_cannot_be_called_is_refused_before_any_work(col, tmp_path, make_image):
    make_image(tmp_path / "photos" / "new.png", seed=50)
    with pytest.raises(ValueError, match="progress must be a function"):  # TypeError after the first commit
        col.add([tmp_path / "photos"], progress=5)
    with pytest.raises(ValueError, match="fit_progress must be a function"):
        col.index(fit_progress="bar")
    with pytest.raises(ValueError, match="progress must be a function"):
        col.upgrade("hash", dim=32, sample=4, progress=True)
    assert len(col) == 12 and col.stats().upgrade is None
    with glimpse.open(tmp_path / "vec", encoder="precomputed", dim=4) as vec:
        with pytest.raises(ValueError, match="progress must be a function"):
            vec.add_vectors(np.eye(4, dtype=np.float32), list("abcd"), progress=[])
        assert len(vec) == 0
