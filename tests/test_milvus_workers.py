"""Several `glimpse index` workers writing one Milvus collection at once (Milvus Lite over loopback
stands in for the server): nothing lost, nothing duplicated, and a kill -9 loses nothing committed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from milvus_fixtures import client, lite_server  # noqa: F401 - fixture

import glimpse
from glimpse.milvus.collection import MilvusCollection, parse_shard
from glimpse.storage import Metadata


def worker(uri: str, folder: Path, home: Path, *options: str) -> subprocess.Popen:
    """`glimpse index` in its own process, as on another machine (its own GLIMPSE_HOME)."""
    env = {**os.environ, "GLIMPSE_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "glimpse.cli", "index", str(folder), "-c", uri, "--encoder", "hash",
                             *options], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def milvus_ids(address: str, name: str) -> list[int]:
    milvus = client(address)
    rows = []
    for collection in milvus.list_collections():
        if collection.startswith(name + "_") and not collection.endswith("_settings"):
            rows += [r["id"] for r in milvus.query(collection, filter="id >= 0", output_fields=["id"], limit=16384,
                                                   consistency_level="Strong")]
    return rows


@pytest.fixture
def photos(tmp_path, make_image) -> tuple[Path, int]:
    """60 images in two folders, 10 of them also copied under another name: 60 distinct contents."""
    folder = tmp_path / "photos"
    for i in range(60):
        (folder / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        make_image(folder / f"d{i % 2}" / f"img{i:03d}.png", seed=i)
    for i in range(10):
        shutil.copy(folder / f"d{i % 2}" / f"img{i:03d}.png", folder / f"copy{i:03d}.png")
    return folder, 60


def test_concurrent_workers_lose_and_duplicate_nothing(lite_server, photos, tmp_path, monkeypatch):
    folder, distinct = photos
    uri = f"milvus://{lite_server}/workers"
    running = [worker(uri, folder, tmp_path / "m0", "--shard", "0/2", "--batch-size", "2"),
               worker(uri, folder, tmp_path / "m1", "--shard", "1/2", "--batch-size", "2"),
               worker(uri, folder, tmp_path / "m2", "--batch-size", "3")]  # overlaps both shards
    for process in running:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    ids = milvus_ids(lite_server, "workers")
    assert len(ids) == len(set(ids)) == distinct
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "reader"))  # a machine that indexed nothing
    with glimpse.open(uri) as col:
        for image in sorted(folder.rglob("img*.png"))[::7]:
            assert Path(col.search(image=image, k=1)[0].path).read_bytes() == image.read_bytes()


def test_shards_split_the_files(lite_server, photos, tmp_path, monkeypatch):
    folder, _ = photos
    uri = f"milvus://{lite_server}/split"
    counts = []
    for index in range(2):
        monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / f"m{index}"))
        with glimpse.open(uri, "hash") as col:
            assert isinstance(col, MilvusCollection)
            col.use_shard(f"{index}/2")
            counts.append(col.index([folder]).scanned)
    assert sum(counts) == 70 and min(counts) > 0


def test_kill_9_loses_nothing_committed(lite_server, tmp_path, make_image):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        make_image(folder / f"{i:03d}.png", seed=1000 + i)
    uri = f"milvus://{lite_server}/killed"
    home = tmp_path / "machine"
    process = worker(uri, folder, home, "--batch-size", "1")
    deadline = time.monotonic() + 120
    while not milvus_ids(lite_server, "killed") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = set(milvus_ids(lite_server, "killed"))
    meta = Metadata(next((home / "milvus").rglob("metadata.sqlite")))
    committed = set(meta.item_ids())
    meta.close()
    assert 0 < len(before) < 300, "the worker was not killed halfway: the test proves nothing"
    assert worker(uri, folder, home).wait(timeout=300) == 0  # the same machine resumes
    after = milvus_ids(lite_server, "killed")
    assert before | committed <= set(after) and len(after) == len(set(after)) == 300


@pytest.mark.parametrize("text, message", [("1/2/3", "i/n"), ("2/2", "from 0 to n - 1"), ("a/b", "i/n")])
def test_bad_shards_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_shard(text)


def test_shard_needs_a_milvus_collection(tmp_path, image_dir):
    result = subprocess.run([sys.executable, "-m", "glimpse.cli", "index", str(image_dir), "-c", str(tmp_path / "c"),
                             "--encoder", "hash", "--shard", "0/2"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 2 and "Milvus collection" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "c").exists()
