"""`glimpse upgrade`: a collection moves to another encoder while it keeps answering.

Two offline encoders of different dimensions (``hash`` 64-d and ``hash`` 32-d with another
seed) stand in for a model change; each state of an upgrade is searched the ways a user
searches, and the end state must equal a collection built fresh with the new encoder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.query.filters import Filter
from glimpse.upgrade.state import active, read_order

NEW = {"dim": 32, "seed": 1}
B = 4  # images a batch: the upgrade re-embeds in the batches of a fresh index with this --batch-size
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def photos(tmp_path: Path, make_image) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(24):
        make_image(folder / ("sub" if i % 4 == 0 else "") / f"p{i:02d}.png", seed=i)
    return folder


def built(tmp_path: Path, photos: Path, name: str = "col", **encoder) -> glimpse.Collection:
    col = glimpse.open(tmp_path / name, encoder="hash", **encoder)
    col.add([photos], batch_size=B)
    return col


def vectors(col: glimpse.Collection) -> np.ndarray:
    """Every image's stored vector, by path (collections built apart number their images apart)."""
    col._sync()
    paths = sorted(col._meta.file_records())
    return col._read_vectors(np.array([col._meta.item_for_path(p) for p in paths], np.int64))


def check_searches(col: glimpse.Collection, photos: Path) -> None:
    """Text, image, composed, filtered, like and code searches all answer, in the collection's current space."""
    target = photos / "p05.png"
    assert col.search(image=target, k=1)[0].path == str(target)  # a photo finds itself first
    assert len(col.search(text="a photo", k=5)) == 5
    assert len(col.search(text="a photo", image=target, alpha=0.3, k=3)) == 3
    inside = col.search(image=target, k=24, filters=Filter(path_prefix=str(photos / "sub")))
    assert inside and all("/sub/" in r.path for r in inside)
    first = col.item_ids()[0]
    assert first not in [r.id for r in col.search(like=first, k=5)]
    assert col.search(image=target, k=1, exact=True)[0].path == str(target)


def test_every_state_searches_and_the_end_equals_a_fresh_collection(tmp_path, photos):
    col = built(tmp_path, photos)
    col.use_codes("sign", bits=32, oversample=10)
    reader = glimpse.open(tmp_path / "col")  # another process's view, opened before the upgrade
    check_searches(reader, photos)

    report = col.upgrade("hash", sample=10, backfill=0, **NEW, batch_size=B)
    assert (report.phase, report.done, report.total) == ("backfilling", 12, 24)  # whole batches
    assert col.encoder.dim == 32 and reader.search(image=photos / "p05.png", k=1)[0].path.endswith("p05.png")
    assert reader.encoder.dim == 32  # it followed the switch
    for step in (4, 4, 4):
        check_searches(col, photos)
        check_searches(reader, photos)
        col.upgrade(backfill=step, finish=False, batch_size=B)
    up = col.stats().upgrade
    assert (up["phase"], up["reembedded"], up["share"]) == ("backfilling", 24, 1.0)
    assert up["old"].startswith("hash v1 (64-d") and up["new"] == "hash v1 (32-d, dim 32, seed 1)"
    assert up["quality"]["pairs"] == 12 and 0 <= up["quality"]["top1"] <= 1 and up["map"].split(":")[0] in ("orthogonal", "ridge")
    check_searches(reader, photos)

    assert col.upgrade(batch_size=B).phase == "finished"
    assert col.stats().upgrade is None and col.stats().codes["fitted_on"] == 24
    fresh = built(tmp_path, photos, "fresh", **NEW)
    assert np.array_equal(vectors(col), vectors(fresh))
    assert np.array_equal(vectors(reader), vectors(fresh))
    check_searches(reader, photos)
    left = sorted(p.name for p in (tmp_path / "col").iterdir() if p.name.startswith(("vectors", "upgrade-")))
    assert len(left) == 2 and left[0].startswith("vectors-upgrade-")  # the old vectors and the map are gone
    assert left[1] == left[0].replace(".f16", ".sums")  # the new vectors' checksums stay
    assert glimpse.open(tmp_path / "col").encoder.dim == 32


def test_abort_returns_to_the_old_vectors_and_keeps_images_added_meanwhile(tmp_path, photos, make_image):
    col = built(tmp_path, photos)
    before = vectors(col)
    col.upgrade("hash", sample=8, backfill=4, **NEW, batch_size=B)
    added = make_image(photos / "late.png", seed=99)
    col.add([photos])
    late = col._meta.item_for_path(str(added))
    assert col.search(image=added, k=1)[0].id == late  # embedded straight into the new space
    assert col.upgrade(abort=True).phase == "aborted"
    assert col.encoder.dim == 64 and col.stats().upgrade is None
    assert np.array_equal(vectors(col)[1:], before)  # the old vectors (late.png sorts first), untouched
    assert col.search(image=added, k=1)[0].id == late  # mapped back into the old space
    assert sorted(p.name for p in (tmp_path / "col").glob("vectors*")) == ["vectors.f16", "vectors.sums"]
    check_searches(glimpse.open(tmp_path / "col"), photos)
    with pytest.raises(ValueError, match="no upgrade is under way"):
        col.upgrade(abort=True)


def test_a_file_added_mid_upgrade_goes_straight_to_the_new_encoder(tmp_path, photos, make_image):
    col = built(tmp_path, photos)
    col.upgrade("hash", sample=6, backfill=0, **NEW, batch_size=B)
    added = make_image(photos / "late.png", seed=99)
    col.add([photos])
    fresh = built(tmp_path, photos, "fresh", **NEW)
    item = col._meta.item_for_path(str(added))
    assert np.array_equal(col._read_vectors(np.array([item])), fresh._read_vectors(np.array([fresh._meta.item_for_path(str(added))])))
    assert col.upgrade(batch_size=B).phase == "finished"
    assert np.array_equal(vectors(col), vectors(fresh))


def test_dimensions_that_grow(tmp_path, photos):
    col = built(tmp_path, photos, **NEW)
    col.upgrade("hash", sample=12, order="random", batch_size=B)  # 32-d -> 64-d
    assert col.encoder.dim == 64
    assert np.array_equal(vectors(col), vectors(built(tmp_path, photos, "fresh")))


def test_refusals_are_one_clear_sentence(tmp_path, photos):
    col = built(tmp_path, photos)
    with pytest.raises(ValueError, match="cannot embed images"):
        col.upgrade("precomputed", dim=64, batch_size=B)
    with pytest.raises(ValueError, match="already uses hash"):
        col.upgrade("hash", batch_size=B)
    with pytest.raises(ValueError, match="name the encoder"):
        col.upgrade(batch_size=B)
    with pytest.raises(ValueError, match="backfill order"):
        col.upgrade("hash", order="largest", **NEW, batch_size=B)
    col.upgrade("hash", sample=4, backfill=0, **NEW, batch_size=B)
    with pytest.raises(ValueError, match="under way"):
        col.upgrade("lite0-minilm", batch_size=B)
    with pytest.raises(ValueError, match="finish it"):
        col.compact()
    assert active(col._meta.get_meta())["done"] == 4  # nothing changed by the refusals
    vectors_only = glimpse.open(tmp_path / "keys", encoder="precomputed", dim=4)
    vectors_only.add_vectors(np.eye(4), ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="precomputed vectors"):
        vectors_only.upgrade("hash", batch_size=B)


KILLED_RUN = """
import sys, time, glimpse
col = glimpse.open(sys.argv[1])
def progress(done, total):
    print(done, flush=True)
    time.sleep(0.05)
col.upgrade("hash", dim=32, seed=1, sample=int(sys.argv[2]), batch_size=2, progress=progress)
"""


@pytest.mark.parametrize("sample, kill_after", [(12, 2), (4, 5)], ids=["in the sample", "in the backfill"])
def test_a_killed_upgrade_loses_nothing_and_resumes(tmp_path, photos, sample, kill_after):
    col = built(tmp_path, photos)
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "col"), str(sample)],
                           stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    for _ in range(kill_after):
        assert run.stdout.readline(), "the upgrade ended before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    state = active(col._meta.get_meta())
    assert state is not None and 0 < state["done"] < 24
    after = glimpse.open(tmp_path / "col")
    check_searches(after, photos)  # opens and searches (old space while sampling, new after the switch)
    assert after.upgrade(batch_size=B).phase == "finished"
    assert np.array_equal(vectors(after), vectors(built(tmp_path, photos, "fresh", **NEW)))


def test_cli_upgrade_info_and_exit_codes(tmp_path, photos):
    built(tmp_path, photos, **NEW)
    where = str(tmp_path / "col")
    runner = CliRunner()
    result = runner.invoke(app, ["upgrade", "hash", "-c", where, "--sample", "6", "--backfill", "2", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "12 of 24 done" in result.output  # 2 batches of 4 for the sample, then one
    info = json.loads(runner.invoke(app, ["info", "-c", where, "--json"]).output)["stats"]["upgrade"]
    assert info["reembedded"] == 12 and info["new"] == "hash v1 (64-d)"
    assert "upgrade" in runner.invoke(app, ["info", "-c", where]).output
    refused = runner.invoke(app, ["upgrade", "precomputed", "-c", where])
    assert refused.exit_code == 2 and "under way" in refused.output and "Traceback" not in refused.output
    result = runner.invoke(app, ["upgrade", "-c", where, "--batch-size", "4"])
    assert result.exit_code == 0 and "upgrade finished" in result.output
    assert runner.invoke(app, ["upgrade", "--abort", "-c", where]).exit_code == 2


def test_api_stats_show_the_upgrade_and_search_follows_it(tmp_path, photos):
    from fastapi.testclient import TestClient

    from glimpse.server import ServerConfig, create_app

    built(tmp_path, photos)
    served = glimpse.open(tmp_path / "col")  # the server's reader, started before the upgrade
    client = TestClient(create_app(served, ServerConfig()))
    assert client.get("/api/stats").json()["upgrade"] is None
    glimpse.open(tmp_path / "col").upgrade("hash", sample=12, backfill=3, **NEW, batch_size=B)
    stats = client.get("/api/stats").json()
    assert stats["upgrade"]["reembedded"] == 16 and stats["upgrade"]["quality"]["pairs"] == 12
    assert stats["dim"] == 32 and stats["encoder"] == "hash"
    found = client.post("/api/search", json={"text": "a photo", "k": 3}).json()
    assert len(found["results"]) == 3


def test_tiny_clip_weights_of_the_same_dimension(tmp_path, photos):
    """Same encoder name and dimension, other weights: a model change the version (fingerprint) shows."""
    from tests.test_clip_encoders import open_clip_folder

    old, new = open_clip_folder(tmp_path / "m0", seed=0), open_clip_folder(tmp_path / "m1", seed=1)
    col = glimpse.open(tmp_path / "col", encoder="open_clip", pretrained=str(old), device="cpu")
    col.add([photos], batch_size=1)  # one image a batch here and below: torch rounds by batch shape
    report = col.upgrade("open_clip", pretrained=str(new), device="cpu", sample=12, backfill=0, batch_size=1)
    assert report.quality["pairs"] == 12 and col.stats().upgrade["new"].endswith(f"pretrained {new})")
    check_searches(col, photos)
    col.upgrade(batch_size=1)
    fresh = glimpse.open(tmp_path / "fresh", encoder="open_clip", pretrained=str(new), device="cpu")
    fresh.add([photos], batch_size=1)
    assert np.array_equal(vectors(col), vectors(fresh))


def pending_of(col: glimpse.Collection) -> set[int]:
    state = active(col._meta.get_meta())
    return set(read_order(col.path, state)[state["done"]:].tolist())


def edited(path: Path) -> Image.Image:
    """An edited copy of a photo: brighter, a border cropped off (not the file: no hash matches it)."""
    with Image.open(path) as im:
        im = ImageEnhance.Brightness(im.convert("RGB")).enhance(1.15)
    return im.crop((2, 2, im.width - 3, im.height - 2))


def test_images_not_reembedded_yet_rank_by_their_old_scores(tmp_path, photos):
    old = built(tmp_path, photos, "old")
    col = built(tmp_path, photos)
    col.use_codes("sign", bits=32, oversample=10)
    col.upgrade("hash", sample=4, backfill=0, **NEW, batch_size=B)
    waiting = pending_of(col)
    def pending_order(found) -> list[str]:
        return [r.path for r in found if col._meta.item_for_path(r.path) in waiting]

    query = edited(photos / "p05.png")
    expected = pending_order(old.search(image=query, k=24))  # old/old: the old collection, old queries
    assert pending_order(col.search(image=query, k=24)) == expected
    col._upgrade_scoring = "map"  # every image through its mapped vector: the order the map makes differs
    assert pending_order(col.search(image=query, k=24)) != expected


def test_copies_find_their_original_first_in_every_mixed_state(tmp_path, photos):
    col = built(tmp_path, photos)
    col.upgrade("hash", sample=4, backfill=0, **NEW, batch_size=B)
    originals = sorted(photos.rglob("*.png"))
    missed_by_map = None
    while (state := active(col._meta.get_meta())) is not None:
        for scoring in ("map", "dual"):
            col._upgrade_scoring = scoring
            first = [col.search(image=edited(p), k=1)[0].path for p in originals]
            missed = sum(found != str(p) for found, p in zip(first, originals))
            if scoring == "dual":
                assert missed == 0, f"{missed} copies missed their original with {state['done']} of 24 re-embedded"
            elif missed_by_map is None:
                missed_by_map = missed
        inside = col.search(image=edited(photos / "sub" / "p04.png"), k=24, filters=Filter(path_prefix=str(photos / "sub")))
        assert inside[0].path.endswith("p04.png") and all("/sub/" in r.path for r in inside) and len(inside) == 6
        col.upgrade(backfill=8, batch_size=B)
    assert missed_by_map > 0  # through the map alone, some copies miss their original while mapped


def test_until_the_finish_every_query_form_ranks_the_images_there_before_the_switch_as_a_fixed_collection(
        tmp_path, photos, make_image):
    """Whatever the backfill has re-embedded, text, image, composed, like and weighted-terms answers among the
    images there before the switch are old/old's, filtered and with codes too (each query built again in the
    old space); a raw vector (the new space's) and like of an image added since rank them as at the switch
    (through the map): no pair is ever reordered (glimpse.upgrade.dual). At the finish, new/new's."""
    old, fresh = built(tmp_path, photos, "old"), built(tmp_path, photos, "fresh", **NEW)
    before = {str(p) for p in photos.rglob("*.png")}
    col = built(tmp_path, photos)
    col.use_codes("sign", bits=32, oversample=10)
    col.upgrade("hash", sample=4, backfill=0, **NEW, batch_size=B)
    col.add([make_image(photos / "late.png", seed=99)])  # added since the switch: new vector only
    query = edited(photos / "p05.png")

    def item(c: glimpse.Collection, name: str) -> int:
        return c._meta.item_for_path(str(photos / name))

    asks = {"text": lambda c: {"text": "a photo"}, "image": lambda c: {"image": query},
            "composed": lambda c: {"text": "a photo", "image": photos / "p05.png", "alpha": 0.3},
            "like": lambda c: {"like": item(c, "p07.png")},
            "terms": lambda c: {"terms": [("a photo", 1.0), (item(c, "p03.png"), 0.5), (query, -0.3)]},
            "filtered": lambda c: {"image": query, "filters": Filter(path_prefix=str(photos / "sub"))}}
    fixed = {"vector": {"vector": np.random.default_rng(0).normal(size=32)}, "like added": {"like": item(col, "late.png")}}

    def ranking(c: glimpse.Collection, ask: dict) -> list[str]:
        return [r.path for r in c.search(**ask, k=30) if r.path in before]

    at_switch = {name: ranking(col, ask) for name, ask in fixed.items()}
    stages = 0
    while (state := active(col._meta.get_meta())) is not None:
        for name, ask in asks.items():
            assert ranking(col, ask(col)) == ranking(old, ask(old)), f"{name}: {state['done']} of 24 re-embedded"
        for name, ask in fixed.items():
            assert ranking(col, ask) == at_switch[name], f"{name}: {state['done']} of 24 re-embedded"
        assert str(photos / "p05.png") not in ranking(col, asks["composed"](col))  # its reference image left out
        col.upgrade(backfill=8, batch_size=B)
        stages += 1
    assert stages == 3
    for name, ask in asks.items():
        assert ranking(col, ask(col)) == ranking(fresh, ask(fresh)), name


def test_a_milvus_collection_is_refused_and_left_as_it_was(tmp_path, photos, monkeypatch):
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    uri = f"milvus-lite://{tmp_path}/photos.db"
    with glimpse.open(uri, encoder="hash") as col:
        col.add([photos], batch_size=B)
        with pytest.raises(ValueError, match="Milvus collection cannot change its encoder"):
            col.upgrade("hash", sample=4, **NEW, batch_size=B)
        assert col.stats().upgrade is None
    with glimpse.open(uri) as col:  # reopens with its own encoder and searches
        assert col.encoder.dim == 64 and col.search(image=photos / "p05.png", k=1)[0].path == str(photos / "p05.png")
    result = CliRunner().invoke(app, ["upgrade", "hash", "-c", uri])
    assert result.exit_code == 2 and "Milvus collection cannot change its encoder" in result.output


def test_a_text_query_is_encoded_once_when_both_encoders_share_their_text_vectors(tmp_path, photos, monkeypatch):
    col = built(tmp_path, photos)
    col.upgrade("hash", sample=4, backfill=0, seed=1, batch_size=B)  # 64-d both; hash texts ignore the seed
    expected = [r.path for r in col.search(text="a photo of p05", k=5)]
    assert col._dual[1].same_text
    calls = []
    old_encoder = col._dual[1].encoder
    monkeypatch.setattr(old_encoder, "encode_texts", lambda texts: calls.append(texts))
    assert [r.path for r in col.search(text="a photo of p05", k=5)] == expected and calls == []
    col.search(image=photos / "p05.png", k=1)  # an image still runs both image towers
    other = built(tmp_path, photos, "other")
    other.upgrade("hash", sample=4, backfill=0, **NEW, batch_size=B)
    other.search(text="a photo", k=1)
    assert not other._dual[1].same_text  # 64-d and 32-d: two text spaces
