"""Kills at fixed points of adapt, upgrade and the server's uploads: simulated crashes between two writes.

The random SIGKILL trials behind these are ``benchmarks/kill_trials.py``; each case here pins one
moment those trials showed (or the code allows) to leave something behind.
"""

from __future__ import annotations

import numpy as np
import pytest

import glimpse
from glimpse.upgrade.state import active, read_order

WORDS = ["apple", "bridge", "castle", "dune", "engine", "forest", "garden", "harbor", "island", "jungle",
         "kettle", "lantern", "meadow", "needle", "orchard", "pepper", "quarry", "river", "saddle", "temple",
         "valley", "willow", "yacht", "zebra"]
B = 4


@pytest.fixture
def captioned(tmp_path, make_image):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, word in enumerate(WORDS):
        make_image(folder / f"p{i:02d}.png", seed=100 + i)
        (folder / f"p{i:02d}.png.txt").write_text(f"a photo of the {word} at dusk")
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([folder], batch_size=B)
    return col, folder


def adapter_files(col) -> list[str]:
    return sorted(p.name for p in col.path.iterdir() if "adapt" in p.name)


def test_adapt_after_a_killed_adapt_leaves_only_the_committed_map(captioned):
    col, _ = captioned
    col.adapt(kind="ridge", holdout=0)
    # What kills leave: a map saved but never committed, one committed whose predecessor was not yet
    # deleted (here adapt-1 is the committed one and an older one lingers), a half-written save.
    (col.path / "adapt-0.npz").write_bytes((col.path / "adapt-1.npz").read_bytes())
    (col.path / "adapt-2.npz").write_bytes(b"half")
    (col.path / ".adapt-2.npz.x1y2.tmp").write_bytes(b"half")
    assert col.adapt(kind="ridge", holdout=0).version == 2
    assert adapter_files(col) == ["adapt-2.npz"]
    for name in ("adapt-1.npz", "adapt-3.npz", ".adapt-3.npz.x.tmp"):
        (col.path / name).write_bytes(b"left")
    assert col.remove_adapt() and adapter_files(col) == []


def test_adapt_during_an_upgrade_keeps_the_old_spaces_map_for_an_abort(captioned):
    col, folder = captioned
    col.adapt(kind="ridge", holdout=0)
    old_map = (col.path / "adapt-1.npz").read_bytes()
    col.upgrade("hash", dim=32, seed=1, sample=8, backfill=0, batch_size=B)
    assert active(col._meta.get_meta())["adapt"]["file"] == "adapt-1.npz"
    # A map learnt in the new space must not take the old one's name (it was version 1 again) nor delete it.
    assert col.adapt(kind="ridge", holdout=0).version == 2
    assert (col.path / "adapt-1.npz").read_bytes() == old_map
    col.upgrade(abort=True)
    assert col.settings().adapt["file"] == "adapt-1.npz"
    assert len(col.search(text="the apple", k=3)) == 3  # the restored map fits the old space


def stored_vectors(col) -> np.ndarray:
    col._sync()
    paths = sorted(col._meta.file_records())
    return col._read_vectors(np.array([col._meta.item_for_path(p) for p in paths], np.int64))


def test_an_upgrade_killed_after_the_switch_saved_its_order_resumes_without_doing_images_twice(
        captioned, tmp_path, monkeypatch):
    from glimpse.upgrade import backfill

    col, folder = captioned
    saved = backfill.save_order

    def killed_after_the_switch_saved(path, units):
        saved(path, units)
        if len(np.concatenate(units)) > 8:  # the switch's order (the start's holds the sample only)
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(backfill, "save_order", killed_after_the_switch_saved)
    with pytest.raises(KeyboardInterrupt):
        col.upgrade("hash", dim=32, seed=1, sample=8, batch_size=B)
    monkeypatch.undo()
    again = glimpse.open(col.location)
    assert active(again._meta.get_meta())["phase"] == "sampling"
    assert len(again.search(text="the apple", k=3)) == 3
    report = again.upgrade(batch_size=B, finish=False)
    order = read_order(again.path, active(again._meta.get_meta()))
    assert len(order) == len(set(order.tolist())) == len(WORDS) == report.total  # each image once
    again.upgrade(batch_size=B)
    fresh = glimpse.open(tmp_path / "fresh", encoder="hash", dim=32, seed=1)
    fresh.add([folder], batch_size=B)
    assert np.array_equal(stored_vectors(again), stored_vectors(fresh))


def test_an_image_removed_while_the_sample_is_embedded_does_not_stop_the_upgrade_from_finishing(captioned):
    col, folder = captioned
    other = glimpse.open(col.location)
    removed = []

    def remove_a_sampled_image(done, total):
        if not removed:  # after the sample's first batch: drop an image of its last one
            state = active(other._meta.get_meta())
            item = int(read_order(other.path, state)[int(state["sample"]) - 1])
            removed.extend(other.item(item).paths)
            other.remove(removed)

    report = col.upgrade("hash", dim=32, seed=1, sample=8, batch_size=B, progress=remove_a_sampled_image)
    assert removed and report.phase == "finished" and active(col._meta.get_meta()) is None
    assert len(col) == len(WORDS) - 1


def test_a_server_killed_before_its_upload_job_ran_adds_the_uploads_when_it_starts_again(captioned, make_image):
    import time

    from fastapi.testclient import TestClient

    from glimpse.server import ServerConfig, create_app

    col, _ = captioned
    uploads = col.path / "uploads"  # what the killed server left: two kept uploads, one half-written
    uploads.mkdir()
    make_image(uploads / "aa.png", seed=900)
    make_image(uploads / "bb.png", seed=901)
    (uploads / ".cc.png.k3j.tmp").write_bytes(b"\x89PNG half")
    for name in ("aa.png", "bb.png", "cc.png"):  # each marked pending before it was written
        (uploads / f".{name}.pending").touch()
    make_image(uploads / "dd.png", seed=902)  # added, then removed with the CLI: no marker, it stays out
    create_app(col.location, ServerConfig())
    assert (uploads / ".cc.png.k3j.tmp").exists()  # a read-only server writes nothing
    with TestClient(create_app(col.location, ServerConfig(write_token="t"))) as http:
        for _ in range(300):
            job = http.get("/api/jobs/1").json()
            if job.get("state") in ("done", "failed"):
                break
            time.sleep(0.1)
        assert job["kind"] == "add" and job["state"] == "done" and job["result"]["indexed"] == 2
    assert len(glimpse.open(col.location)) == len(WORDS) + 2
    assert sorted(p.name for p in uploads.iterdir()) == ["aa.png", "bb.png", "dd.png"]  # the markers gone


def test_the_files_of_killed_upgrade_runs_are_dropped_by_the_next_upgrade_command(captioned, monkeypatch):
    from glimpse.upgrade import backfill

    col, _ = captioned
    saved = backfill.save_order

    def killed_before_the_start_committed(path, units):
        saved(path, units)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(backfill, "save_order", killed_before_the_start_committed)
    with pytest.raises(KeyboardInterrupt):
        col.upgrade("hash", dim=32, seed=1, sample=8, batch_size=B)
    monkeypatch.undo()
    assert active(col._meta.get_meta()) is None and list(col.path.glob("upgrade-*-order.npy"))
    col.upgrade("hash", dim=32, seed=1, sample=8, batch_size=B)
    left = {"vectors.f16", "upgrade-1-order.npy", "upgrade-1-map.npz", ".upgrade-1-reverse.npz.x.tmp"}
    for name in left:  # what a finish killed after its commit leaves, and a killed save
        (col.path / name).write_bytes(b"left")
    with pytest.raises(ValueError, match="nothing to upgrade"):  # rerun after that kill: the upgrade is done
        col.upgrade("hash", dim=32, seed=1, sample=8, batch_size=B)
    assert not {p.name for p in col.path.iterdir()} & left
    assert not list(col.path.glob("upgrade-*-order.npy"))
