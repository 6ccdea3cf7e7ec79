"""`col.adapt` arguments of the wrong type: one ValueError, before the lock or any training."""

from __future__ import annotations

import pytest

import glimpse


@pytest.fixture
def col(tmp_path, image_dir):
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([image_dir])
    (tmp_path / "captions.tsv").write_text("image\tcaption\n" + "".join(
        f"{p}\ta photo\n" for p in sorted(image_dir.iterdir())))
    return col


@pytest.mark.parametrize("options, message", [
    ({"holdout": "x"}, "holdout must be a share in"),  # was a TypeError from the comparison
    ({"seed": "a"}, "seed must be a whole number"),  # was numpy's SeedSequence TypeError
    ({"seed": -1}, "seed must be at least 0"),  # was numpy's "expected non-negative integer"
    ({"captions": 123}, "captions must be the path of a TSV file"),  # was pathlib's TypeError
    ({"captions": {"a.png": "a cat"}}, "captions must be the path of a TSV file"),
])
def test_wrong_argument_types_are_one_value_error(col, options, message):
    before = sorted(p.name for p in col.path.iterdir())
    with pytest.raises(ValueError, match=message):
        col.adapt(**{"captions": col.path.parent / "captions.tsv", "kind": "ridge", **options})
    assert sorted(p.name for p in col.path.iterdir()) == before  # no adaptation written
