"""Query forms through Collection.search, on scikit-image's photos with the fast hash encoder."""

import os
import time

import numpy as np
import pytest
from PIL import Image

import glimpse
from glimpse.query.filters import Filter

skimage_data = pytest.importorskip("skimage.data", reason="needs scikit-image's sample photos")

PHOTOS = ["astronaut", "camera", "immunohistochemistry", "chelsea", "coffee", "horse", "rocket", "coins", "moon", "page"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("skimage")
    for name in PHOTOS:
        Image.fromarray(getattr(skimage_data, name)()).convert("RGB").save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def col(photos, shared_collection_uri):
    from glimpse.encoders import create_encoder

    collection = glimpse.open(shared_collection_uri, encoder=create_encoder("hash"))
    collection.index([photos])
    yield collection
    collection.close()


def ranking(results):
    return [os.path.basename(r.path) for r in results]


def rank_of(results, name):
    return ranking(results).index(name)


def test_weights_and_negatives_move_rankings_the_expected_way(col, photos):
    base = col.search(terms=[(photos / "chelsea.png", 1.0), (photos / "rocket.png", 0.2)], k=10)
    heavier = col.search(terms=[(photos / "chelsea.png", 1.0), (photos / "rocket.png", 3.0)], k=10)
    # Both are in the collection, so both are left out; their neighbours move instead.
    assert "chelsea.png" not in ranking(base) and "rocket.png" not in ranking(base)
    rocket = col.search(image=photos / "rocket.png", k=10)
    nearest_to_rocket = ranking(rocket)[1]
    assert rank_of(heavier, nearest_to_rocket) < rank_of(base, nearest_to_rocket)

    plain = col.search(image=photos / "chelsea.png", k=10)
    pushed = col.search(terms=f'{photos / "chelsea.png"} - {photos / "coffee.png"}', k=10)
    away = {r.id: r.score for r in col.search(image=photos / "coffee.png", k=10)}
    # Every result's score moved by minus its similarity to the negative term, so the photos
    # most like coffee sink: the one most like coffee ranks lower than without the negative.
    most_coffee_like = max((r for r in plain if r.path.endswith(tuple(ranking(pushed)))), key=lambda r: away[r.id])
    assert rank_of(pushed, os.path.basename(most_coffee_like.path)) >= rank_of(plain, os.path.basename(most_coffee_like.path))
    assert ranking(pushed)[-1] == "coffee.png" or "coffee.png" not in ranking(pushed)


def test_terms_string_and_python_forms_agree(col, photos):
    by_string = col.search(terms=f'"2:red cat" - #{col.search(text="moon", k=1)[0].id}', k=5)
    moon = col.search(text="moon", k=1)[0].id
    by_python = col.search(terms=[("red cat", 2.0), (moon, -1.0)], k=5)
    assert [(r.id, round(r.score, 5)) for r in by_string] == [(r.id, round(r.score, 5)) for r in by_python]


def test_like_excludes_the_item_and_ranks_by_its_vector(col, photos):
    chelsea = col.search(image=photos / "chelsea.png", k=1)[0]
    assert chelsea.path.endswith("chelsea.png") and chelsea.score == pytest.approx(1.0, abs=1e-3)
    like = col.search(like=chelsea.id, k=9)
    assert chelsea.id not in [r.id for r in like] and len(like) == 9
    assert [r.id for r in like] == [r.id for r in col.search(image=photos / "chelsea.png", k=10)][1:]
    with pytest.raises(ValueError, match="no item"):
        col.search(like=10_000)


def test_composed_query_excludes_its_reference_and_alpha_moves_towards_the_text(col, photos):
    ref = photos / "chelsea.png"
    image_only = col.search(image=ref, k=10)
    composed = col.search(image=ref, text="moon", alpha=0.5, k=9)
    assert "chelsea.png" not in ranking(composed) and len(composed) == 9
    text_top = ranking(col.search(text="moon", k=1))[0]
    more_text = col.search(image=ref, text="moon", alpha=0.95, k=9)
    assert rank_of(more_text, text_top) <= rank_of(composed, text_top)
    assert ranking(col.search(image=ref, text="moon", alpha=0.0, k=9)) == ranking(image_only)[1:]
    with pytest.raises(ValueError, match="alpha"):
        col.search(image=ref, text="moon", alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        col.search(text="moon", alpha=0.5)


def test_filters_apply_before_ranking_and_return_k_when_k_match(col, photos):
    landscape = [n for n in PHOTOS if (lambda a: a.shape[1] > a.shape[0])(getattr(skimage_data, n)())]
    assert len(landscape) >= 3
    found = col.search(image=photos / "camera.png", k=3, filters=Filter(orientation="landscape"))
    assert len(found) == 3 and set(ranking(found)) <= {f"{n}.png" for n in landscape}
    glob = col.search(text="x", k=10, filters=Filter(path_glob="c*.png"))
    assert sorted(ranking(glob)) == ["camera.png", "chelsea.png", "coffee.png", "coins.png"]
    assert ranking(col.search(text="x", k=10, filters=Filter(path_prefix=str(photos / "moon.png")))) == ["moon.png"]
    assert col.search(text="x", k=10, filters=Filter(min_width=100_000)) == []
    wide = col.search(text="x", k=10, filters=Filter(min_width=500, min_bytes=1))
    assert wide and all(col.item(r.id).width >= 500 for r in wide)


def test_date_filters_use_file_times(col, photos, tmp_path):
    old = time.mktime((2001, 6, 1, 12, 0, 0, 0, 0, -1))
    os.utime(photos / "moon.png", (old, old))
    try:
        col.index([photos])  # the new mtime is seen (same content: nothing is re-embedded)
        assert ranking(col.search(text="x", k=10, filters=Filter(before="2002"))) == ["moon.png"]
        assert "moon.png" not in ranking(col.search(text="x", k=10, filters=Filter(after="2001-07")))
        assert col.item(col.search(text="x", filters=Filter(before="2002"))[0].id).mtime == pytest.approx(old)
    finally:
        now = time.time()
        os.utime(photos / "moon.png", (now, now))
        col.index([photos])


def test_filters_work_through_codes_and_exact(tmp_path, collection_uri, make_image, hash_encoder):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(80):
        make_image(folder / f"{'a' if i % 4 == 0 else 'b'}{i:02d}.png", seed=i)
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.use_codes("itq", bits=32)
    col.index([folder])
    only_a = Filter(path_glob="a*.png")
    for exact in (False, True):
        found = col.search(text="red", k=15, filters=only_a, exact=exact)
        assert len(found) == 15 and all(os.path.basename(r.path).startswith("a") for r in found)


def test_min_score_drops_weak_results_and_scores_are_cosines(col, photos):
    everything = col.search(image=photos / "coffee.png", k=10)
    cut = everything[3].score
    kept = col.search(image=photos / "coffee.png", k=10, min_score=cut)
    assert [r.id for r in kept] == [r.id for r in everything[:4]]
    assert all(-1.0 <= r.score <= 1.0 + 1e-5 for r in everything)
    with pytest.raises(ValueError, match="min_score must be a cosine from -1 to 1"):  # as over HTTP
        col.search(image=photos / "coffee.png", min_score=1.5)


def test_item_info(col, photos):
    hit = col.search(image=photos / "rocket.png", k=1)[0]
    info = col.item(hit.id)
    array = skimage_data.rocket()
    assert info.paths == [str(photos / "rocket.png")] and (info.height, info.width) == array.shape[:2]
    assert info.bytes == (photos / "rocket.png").stat().st_size
    with pytest.raises(KeyError):
        col.item(99_999)


def test_refine_runs_through_search(col, photos):
    for method in ("aqe", "superglobal"):
        found = col.search(image=photos / "coffee.png", k=5, refine=method)
        assert len(found) == 5 and found == col.search(image=photos / "coffee.png", k=5, refine=method)
    with pytest.raises(ValueError, match="refine"):
        col.search(text="x", refine="magic")


def test_query_vector_is_unit_and_rejects_cancelling_terms(col):
    with pytest.raises(ValueError, match="nothing"):
        col.search(terms=[("red", 1.0), ("red", -1.0)])
    assert np.isfinite([r.score for r in col.search(terms="red - 0.5:blue", k=3)]).all()


def test_date_filters_prefer_the_exif_capture_time(tmp_path, collection_uri):
    folder = tmp_path / "shots"
    folder.mkdir()
    for name, taken, colour in (("2019.jpg", "2019:08:14 09:30:00", (200, 40, 40)), ("none.jpg", None, (30, 60, 220))):
        exif = Image.Exif()
        if taken:
            exif.get_ifd(0x8769)[0x9003] = taken  # DateTimeOriginal
        Image.new("RGB", (40, 30), colour).save(folder / name, exif=exif)
    col = glimpse.open(collection_uri, encoder="hash")
    col.add([folder])
    shot = col.search(image=folder / "2019.jpg", k=1)[0]
    assert col.item(shot.id).taken == pytest.approx(time.mktime((2019, 8, 14, 9, 30, 0, 0, 0, -1)))
    assert ranking(col.search(text="x", k=5, filters=Filter(before="2020"))) == ["2019.jpg"]  # mtime is today
    assert ranking(col.search(text="x", k=5, filters=Filter(after="2020"))) == ["none.jpg"]  # no EXIF: mtime
    assert col.item(col.search(image=folder / "none.jpg", k=1)[0].id).taken is None


def test_collections_from_before_capture_times_open_and_filter(tmp_path, photos):
    import sqlite3

    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([photos / "moon.png"])
    col.close()
    db = sqlite3.connect(tmp_path / "col" / "metadata.sqlite")
    db.execute("ALTER TABLE items DROP COLUMN taken_ns")  # the schema of older collections
    db.commit()
    db.close()
    reopened = glimpse.open(tmp_path / "col")
    assert ranking(reopened.search(text="x", k=5, filters=Filter(after="2000"))) == ["moon.png"]
    assert reopened.item(0).taken is None
