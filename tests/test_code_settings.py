"""Code settings can change at any time, even killed halfway, and search stays right."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import glimpse

FAST = {"steps": 20, "batch": 256, "anchor_pool": 256}  # learned fits in about a second

#: Tests (and the processes they kill) fit the learned binarizer with few steps (the defaults
#: are sized for 100k images) on one thread (fits are bitwise-equal for equal thread counts).
FAST_LEARNED = textwrap.dedent(
    f"""
    import torch
    torch.set_num_threads(1)
    from glimpse.codes.learned import LearnedBinarizer
    real = LearnedBinarizer.__init__
    LearnedBinarizer.__init__ = lambda self, bits=256, seed=0, **o: real(self, bits, seed, **{{**{FAST!r}, **o}})
    """
)


@pytest.fixture(autouse=True)
def fast_learned(monkeypatch):
    import torch

    from glimpse.codes.learned import LearnedBinarizer

    monkeypatch.setattr(LearnedBinarizer, "__init__", LearnedBinarizer.__init__)
    threads = torch.get_num_threads()
    exec(FAST_LEARNED, {})
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def photos(tmp_path, make_image):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(90):
        make_image(folder / f"p{i:03d}.png", seed=2000 + i)
    return folder


def results(col, photos) -> list:
    """Image searches (code scores, and re-ranked) over a few queries: what must match a clean build."""
    out = []
    for path in sorted(photos.glob("*.png"))[::15]:
        out.append([(r.id, round(r.score, 5)) for r in col.search(image=path, k=8, rerank=False)])
        out.append([r.id for r in col.search(image=path, k=8)])
    return out


def clean_build(location, photos, **codes):
    col = glimpse.open(location, encoder="hash")
    col.use_codes(**codes)
    col.add([photos])
    return col


def files(path, pattern):
    return sorted(p.name for p in path.glob(pattern))


def fits_kept(col) -> int:
    """How many code fits ``col`` keeps: code files locally, Milvus collections on Milvus (where
    the fit searched before a change stays until the next one, for readers still on it)."""
    from glimpse.milvus.collection import MilvusCollection
    from glimpse.milvus.index import index_collections

    if isinstance(col, MilvusCollection):
        return len(index_collections(col._client, col.target.name))
    assert len(files(col.path, "binarizer*")) == len(files(col.path, "codes-*"))
    return len(files(col.path, "codes-*"))


def test_narrower_codes_then_a_new_process_searches_like_a_clean_build(backend, collection_at, photos):
    col = glimpse.open(collection_at("col"), encoder="hash")
    col.use_codes("learned", bits=64)
    col.add([photos])
    col.search(image=photos / "p001.png", k=3)
    col.close()
    col = glimpse.open(col.location)
    col.use_codes("learned", bits=32)
    col.close()

    reopened = glimpse.open(col.location)  # another process: only what is stored counts
    clean = clean_build(collection_at("clean"), photos, binarizer="learned", bits=32)
    assert results(reopened, photos) == results(clean, photos)
    assert reopened.stats().codes["fit"] == clean.stats().codes["fit"]
    assert fits_kept(reopened) == {"local": 1, "milvus-lite": 2}[backend]


def test_another_binarizer_at_the_same_width_never_scans_the_old_codes(collection_at, photos):
    col = glimpse.open(collection_at("col"), encoder="hash")
    col.use_codes("learned", bits=32)
    col.add([photos])
    reader = glimpse.open(col.location)  # a reader with the learned codes loaded (a server)
    reader.search(image=photos / "p001.png", k=3)
    col.use_codes("itq", bits=32)

    clean = clean_build(collection_at("clean"), photos, binarizer="itq", bits=32)
    assert results(reader, photos) == results(clean, photos)
    assert results(glimpse.open(col.location), photos) == results(clean, photos)


def test_settings_that_keep_the_binarizer_keep_its_fit(collection_uri, photos):
    col = glimpse.open(collection_uri, encoder="hash")
    col.use_codes("itq", bits=32)
    col.add([photos])
    fit = col.stats().codes["fit"]
    col.use_codes("itq", bits=32, oversample=5, scoring="hamming")
    assert col.stats().codes["fit"] == fit and col.stats().codes["oversample"] == 5


def test_codes_can_be_switched_off(collection_uri, photos):
    col = glimpse.open(collection_uri, encoder="hash")
    col.use_codes("itq", bits=32)
    col.add([photos])
    col.use_codes(None)
    assert col.stats().codes is None
    assert files(col.path, "binarizer*") == files(col.path, "codes-*") == []
    query = col.encoder.encode_texts(["red"])[0]
    assert [r.id for r in col.search(vector=query, k=5)] == [r.id for r in col.search(vector=query, k=5, exact=True)]


KILLED = FAST_LEARNED + textwrap.dedent(
    """
    import os, sys
    import glimpse
    from glimpse.codes.base import Binarizer
    from glimpse.backends.binary import BinaryIndex
    from glimpse.storage.metadata import Metadata

    where = sys.argv[2]

    def die(*args, **kwargs):
        os._exit(137)

    if where == "fitting":
        progress = lambda done, total: die()
    else:
        progress = None
    if where == "before-commit":
        Metadata.set_meta = die
    if where == "after-commit":
        BinaryIndex.persist = die
    col = glimpse.open(sys.argv[1])
    col.use_codes(sys.argv[3], bits=int(sys.argv[4]), progress=progress)
    """
)


@pytest.mark.parametrize("where", ["fitting", "before-commit", "after-commit"])
def test_a_kill_during_a_settings_change_leaves_old_or_new_settings_whole(tmp_path, photos, where):
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.use_codes("learned", bits=64)
    col.add([photos])
    col.close()
    proc = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path / "col"), where, "learned", "32"])
    assert proc.returncode == 137

    after = glimpse.open(tmp_path / "col")
    bits = after.stats().codes["bits"]
    assert bits == (32 if where == "after-commit" else 64)
    clean = clean_build(tmp_path / "clean", photos, binarizer="learned", bits=bits)
    assert after.stats().codes["fit"] == clean.stats().codes["fit"]
    assert results(after, photos) == results(clean, photos)
    # The next change completes and leaves no file of another fit behind.
    after.use_codes("learned", bits=32)
    assert files(tmp_path / "col", "binarizer*") == [f"binarizer-{after.stats().codes['fit']}.npz"]


def test_fitting_reports_progress(collection_uri, photos):
    col = glimpse.open(collection_uri, encoder="hash")
    col.add([photos])
    seen = []
    col.use_codes("learned", bits=32, progress=lambda done, total: seen.append((done, total)))
    steps = FAST["steps"]
    assert seen[:steps] == [(step, steps) for step in range(1, steps + 1)]
    coded = seen[steps:]  # then the rows coded, where this process builds the codes (Milvus holds its own)
    assert coded[-1:] == ([] if collection_uri.startswith("milvus") else [(len(col), len(col))])
    assert all(total == len(col) for _, total in coded) and [done for done, _ in coded] == sorted(done for done, _ in coded)
    seen.clear()
    col.use_codes("learned", bits=64)
    col.add([photos], fit_progress=lambda done, total: seen.append(done))  # not due: no fit, no calls
    assert seen == []


def test_binarizer_files_hold_float16_parameters_and_encode_like_the_fit(tmp_path):
    from glimpse.codes import create_binarizer, load_binarizer

    x = np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32)
    fitted = create_binarizer("learned", bits=64, seed=0).fit(x)
    path = fitted.save(tmp_path / "b.npz")
    with np.load(path) as z:
        assert {z[k].dtype for k in z.files if k.startswith("p_")} == {np.dtype(np.float16)}
    loaded = load_binarizer(path)
    assert loaded.fit_id == fitted.fit_id
    np.testing.assert_array_equal(loaded.encode(x), fitted.encode(x))
    np.testing.assert_array_equal(loaded.query_vector(x), fitted.query_vector(x))


def test_a_collection_from_before_fit_ids_keeps_its_codes_until_the_next_write(tmp_path, photos, make_image):
    import json
    import sqlite3

    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.use_codes("itq", bits=32)
    col.add([photos])
    before = results(col, photos)
    settings = col.stats().codes
    col.close()
    # The layout of earlier versions: one binarizer.npz, codes-N.faissbin, settings without a fit id.
    path = tmp_path / "col"
    (path / settings["file"]).rename(path / "binarizer.npz")
    for codes in path.glob("codes-*"):
        codes.rename(path / f"codes-{codes.name.split('-')[1]}.faissbin")
    legacy = {k: v for k, v in settings.items() if k not in ("fit", "file")}
    with sqlite3.connect(path / "metadata.sqlite") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'codes'", (json.dumps(legacy),))

    old = glimpse.open(path)
    assert results(old, photos) == before
    make_image(photos / "new.png", seed=9)
    old.add([photos])
    assert files(path, "binarizer*") == ["binarizer.npz"] and len(files(path, "codes-*")) == 1
    assert files(path, "codes-*")[0].endswith(f"-{settings['fit']}.faissbin")
