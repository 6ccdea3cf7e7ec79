from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import glimpse
from glimpse.encoders import create_encoder
from glimpse.storage import WriteLock


def test_index_then_search_finds_each_image_first(collection_uri, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    report = col.index([image_dir])
    assert (report.embedded, report.skipped, report.errors) == (12, 0, [])
    for path in sorted(image_dir.rglob("*.png")):
        top = col.search(image=path, k=3)
        assert top[0].path == str(path)
        assert top[0].score == pytest.approx(1.0, abs=1e-2)
        assert top[0].score > top[1].score
    stats = col.stats()
    assert (stats.files, stats.images, stats.errors, stats.dim) == (12, 12, 0, hash_encoder.dim)
    assert stats.vector_bytes == 12 * hash_encoder.dim * 2  # float16 rows


def test_second_index_run_embeds_nothing(collection_uri, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.index([image_dir])
    assert hash_encoder.images_encoded == 12
    report = col.index([image_dir])
    assert hash_encoder.images_encoded == 12
    assert (report.embedded, report.unchanged) == (0, 12)


def test_reindex_embeds_changed_files_and_drops_gone_ones(collection_uri, image_dir, hash_encoder, make_image):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.index([image_dir])
    gone, changed = image_dir / "img01.png", image_dir / "img02.png"
    gone.unlink()
    make_image(changed, seed=99)
    os.utime(changed, ns=(1, 10**18))  # a different mtime even on coarse file systems
    make_image(image_dir / "new.png", seed=100)

    report = col.index()  # the folders indexed before
    assert (report.embedded, report.removed, report.unchanged) == (2, 1, 10)
    assert hash_encoder.images_encoded == 14
    paths = [r.path for r in col.search(image=changed, k=20)]
    assert str(gone) not in paths
    assert paths[0] == str(changed)
    assert col.stats().images == 12


def test_identical_files_are_embedded_once(collection_uri, image_dir, hash_encoder):
    shutil.copy(image_dir / "img01.png", image_dir / "copy.png")
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    report = col.index([image_dir])
    assert hash_encoder.images_encoded == 12
    assert (report.embedded, report.linked) == (12, 1)
    assert (col.stats().files, col.stats().images) == (13, 12)
    # Removing one copy keeps the image; removing both drops it.
    col.remove([image_dir / "copy.png"])
    assert col.search(image=image_dir / "img01.png", k=1)[0].path == str(image_dir / "img01.png")
    col.remove([image_dir / "img01.png"])
    assert col.stats().images == 11
    assert all(r.path != str(image_dir / "img01.png") for r in col.search(image=image_dir / "img01.png", k=20))


def test_bad_files_are_skipped_with_a_reason(collection_uri, image_dir, hash_encoder):
    from PIL import Image

    (image_dir / "empty.jpg").write_bytes(b"")
    (image_dir / "notes.jpg").write_text("this is not a picture")
    full = image_dir / "full.jpg"
    Image.new("RGB", (300, 200), "red").save(full, quality=90)
    (image_dir / "truncated.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    Image.new("1", (20_000, 20_000)).save(image_dir / "huge.png")

    col = glimpse.open(collection_uri, encoder=hash_encoder)
    report = col.index([image_dir])
    reasons = dict(report.errors)
    assert set(reasons) == {str(image_dir / n) for n in ("empty.jpg", "notes.jpg", "truncated.jpg", "huge.png")}
    assert all(reasons.values())
    assert report.embedded == 13  # the 12 photos and full.jpg
    assert {e.path for e in col.errors()} == set(reasons)
    # The same bad files are not retried while unchanged; fixing one brings it in.
    assert col.index([image_dir]).skipped == 4
    Image.new("RGB", (30, 20), "blue").save(image_dir / "notes.jpg")
    report = col.index([image_dir])
    assert report.embedded == 1 and str(image_dir / "notes.jpg") not in {e.path for e in col.errors()}


def test_opening_with_another_encoder_is_a_clear_error(collection_uri, image_dir, hash_encoder):
    glimpse.open(collection_uri, encoder=hash_encoder).index([image_dir])
    with pytest.raises(glimpse.EncoderMismatchError, match="built with encoder hash"):
        glimpse.open(collection_uri, encoder=create_encoder("hash", dim=32))
    # Without an encoder, the recorded one is used.
    assert glimpse.open(collection_uri).encoder.dim == hash_encoder.dim


def test_a_second_writer_gets_the_pid_of_the_first(collection_uri, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    with WriteLock(col.path / "write.lock"):  # this machine's writer lock, on either backend
        with pytest.raises(glimpse.CollectionLockedError, match=f"locked by pid {os.getpid()}"):
            col.add([image_dir])
    assert col.add([image_dir]).embedded == 12  # the lock is gone with its holder


def test_readers_search_while_a_writer_adds(collection_uri, image_dir, hash_encoder):
    writer = glimpse.open(collection_uri, encoder=hash_encoder)
    reader = glimpse.open(collection_uri)
    seen = []

    def progress(done, total):
        seen.append(len(reader.search(text="anything", k=100)))

    writer.add([image_dir], batch_size=4, progress=progress)
    assert seen == [4, 8, 12]  # each committed batch is visible to the reader at once
    writer.remove([image_dir / "img01.png"])
    assert len(reader.search(text="anything", k=100)) == 11


@pytest.mark.local_only("reads the local vector file (vectors.f16)")
def test_search_matches_brute_force_over_stored_vectors(collection_uri, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.index([image_dir])
    stored = np.fromfile(col.path / "vectors.f16", dtype=np.float16).reshape(-1, hash_encoder.dim)
    query = hash_encoder.encode_texts(["red square"])[0]
    expected = np.argsort(-(stored.astype(np.float32) @ query))[:5]
    assert [r.id for r in col.search(vector=query, k=5)] == expected.tolist()


def test_search_rejects_bad_queries(collection_uri, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.index([image_dir])
    with pytest.raises(ValueError, match="exactly one"):
        col.search()
    with pytest.raises(ValueError, match="empty"):
        col.search(text="  ")
    with pytest.raises(ValueError, match="not usable"):
        col.search(image=b"not an image")
    with pytest.raises(ValueError, match="dims"):
        col.search(vector=np.ones(3))


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import glimpse
    from glimpse.storage.metadata import Metadata

    real = Metadata.commit_batch
    calls = []

    def crashing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # vectors of batch 3 are on disk; its metadata never commits
            os._exit(137)
        return real(self, *args, **kwargs)

    Metadata.commit_batch = crashing
    col = glimpse.open(sys.argv[1], encoder="hash")
    col.add([sys.argv[2]], batch_size=4)
    """
)


@pytest.mark.local_only("kills between the local vector file and SQLite; on Milvus, tests/test_milvus_workers.py kills a worker")
def test_crash_between_vectors_and_metadata_leaves_a_usable_collection(collection_uri, image_dir):
    col_path = Path(collection_uri)
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(col_path), str(image_dir)])
    assert proc.returncode == 137
    # The vector file holds 12 rows, the metadata only the 8 that committed.
    assert (col_path / "vectors.f16").stat().st_size == 12 * 64 * 2

    encoder = create_encoder("hash")
    col = glimpse.open(col_path, encoder=encoder)
    assert col.stats().images == 8
    assert len(col.search(text="anything", k=100)) == 8
    report = col.add([image_dir])  # resumes: only the 4 uncommitted images are embedded
    assert (report.embedded, report.unchanged, encoder.images_encoded) == (4, 8, 4)
    for path in sorted(image_dir.rglob("*.png")):
        assert col.search(image=path, k=1)[0].path == str(path)


@pytest.fixture
def many_images(tmp_path, make_image):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(120):
        make_image(folder / f"m{i:03d}.png", seed=1000 + i)
    return folder


def test_binary_codes_search_matches_exact_when_the_shortlist_covers_all(collection_uri, many_images, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.use_codes("itq", bits=32, oversample=10)
    col.add([many_images])
    assert col.stats().codes["fitted_on"] == 120
    query = hash_encoder.encode_texts(["blue sky"])[0]
    exact = col.search(vector=query, k=10, exact=True)
    assert [r.id for r in col.search(vector=query, k=10, oversample=1000)] == [r.id for r in exact]
    hamming = col.search(vector=query, k=10, rerank=False)
    assert len(hamming) == 10 and all(-1 <= r.score <= 1 for r in hamming)
    for path in sorted(many_images.glob("*.png"))[:10]:
        assert col.search(image=path, k=1)[0].path == str(path)


def test_codes_and_vectors_stay_consistent_across_add_remove_reopen(tmp_path, collection_uri, many_images, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.use_codes("itq", bits=32)
    col.add([many_images])
    col.remove(sorted(many_images.glob("*.png"))[:20])
    col.add([image_dir])
    query = hash_encoder.encode_texts(["green field"])[0]
    before = [r.id for r in col.search(vector=query, k=132, oversample=100)]
    assert len(before) == 112 and before == [r.id for r in col.search(vector=query, k=132, exact=True)]
    col.close()

    reopened = glimpse.open(collection_uri)
    assert [r.id for r in reopened.search(vector=query, k=132, oversample=100)] == before
    assert reopened._ensure_index().count() == 112  # one code per live image, none for removed ones
    # Doubling the collection re-fits the binarizer on the collection's own vectors.
    more = tmp_path / "more"
    shutil.copytree(many_images, more)
    for p in more.glob("*.png"):
        p.write_bytes(p.read_bytes() + b"\0")  # new content, same picture
    reopened.add([more])
    assert reopened.stats().codes["fitted_on"] == 120  # 232 images: not yet twice 120
    extra = tmp_path / "extra"
    shutil.copytree(image_dir, extra)
    for p in extra.rglob("*.png"):
        p.write_bytes(p.read_bytes() + b"\0")
    reopened.add([extra])
    assert reopened.stats().codes["fitted_on"] == 244
    top = reopened.search(image=more / "m050.png", k=2)  # the same picture is in two files
    assert {r.path for r in top} == {str(more / "m050.png"), str(many_images / "m050.png")}


def test_too_few_images_for_codes_fall_back_to_exact_search(collection_uri, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.use_codes("itq", bits=32)
    col.add([image_dir])  # 12 images: ITQ at 32 bits needs at least 32
    assert col.stats().codes["fitted_on"] == 0
    path = image_dir / "img04.png"
    assert col.search(image=path, k=1)[0].path == str(path)


def test_text_queries_scan_codes_asymmetrically_unless_told(collection_uri, many_images, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.use_codes("itq", bits=32)
    col.add([many_images])
    auto = [(r.id, r.score) for r in col.search(text="red roof", k=5, rerank=False)]
    assert auto == [(r.id, r.score) for r in col.search(text="red roof", k=5, rerank=False, scoring="asymmetric")]
    hamming = col.search(text="red roof", k=5, rerank=False, scoring="hamming")
    assert all((1 - r.score) * 32 / 2 == round((1 - r.score) * 32 / 2) for r in hamming)  # whole bit counts
    assert [s for _, s in auto] != [r.score for r in hamming]
    with pytest.raises(ValueError, match="scoring"):
        col.use_codes("itq", bits=32, scoring="cosine")


def test_terms_made_only_of_text_scan_codes_as_a_text_query_does(collection_uri, many_images, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.use_codes("itq", bits=32)
    col.add([many_images])
    terms = '"red roof" + 0.5:"blue sky"'

    def scores(**options):
        return [(r.id, r.score) for r in col.search(terms=terms, k=5, rerank=False, **options)]

    assert scores() == scores(scoring="asymmetric") != scores(scoring="cascade")
    item = col.search(text="x", k=1)[0].id  # an item term: not text only, so auto is cascade
    mixed = f"{terms} + #{item}"
    assert ([r.score for r in col.search(terms=mixed, k=5, rerank=False)]
            == [r.score for r in col.search(terms=mixed, k=5, rerank=False, scoring="cascade")])


@pytest.mark.local_only("the local code index's IVF lists (Milvus scans codes with BIN_FLAT)")
def test_big_collections_get_an_ivf_code_index_that_survives_reopen(collection_uri, many_images, hash_encoder, monkeypatch):
    monkeypatch.setattr("glimpse.backends.binary.IVF_FROM", 100)  # the real threshold is millions
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.use_codes("itq", bits=32, oversample=200)
    col.add([many_images])
    assert col._ensure_index().lists == 8  # 2 ** round(log2(sqrt(120)))
    query = hash_encoder.encode_texts(["blue sky"])[0]
    exact = [r.id for r in col.search(vector=query, k=5, exact=True)]
    col._ensure_index().probes = 8  # every list: the IVF shortlist then covers everything
    assert [r.id for r in col.search(vector=query, k=5)] == exact
    col.remove(sorted(many_images.glob("*.png"))[:10])
    col.close()
    reopened = glimpse.open(collection_uri)
    assert reopened._ensure_index().lists == 8 and reopened._ensure_index().count() == 110
    path = sorted(many_images.glob("*.png"))[50]
    assert reopened.search(image=path, k=1)[0].path == str(path)


def test_rerank_off_per_collection_keeps_code_scores_and_a_query_can_turn_it_back_on(collection_uri, many_images, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.use_codes("itq", bits=32, oversample=1000, scoring="hamming", rerank=False)
    col.add([many_images])
    query = hash_encoder.encode_texts(["blue sky"])[0]
    coded = col.search(vector=query, k=5)
    assert all((1 - r.score) * 16 == round((1 - r.score) * 16) for r in coded)  # Hamming similarities
    col.close()
    reopened = glimpse.open(collection_uri)  # the setting is the collection's, not the process's
    assert [r.score for r in reopened.search(vector=query, k=5)] == [r.score for r in coded]
    exact = reopened.search(vector=query, k=5, exact=True)
    assert [r.id for r in reopened.search(vector=query, k=5, rerank=True)] == [r.id for r in exact]
