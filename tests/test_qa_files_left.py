"""Collection files left open by the qa-files round: a collection's files without its database are
refused, not built over; damaged vector rows are found when read, left out, and re-derived."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app


def _filled(path: Path, image_dir: Path, codes: bool) -> None:
    """Images (12, too few for codes), or vectors with codes and their binarizer."""
    if not codes:
        with glimpse.open(path, encoder="hash") as col:
            col.add([image_dir])
        return
    with glimpse.open(path, encoder="precomputed", dim=16) as col:
        vectors = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
        col.add_vectors(vectors, [f"k{i}" for i in range(300)])
        col.use_codes()


@pytest.mark.parametrize("codes", [False, True])
def test_a_collection_without_its_database_is_refused_not_started_over(tmp_path, image_dir, codes):
    col = tmp_path / "col"
    _filled(col, image_dir, codes)
    (col / "metadata.sqlite").unlink()
    before = sorted(p.name for p in col.iterdir())
    with pytest.raises(ValueError, match="but not its metadata.sqlite: restore that from a backup, or, to start over"):
        glimpse.open(col, encoder="hash")
    done = CliRunner().invoke(app, ["index", str(image_dir), "-c", str(col), "--encoder", "hash"])
    assert done.exit_code == 2, done.output
    said = "".join(done.output.split())  # rich wraps long paths anywhere
    assert "holdsthefilesofacollection(" in said and "vectors.f16" in said, said
    assert ("binarizer-" in said and "codes-" in said) == codes, (before, said)
    assert sorted(p.name for p in col.iterdir()) == before  # nothing made over them
    for name in before:  # the way out it names: move them aside
        if name != "write.lock":
            (col / name).rename(tmp_path / name)
    with glimpse.open(col, encoder="hash") as fresh:
        fresh.add([image_dir])
        assert len(fresh) == 12
