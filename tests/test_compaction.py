"""The vector file gives back the rows of removed images, crash-safe, with ids and results unchanged."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import glimpse


@pytest.fixture
def photos(tmp_path, make_image):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(60):
        make_image(folder / f"p{i:03d}.png", seed=3000 + i)
    return folder


def vector_files(path):
    return sorted(p.name for p in path.glob("vectors*.f16"))


def answers(col, photos):
    out = []
    for path in sorted(photos.glob("*.png"))[::7]:
        out.append([(r.id, r.path, round(r.score, 5)) for r in col.search(image=path, k=10)])
        out.append([(r.id, round(r.score, 5)) for r in col.search(image=path, k=10, exact=True)])
    return out


def shrunk(tmp_path, photos, codes: bool = True):
    """A collection that lost 40 of its 60 images."""
    col = glimpse.open(tmp_path / "col", encoder="hash")
    if codes:
        col.use_codes("itq", bits=16)
    col.add([photos])
    col.remove(sorted(photos.glob("*.png"))[:40])
    return col


def test_compact_reclaims_dead_rows_and_keeps_ids_and_results(tmp_path, photos, make_image):
    col = shrunk(tmp_path, photos)
    before, ids = answers(col, photos), col.item_ids()
    assert col.stats().vector_bytes == 60 * 64 * 2

    assert col.compact() == 40
    assert col.stats().vector_bytes == 20 * 64 * 2 and len(vector_files(tmp_path / "col")) == 1
    assert col.item_ids() == ids and answers(col, photos) == before
    assert answers(glimpse.open(tmp_path / "col"), photos) == before
    assert col.compact() == 0

    make_image(photos / "new.png", seed=4000)
    col.add([photos / "new.png"])  # a new id, never one of the removed images'
    assert col.search(image=photos / "new.png", k=1)[0].id == 60
    assert col.search(image=photos / "p050.png", k=1)[0].path == str(photos / "p050.png")


def test_writes_compact_once_dead_rows_pass_the_share(tmp_path, photos, monkeypatch):
    monkeypatch.setattr("glimpse.collection.live.COMPACT_MIN_ROWS", 30)
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([photos])
    col.remove(sorted(photos.glob("*.png"))[:25])  # 25 dead rows: under the minimum
    assert col.stats().vector_bytes == 60 * 64 * 2
    col.remove(sorted(photos.glob("*.png"))[25:35])  # 35 of 60 rows dead: over half, over the minimum
    assert col.stats().vector_bytes == 25 * 64 * 2


def test_a_reader_in_another_process_keeps_searching_through_a_compaction(tmp_path, photos):
    col = shrunk(tmp_path, photos)
    reader = glimpse.open(tmp_path / "col")  # its own connection and memory map, as a server has
    before = answers(reader, photos)
    col.compact()
    assert answers(reader, photos) == before
    col.remove([photos / "p050.png"])
    assert str(photos / "p050.png") not in [r.path for r in reader.search(image=photos / "p050.png", k=20)]


KILLED = textwrap.dedent(
    """
    import os, sys
    import glimpse
    from glimpse.collection import Collection
    from glimpse.storage.metadata import Metadata

    def die(*args, **kwargs):
        os._exit(137)

    if sys.argv[2] == "before-commit":
        Metadata.move_rows = die
    else:
        Collection._drop_stale_vectors = die
    glimpse.open(sys.argv[1]).compact()
    """
)


@pytest.mark.parametrize("where", ["before-commit", "after-commit"])
def test_a_kill_during_compaction_loses_nothing(tmp_path, photos, where):
    col = shrunk(tmp_path, photos)
    before = answers(col, photos)
    col.close()
    proc = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path / "col"), where])
    assert proc.returncode == 137
    assert len(vector_files(tmp_path / "col")) == 2  # the old and the new file

    after = glimpse.open(tmp_path / "col")
    assert answers(after, photos) == before
    after.compact()  # finishes the job: one file, the committed one
    assert len(vector_files(tmp_path / "col")) == 1 and after.stats().vector_bytes == 20 * 64 * 2
    assert answers(after, photos) == before
