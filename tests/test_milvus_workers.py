"""Several `glimpse index` workers writing one Milvus collection at once (Milvus Lite over loopback
stands in for the server): nothing lost, nothing duplicated, and a kill -9 loses nothing committed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from milvus_fixtures import client, lite_server  # noqa: F401 - fixture

import glimpse
from glimpse.milvus.collection import MilvusCollection, parse_shard
from glimpse.query.filters import Filter
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
        if collection.startswith(name + "_") and not collection.endswith(("_settings", "_files", "_copies")):
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
    with glimpse.open(uri) as col:  # GLIMPSE_HOME of this process: a machine that indexed nothing
        assert (col.stats().files, col.stats().images) == (300, 300)


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


SEARCH = """
import json, sys
import glimpse
with glimpse.open(sys.argv[1]) as col:
    queries = sorted(p for p in __import__("pathlib").Path(sys.argv[2]).rglob("*.png") if p.stat().st_size > 100)
    print(json.dumps({
        "layout": col.backend_info()["layout"], "images": len(col),
        "codes": col.settings().codes.to_meta(), "roots": col.settings().roots,
        "errors": [e.path for e in col.errors()],
        "hits": [[(h.id, h.path, round(h.score, 5)) for h in col.search(image=q, k=5)] for q in queries[::4]],
    }))
"""


def search_from(uri: str, folder: Path, home: Path) -> dict:
    """What a search run in its own process, with ``home`` as its local folder, finds."""
    env = {**os.environ, "GLIMPSE_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", SEARCH, uri, str(folder)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_codes_settings_and_errors_are_shared_by_every_worker(lite_server, tmp_path, make_image, monkeypatch):
    """Two workers with codes on, into one collection at once: one fit, used by both, and a
    third machine with a fresh local folder finds exactly what they find; errors are shared."""
    folders = [tmp_path / "a", tmp_path / "b"]
    for n, folder in enumerate(folders):
        folder.mkdir()
        for i in range(30):
            make_image(folder / f"{n}-{i:02d}.png", seed=100 * n + i)
    (folders[0] / "broken.png").write_bytes(b"not a picture")
    uri = f"milvus://{lite_server}/shared_codes"
    running = [worker(uri, folder, tmp_path / f"m{n}", "--codes", "sign", "--bits", "64", "--batch-size", "4")
               for n, folder in enumerate(folders)]
    for process in running:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    seen = [search_from(uri, tmp_path, tmp_path / home) for home in ("m0", "m1", "fresh")]
    assert seen[0] == seen[1] == seen[2]
    assert seen[2]["layout"] == "codes" and seen[2]["images"] == 60 and seen[2]["codes"]["file"]
    assert seen[2]["roots"] == sorted(str(f) for f in folders)
    assert seen[1]["errors"] == [str(folders[0] / "broken.png")]  # recorded by worker 0
    assert all(len(hits) == 5 for hits in seen[2]["hits"])
    names = [c for c in client(lite_server).list_collections() if c.startswith("shared_codes_")]
    fit = seen[2]["codes"]["fit"][:12]
    assert f"shared_codes_{fit}" in names and len(names) <= 5  # settings, files, copies, this fit, at most the one before
    rows = client(lite_server).query(f"shared_codes_{fit}", filter="id >= 0", output_fields=["id"], limit=1000,
                                     consistency_level="Strong")
    assert len(rows) == 60  # every worker's images, coded by the one fit
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "m1"))
    with glimpse.open(uri) as col:  # worker 1 removes what worker 0 could not index
        col.remove([folders[0] / "broken.png"])
        assert col.errors() == [] and col.stats().errors == 0


def test_one_claim_holder_at_a_time(lite_server):
    from glimpse.milvus.state import SharedState

    held: list[tuple[str, float, float]] = []

    def hold(who: str) -> None:
        with SharedState(client(lite_server), "claims").claim("codes"):
            began = time.monotonic()
            time.sleep(0.3)
            held.append((who, began, time.monotonic()))

    threads = [threading.Thread(target=hold, args=(str(n),)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = sorted((began, ended) for _, began, ended in held)
    assert len(spans) == 3 and all(spans[i][1] <= spans[i + 1][0] for i in range(2))


def test_details_and_thumbnails_of_another_workers_images(lite_server, image_dir, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from glimpse.server import ServerConfig, create_app

    uri = f"milvus://{lite_server}/details"
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri, "hash") as col:
        col.index([image_dir])
        item = col.item(col.search(image=image_dir / "img01.png", k=1)[0].id)
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "reader"))  # another machine, same mount
    with TestClient(create_app(uri, ServerConfig())) as http:
        got = http.get(f"/api/items/{item.id}").json()
        assert (got["paths"], got["width"], got["height"], got["bytes"]) == (item.paths, item.width, item.height, item.bytes)
        thumb = http.get(f"/api/items/{item.id}/thumbnail?size=128")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert http.get(f"/api/items/{item.id}/image").content == (image_dir / "img01.png").read_bytes()
        shutil.move(image_dir, tmp_path / "elsewhere")  # as on a machine without that mount
        gone = http.get(f"/api/items/{item.id}/image")
        assert gone.status_code == 404 and "indexed by another worker" in gone.json()["error"]
        thumb = http.get(f"/api/items/{item.id}/thumbnail?size=256")  # not made yet
        assert thumb.status_code == 404 and "cannot be read on this machine" in thumb.json()["error"]
        assert http.get("/api/items/12345/thumbnail").status_code == 404


def test_adaptation_and_folders_reach_a_machine_that_indexed_nothing(lite_server, tmp_path, make_image, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    words = ["apple", "bridge", "castle", "dune", "engine", "forest", "garden", "harbor", "island", "jungle",
             "kettle", "lantern", "meadow", "needle", "orchard", "pepper", "quarry", "river", "saddle", "temple"]
    for i, word in enumerate(words):
        make_image(folder / f"p{i:02d}.png", seed=300 + i)
        (folder / f"p{i:02d}.png.txt").write_text(f"a photo of the {word} at dusk")
    uri = f"milvus://{lite_server}/adapted"

    def ranked(col) -> list[list[str]]:
        return [[h.path for h in col.search(text=f"the {word}", k=5)] for word in words[:6]]

    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri, "hash") as col:
        col.index([folder])
        plain = ranked(col)
        assert col.adapt(kind="ridge", holdout=0).version == 1
        adapted = ranked(col)
    assert adapted != plain
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "reader"))
    with glimpse.open(uri) as col:
        assert ranked(col) == adapted and col.settings().adapt["version"] == 1
        assert list(col.folders()) == [str(folder)]
        assert col.remove_adapt()
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri) as col:
        assert col.settings().adapt is None and ranked(col) == plain


def test_words_read_by_one_worker_are_searched_everywhere(lite_server, tmp_path, monkeypatch):
    from test_ocr import SIGNS, fake_reader

    from conftest import make_image
    from glimpse.enrich import ocr as ocr_pass

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(8):
        make_image(folder / f"p{i}.png", seed=i, size=(66 + 2 * i, 48))  # widths 66..80: SIGNS by width
    uri = f"milvus://{lite_server}/words"
    monkeypatch.setattr(ocr_pass, "rapidocr_reader", fake_reader)
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri, "hash") as col:
        col.add([folder], ocr=True)
    signed = {str(folder / f"p{(width - 66) // 2}.png") for width in SIGNS}
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "reader"))
    with glimpse.open(uri) as col:
        query = folder / "p0.png"
        assert {h.path for h in col.search(image=query, k=8, filters=Filter(has_text=True))} == signed
        assert len(col.search(image=query, k=8, filters=Filter(has_text=False))) == 8 - len(signed)
        exit_signs = col.search(terms='text:"exit only"', k=8)
        assert [h.path for h in exit_signs] == [str(folder / "p3.png")]
        assert [w.text for w in col.item(exit_signs[0].id).words] == ["EXIT ONLY"]
        assert {h.path for h in col.search(terms="text:right", k=8)} == {str(folder / "p2.png"), str(folder / "p4.png")}
        only_p2 = Filter(path_prefix=str(folder / "p2.png"))  # words alone, filtered as locally
        assert [h.path for h in col.search(terms="text:right", k=8, filters=only_p2)] == [str(folder / "p2.png")]
        col.remove([folder / "p3.png"])  # indexed by the worker: its row and words go all the same
        assert col.search(terms='text:"exit only"', k=8) == []
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri) as col:
        assert col.search(terms='text:"exit only"', k=8) == [] and col.stats().files == 7


def test_codes_switched_off_and_refitted_by_a_machine_that_indexed_nothing(lite_server, image_dir, tmp_path,
                                                                           monkeypatch):
    """Each code setting's Milvus collection holds every row, whoever switches it."""
    uri = f"milvus://{lite_server}/switched"
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri, "hash") as col:
        col.add(sorted(image_dir.glob("*.png")))  # 8 images in the float collection
        col.use_codes("sign", bits=64)
        col.index([image_dir])  # 4 more (no re-fit below 16), into the codes' collection only
        assert col.backend_info()["layout"] == "codes"
    query = image_dir / "sub" / "img03.png"
    for home, codes, layout in (("reader", None, "float"), ("other", "sign", "codes")):
        monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / home))
        with glimpse.open(uri) as col:
            col.use_codes(codes, bits=64 if codes else None)
            info = col.backend_info()
            assert (info["layout"], info["vectors"], len(col)) == (layout, 12, 12)
            assert col.search(image=query, k=1)[0].path == str(query)
    names = [c for c in client(lite_server).list_collections() if c.startswith("switched_")]
    assert len(names) == 5  # the settings, the files, the copies, the current fit, and the one before it


def test_a_removal_on_any_worker_is_honoured_by_every_worker(lite_server, image_dir, tmp_path, monkeypatch):
    """Worker 1 removes files that worker 0 indexed: they leave Milvus at once (but for an image
    worker 0 still holds elsewhere, whose row now names that file), worker 0 drops them from its
    own bookkeeping (and never pushes them back), and its re-index leaves them out."""
    uri = f"milvus://{lite_server}/removals"
    sub, single, kept = image_dir / "sub", image_dir / "img01.png", image_dir / "zz.png"
    shutil.copy(sub / "img03.png", kept)  # its row names sub/img03.png, the first of its two files
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri, "hash") as col:
        col.index([image_dir])
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "other"))  # indexed nothing
    with glimpse.open(uri) as col:
        assert col.remove([sub, single]) == 5
        assert len(col) == 8
        found = {h.path for h in col.search(image=single, k=12)}
        assert len(found) == 8 and str(single) not in found and not any("/sub/" in p for p in found)
        assert col.search(image=kept, k=1)[0].path == str(kept)
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri) as col:
        assert len(col.search(image=single, k=12)) == 8 and len(col) == 8
        assert col.search(image=kept, k=1)[0].path == str(kept)
        assert col.stats().files == 8
        report = col.index()
        assert (report.unchanged, report.embedded) == (8, 0) and len(col) == 8
        col.add([single])  # adding it again undoes the removal, on every worker
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "other"))
    with glimpse.open(uri) as col:
        assert len(col) == 9 and col.search(image=single, k=1)[0].path == str(single)
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri) as col:
        assert col.index().unchanged == 9 and len(col) == 9


def test_info_counts_every_workers_files_and_images(lite_server, image_dir, tmp_path, make_image, monkeypatch):
    uri = f"milvus://{lite_server}/counted"
    other = tmp_path / "other"
    other.mkdir()
    for i in range(2):
        make_image(other / f"o{i}.png", seed=500 + i)
    shutil.copy(image_dir / "img01.png", other / "copy.png")  # the same content as one of worker 0's
    for n, folder in enumerate((image_dir, other)):
        monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / f"m{n}"))
        with glimpse.open(uri, "hash") as col:
            col.index([folder])
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "reader"))
    with glimpse.open(uri) as col:
        stats = col.stats()
        assert (stats.files, stats.images) == (15, 14)
        col.remove([image_dir / "sub"])
        assert (col.stats().files, col.stats().images) == (11, 10)  # at once: worker 0 need not run again
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "m0"))
    with glimpse.open(uri) as col:
        assert (col.stats().files, col.stats().images) == (11, 10)  # worker 0 dropped its 4 files


def test_path_filters_milvus_cannot_express_find_every_workers_images(lite_server, image_dir, tmp_path, make_image,
                                                                      monkeypatch):
    """A glob with [...] and a prefix holding ``_`` (a ``like`` wildcard) match the rows in
    Milvus exactly, on a machine that indexed none of them."""
    for folder in ("x_y", "xzy"):
        (image_dir / folder).mkdir()
        for i in range(2):
            make_image(image_dir / folder / f"{folder}{i}.png", seed=700 + i + 10 * len(folder) + ord(folder[1]))
    uri = f"milvus://{lite_server}/globs"
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri, "hash") as col:
        col.index([image_dir])
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "reader"))
    query = image_dir / "img05.png"
    with glimpse.open(uri) as col:
        found = {Path(h.path).name for h in col.search(image=query, k=16, filters=Filter(path_glob="img0[1-3].png"))}
        assert found == {"img01.png", "img02.png", "img03.png"}
        found = {h.path for h in col.search(image=query, k=16, filters=Filter(path_prefix=str(image_dir / "x_y")))}
        assert found == {str(image_dir / "x_y" / f"x_y{i}.png") for i in range(2)}
        found = col.search(image=query, k=16, filters=Filter(path_glob="[^i]*_y?.png", min_width=60))
        assert {Path(h.path).name for h in found} == {"x_y0.png", "x_y1.png"}


def test_an_adaptation_learns_from_every_workers_captions(lite_server, tmp_path, make_image, monkeypatch):
    uri = f"milvus://{lite_server}/captions"
    folders = [tmp_path / "a", tmp_path / "b"]
    for n, folder in enumerate(folders):
        folder.mkdir()
        for i in range(20):
            make_image(folder / f"p{i:02d}.png", seed=900 + 20 * n + i)
            (folder / f"p{i:02d}.png.txt").write_text(f"picture {i} of worker {n}")
        monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / f"m{n}"))
        with glimpse.open(uri, "hash") as col:
            col.index([folder])
    (folders[0] / "captions.tsv").write_text("image\tcaption\n" + "".join(f"p{i:02d}.png\tshot {i}\n" for i in range(20)))
    with glimpse.open(uri) as col:  # worker 1
        assert (col.adapt(kind="ridge", holdout=0).pairs, col.settings().adapt["pairs"]) == (40, 40)
        report = col.adapt(folders[0] / "captions.tsv", kind="ridge", holdout=0)  # worker 0's images
        assert (report.pairs, report.missing) == (20, 0)


@pytest.fixture
def copies(tmp_path, make_image) -> tuple[Path, Path]:
    """Two workers' folders: a/x.png and b/y.png are the same picture (one Milvus row), with two
    pictures of their own each."""
    a, b = tmp_path / "a", tmp_path / "b"
    for n, folder in enumerate((a, b)):
        folder.mkdir()
        for i in range(2):
            make_image(folder / f"own{i}.png", seed=1100 + 10 * n + i)
    make_image(a / "x.png", seed=1200)
    shutil.copy(a / "x.png", b / "y.png")
    return a / "x.png", b / "y.png"


def on(machine: Path, uri: str, monkeypatch, encoder: str | None = None) -> MilvusCollection:
    monkeypatch.setenv("GLIMPSE_HOME", str(machine))
    return glimpse.open(uri, encoder)


def test_a_row_leaves_milvus_when_no_workers_file_shows_it(lite_server, copies, tmp_path, monkeypatch):
    """Worker 0 removing its file of a picture that worker 1 also holds keeps the row (naming
    worker 1's file); the row goes when worker 1's file goes too; adding a file back brings it."""
    x, y = copies
    uri = f"milvus://{lite_server}/shared_rows"
    for n, picture in enumerate(copies):
        with on(tmp_path / f"m{n}", uri, monkeypatch, "hash") as col:
            col.index([picture.parent])
    client(lite_server).drop_collection("shared_rows_copies")  # as if made before NAME_copies: made on opening
    with on(tmp_path / "reader", uri, monkeypatch) as col:  # the picture's row names a/x.png; b/y.png shows it too
        shared = col.search(image=y, k=1)[0].id
        assert shared in [h.id for h in col.search(image=y, k=5, filters=Filter(path_prefix=str(y.parent)))]
    with on(tmp_path / "m0", uri, monkeypatch) as col:
        assert len(col) == 5
        assert col.remove([x]) == 1
        assert (len(col), col.stats().files) == (5, 5)
        assert col.search(image=y, k=1)[0].path == str(y)
    with on(tmp_path / "reader", uri, monkeypatch) as col:
        under_a = col.search(image=y, k=5, filters=Filter(path_prefix=str(x.parent)))
        assert {Path(h.path).name for h in under_a} == {"own0.png", "own1.png"}  # the row names y.png now
        assert col.remove([y]) == 1  # worker 1's file, removed by a machine that indexed nothing
        assert (len(col), col.stats().files) == (4, 4)
        assert not {str(x), str(y)} & {h.path for h in col.search(image=y, k=5)}
    with on(tmp_path / "m0", uri, monkeypatch) as col:
        col.add([x])  # added again
        assert (len(col), col.stats().files) == (5, 5) and col.search(image=x, k=1)[0].path == str(x)
    with on(tmp_path / "m1", uri, monkeypatch) as col:
        assert col.index().unchanged == 2 and (len(col), col.stats().files) == (5, 5)


class Killed(BaseException):
    """A worker dying at a given point (BaseException: nothing on the way catches it)."""


def dies(self, rows: list, **options) -> None:
    """In place of a write to Milvus: the worker dies there (unless there is nothing to write)."""
    if rows:
        raise Killed()


def test_a_worker_killed_between_its_commit_and_its_file_rows_puts_them_right(lite_server, copies, tmp_path,
                                                                             monkeypatch):
    """Killed after its local commit, before its file rows (so before its image rows): another
    worker's removal of the same picture then takes the row, and the killed worker's next run
    writes its file rows and brings the row back. Killed after its local removal, before its
    file rows went: its next run deletes them, and the row no file shows."""
    from glimpse.milvus.files import SharedFiles

    x, y = copies
    uri = f"milvus://{lite_server}/torn"
    with on(tmp_path / "m0", uri, monkeypatch, "hash") as col:
        col.index([x.parent])
    with monkeypatch.context() as dying:
        dying.setattr(SharedFiles, "put", dies)
        with pytest.raises(Killed), on(tmp_path / "m1", uri, monkeypatch, "hash") as col:
            col.index([y.parent])
    with on(tmp_path / "m0", uri, monkeypatch) as col:
        assert col.stats().files == 3 and col.remove([x]) == 1 and len(col) == 2
    with on(tmp_path / "m1", uri, monkeypatch) as col:  # runs again: its SQLite holds its 3 files
        assert (len(col), col.stats().files) == (5, 5) and col.search(image=y, k=1)[0].path == str(y)
        with monkeypatch.context() as dying:
            dying.setattr(SharedFiles, "delete", dies)
            with pytest.raises(Killed):
                col.remove([y])
    with on(tmp_path / "m1", uri, monkeypatch) as col:
        assert (len(col), col.stats().files) == (4, 4)
        assert not {str(x), str(y)} & {h.path for h in col.search(image=y, k=5)}


def test_a_collection_made_before_file_rows_gets_them_on_the_next_open(lite_server, copies, tmp_path, monkeypatch):
    """A collection whose workers wrote no file rows (made before ``NAME_files``, so no marker in
    their SQLite either): each worker writes its rows when it next opens the index, and removals
    then count against every worker's files."""
    x, y = copies
    uri = f"milvus://{lite_server}/before_files"
    for n, picture in enumerate(copies):
        with on(tmp_path / f"m{n}", uri, monkeypatch, "hash") as col:
            col.index([picture.parent])
    client(lite_server).drop_collection("before_files_files")
    for n in range(2):
        meta = Metadata(next((tmp_path / f"m{n}" / "milvus").rglob("metadata.sqlite")))
        meta.delete_meta("files_synced")
        meta.close()
    with on(tmp_path / "reader", uri, monkeypatch) as col:
        assert (len(col), col.stats().files) == (5, 0)
    for n in range(2):
        with on(tmp_path / f"m{n}", uri, monkeypatch) as col:
            assert len(col) == 5  # opens the index
    with on(tmp_path / "reader", uri, monkeypatch) as col:
        assert (len(col), col.stats().files) == (5, 6)
        assert col.remove([x]) == 1 and len(col) == 5  # y, worker 1's file, still shows the picture
        assert col.search(image=y, k=1)[0].path == str(y)


def test_a_worker_dropping_files_another_worker_holds_leaves_their_rows(lite_server, photos, tmp_path, monkeypatch,
                                                                       make_image):
    """Re-sharding: worker 0 indexed every file, then worker 1 did too; worker 0 now takes shard
    0/2 and drops the other files from its bookkeeping. Worker 1's file rows of them stay, and
    so do the images they show and the captions they published. Then worker 1, named in every
    row, takes shard 1/2: the rows of the files it leaves stay (worker 0 holds most of them),
    and go once the files go from disk, whoever holds them."""
    folder, distinct = photos
    for image in folder.rglob("img*.png"):
        Path(f"{image}.txt").write_text(f"a picture called {image.stem}")
    uri = f"milvus://{lite_server}/reshard"
    for n in range(2):
        with on(tmp_path / f"m{n}", uri, monkeypatch, "hash") as col:
            col.index([folder])
    with on(tmp_path / "reader", uri, monkeypatch) as col:
        captioned = col.adapt(kind="ridge", holdout=0).pairs
    with on(tmp_path / "m0", uri, monkeypatch) as col:
        col.use_shard("0/2")
        assert 0 < col.index([folder]).removed < 70
    with on(tmp_path / "reader", uri, monkeypatch) as col:
        assert (len(col), col.stats().files) == (distinct, 70)
        assert col.adapt(kind="ridge", holdout=0).pairs == captioned == distinct
        for image in sorted(folder.rglob("img*.png"))[::9]:
            assert Path(col.search(image=image, k=1)[0].path).read_bytes() == image.read_bytes()
    shard0 = [name for name in (f"new{i}.png" for i in range(9)) if zlib.crc32(str(folder / name).encode()) % 2 == 0]
    extra = make_image(folder / shard0[0], seed=999)  # in worker 0's shard; only worker 1 indexes it
    with on(tmp_path / "m1", uri, monkeypatch) as col:
        assert col.index([folder]).embedded == 1
        col.use_shard("1/2")
        assert col.index([folder]).removed > 0
    with on(tmp_path / "reader", uri, monkeypatch) as col:
        assert (len(col), col.stats().files) == (distinct + 1, 71)
        assert len(col.search(image=extra, k=5, filters=Filter(path_prefix=str(extra)))) == 1
    held = next(path for path in sorted(folder.rglob("*.png")) if zlib.crc32(str(path).encode()) % 2 == 0
                and path != extra and path.name.startswith("img") and not (folder / f"copy{path.name[3:]}").exists())
    extra.unlink()
    held.unlink()
    with on(tmp_path / "m0", uri, monkeypatch) as col:  # shard 0/2: held.png was its file, extra.png never
        col.use_shard("0/2")
        assert col.index([folder]).removed == 1
    with on(tmp_path / "reader", uri, monkeypatch) as col:
        assert (len(col), col.stats().files) == (distinct - 1, 69)
