"""The collection on each backend: a local directory, Milvus Lite (embedded, started by glimpse),
and Milvus Lite over loopback as a server stand-in (milvus://); same answers from each."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from milvus_fixtures import unique_name

import glimpse
from glimpse.milvus.collection import MilvusCollection
from glimpse.milvus.index import summary
from glimpse.query.filters import Filter


@pytest.fixture(params=["local", "milvus-lite", "milvus"])
def location(request, tmp_path, monkeypatch):
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    if request.param == "local":
        return str(tmp_path / "col")
    if request.param == "milvus-lite":
        pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")
        return f"milvus-lite://{tmp_path}/photos.db"
    return f"milvus://{request.getfixturevalue('lite_server')}/c{abs(hash(request.node.name)) % 10**9}"


@pytest.fixture
def indexed(location, image_dir, hash_encoder):
    with glimpse.open(location, hash_encoder) as col:
        col.index([image_dir])
    return location


def test_search_finds_each_image_first(indexed, image_dir):
    with glimpse.open(indexed) as col:
        assert len(col) == 12
        for image in sorted(image_dir.rglob("*.png"))[:4]:
            assert col.search(image=image, k=1)[0].path == str(image)
        assert len(col.search(image=next(image_dir.glob("*.png")), k=12)) == 12


def test_filters_apply_before_ranking(indexed, image_dir):
    with glimpse.open(indexed) as col:
        query = next(image_dir.glob("*.png"))  # not under sub/
        hits = col.search(image=query, k=10, filters=Filter(path_prefix=str(image_dir / "sub")))
        assert len(hits) == 4 and all("/sub/" in h.path for h in hits)
        assert len(col.search(image=query, k=3, filters=Filter(path_glob="sub/*.png"))) == 3
        assert col.search(image=query, k=5, filters=Filter(min_width=65)) == []
        assert len(col.search(image=query, k=12, filters=Filter(orientation="landscape", max_bytes="1MB"))) == 12


def test_like_and_removal(indexed, image_dir):
    with glimpse.open(indexed) as col:
        first = col.search(image=next(image_dir.glob("*.png")), k=1)[0]
        assert first.id not in [h.id for h in col.search(like=first.id, k=11)]
        assert col.remove([str(image_dir / "sub")]) == 4
        assert len(col) == 8
        assert all("/sub/" not in h.path for h in col.search(image=first.path, k=12))


def test_reindex_changes_nothing_and_info_names_the_uri(indexed, image_dir):
    with glimpse.open(indexed) as col:
        report = col.index()
        assert (report.unchanged, report.embedded) == (12, 0)
        assert col.stats().path == (indexed if "://" in indexed else str(glimpse.open(indexed).path))
        if isinstance(col, MilvusCollection):
            assert col._ensure_index().count() == 12


def test_codes_search_through_the_code_index(indexed, image_dir):
    with glimpse.open(indexed) as col:
        col.use_codes("sign", bits=64)
        query = next(image_dir.glob("*.png"))
        assert col.search(image=query, k=1)[0].path == str(query)
        if isinstance(col, MilvusCollection):
            assert col._ensure_index().layout == "codes"


def _upserts(col: MilvusCollection, monkeypatch) -> list[int]:
    """The row counts of every upsert ``col`` sends to Milvus from now on."""
    sent: list[int] = []
    index = col._ensure_index()
    upsert = index._upsert
    monkeypatch.setattr(index, "_upsert", lambda ids, *rest: (sent.append(len(ids)), upsert(ids, *rest))[1])
    return sent


def test_a_reader_seeing_a_commit_writes_no_row_again(lite_server, image_dir, hash_encoder, make_image,
                                                      tmp_path, monkeypatch):
    """An upsert of a row Milvus holds hides it from searches running meanwhile, so a process
    that sees another's commit (the server's search side, while its writer ingests) must not re-send it."""
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    uri = f"milvus://{lite_server}/seen_commit"
    with glimpse.open(uri, hash_encoder) as writer, glimpse.open(uri, hash_encoder) as reader:
        writer.index([image_dir])
        assert len(reader.search(image=next(image_dir.glob("*.png")), k=12)) == 12
        sent = _upserts(reader, monkeypatch)
        (tmp_path / "more").mkdir()
        new = make_image(tmp_path / "more" / "new.png", seed=77)
        writer.add([new.parent])
        assert reader.search(image=new, k=1)[0].path == str(new)
        assert sent == []


def test_rows_a_killed_writer_never_sent_are_sent_by_the_next_reader(lite_server, image_dir, hash_encoder,
                                                                     tmp_path, monkeypatch):
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    uri = f"milvus://{lite_server}/never_sent"
    with glimpse.open(uri, hash_encoder) as writer:
        writer._ensure_index()
        monkeypatch.setattr(writer, "_add_to_index", lambda ids, vectors: None)  # killed after its SQLite commit
        writer.index([image_dir])
        assert writer._ensure_index().count() == 0
    monkeypatch.undo()
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    with glimpse.open(uri, hash_encoder) as reader:
        image = next(image_dir.glob("*.png"))
        assert reader.search(image=image, k=1)[0].path == str(image) and len(reader) == 12


def test_a_machine_without_the_local_part_searches_the_milvus_rows(lite_server, image_dir, hash_encoder,
                                                                     tmp_path, monkeypatch):
    uri = f"milvus://{lite_server}/shared"
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "worker"))
    with glimpse.open(uri, hash_encoder) as col:
        col.index([image_dir])
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "reader"))  # another machine
    with glimpse.open(uri) as col:
        assert col.encoder.name == "hash"
        query = sorted(image_dir.glob("*.png"))[1]
        hits = col.search(image=query, k=3)
        assert hits[0].path == str(query) and len(hits) == 3
        assert len(col.search(like=hits[1].id, k=5)) == 5


def test_another_encoder_is_refused(lite_server, image_dir, hash_encoder, tmp_path, monkeypatch):
    uri = f"milvus://{lite_server}/refused"
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "a"))
    with glimpse.open(uri, hash_encoder):
        pass
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "b"))
    with pytest.raises(glimpse.EncoderMismatchError, match="not comparable"):
        glimpse.open(uri, "precomputed", dim=8)


def test_bad_uris_say_what_to_write(tmp_path):
    with pytest.raises(ValueError, match="milvus://HOST:19530/NAME"):
        glimpse.open("milvus://localhost/9bad")
    with pytest.raises(ValueError, match="ending in .db"):
        glimpse.open(f"milvus-lite://{tmp_path}/photos.sqlite")


def test_milvus_lite_serves_one_process(tmp_path, hash_encoder):
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")
    uri = f"milvus-lite://{tmp_path}/one.db"
    with glimpse.open(uri, hash_encoder):
        other = subprocess.run([sys.executable, "-c", f"import glimpse; glimpse.open({uri!r})"],
                               capture_output=True, text=True)
    assert "serves one process at a time" in other.stderr
    with glimpse.open(uri) as col:  # closed: free again
        assert len(col) == 0


def test_vector_store_reads_items_with_content_derived_ids(tmp_path):
    """Ids near 2**62 (glimpse.milvus.collection.content_id) are looked up, not tabled."""
    from glimpse.storage import VectorStore

    store = VectorStore(tmp_path / "v.f16", 4)
    store.write(0, np.eye(4, dtype=np.float32)[:3])
    ids = np.array([5, 2**61, 2**62 - 1], dtype=np.int64)
    store.locate(tmp_path / "v.f16", ids, np.array([2, 0, 1]))
    assert store.read(ids[::-1], 3).argmax(axis=1).tolist() == [1, 0, 2]
    with pytest.raises(KeyError):
        store.read(np.array([6]), 3)


@pytest.fixture(scope="module")
def photos_with_copies(tmp_path_factory) -> Path:
    """image_dir's twelve pictures, two more in a folder named ``100%_x``, and a copy of
    img05.png in zz/ (after img05.png by path: an image row names its first file), dated 2001."""
    from conftest import make_image

    folder = tmp_path_factory.mktemp("copies") / "photos"
    for i in range(12):
        (folder / ("sub" if i % 3 == 0 else "")).mkdir(parents=True, exist_ok=True)
        make_image(folder / ("sub" if i % 3 == 0 else "") / f"img{i:02d}.png", seed=i)
    (folder / "100%_x").mkdir()
    for i in range(2):
        make_image(folder / "100%_x" / f"img0{i}.png", seed=50 + i)
    (folder / "zz").mkdir()
    shutil.copy(folder / "img05.png", folder / "zz" / "copy05.png")
    old = time.mktime((2001, 6, 1, 12, 0, 0, 0, 0, -1))
    os.utime(folder / "zz" / "copy05.png", (old, old))
    return folder


@pytest.fixture(scope="module", params=["milvus-lite", "milvus23"])
def local_and_milvus(request, photos_with_copies, tmp_path_factory):
    """The same folder in a local collection and on Milvus: Milvus Lite over loopback (2.5) and
    the registry's 2.3 server binary (one collection each: one made on the 2.3 server costs ~20 s)."""
    from glimpse.encoders import create_encoder

    server = request.getfixturevalue("lite_server" if request.param == "milvus-lite" else "milvus23_server")
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLIMPSE_HOME", str(home))
        uri = f"milvus://{server}/copies_{request.param.replace('-', '_')}_{time.monotonic_ns() % 10**6}"
        with (glimpse.open(str(home / "local"), create_encoder("hash")) as local,
              glimpse.open(uri, create_encoder("hash")) as col):
            local.index([photos_with_copies])
            col.index([photos_with_copies])
            yield local, col


#: Globs and prefixes, some over a folder whose name holds ``%`` and ``_`` (Milvus 2.3 takes
#: ``like`` only as a literal prefix, "abc%", its ``_`` a literal and a ``%`` elsewhere refused).
PATH_FILTERS = [
    {"path_glob": "sub/*.png"}, {"path_glob": "img0?.png"}, {"path_glob": "img0[1-4].png"}, {"path_glob": "*%_x/*"},
    {"path_glob": "{dir}/img1*"}, {"path_prefix": "{dir}/100%_x"}, {"path_prefix": "{dir}/sub"}]
#: Filters img05.png passes only by its copy zz/copy05.png (path, date), and how many images pass each.
COPY_FILTERS = [
    ({"path_prefix": "{dir}/zz"}, 1), ({"path_glob": "*/zz/*"}, 1), ({"path_glob": "*/z[z]/c*"}, 1),
    ({"path_glob": "zz/*"}, 1), ({"before": "2002"}, 1), ({"path_prefix": "{dir}/zz", "max_width": 64}, 1),
    ({"path_prefix": "{dir}/zz", "min_width": 65}, 0), ({"path_prefix": "{dir}/zz", "after": "2002"}, 0),
    ({"path_prefix": "{dir}/img05.png", "before": "2002"}, 0), ({"after": "2002"}, 14)]


def test_filters_find_what_the_local_store_finds(local_and_milvus, photos_with_copies):
    """k results whenever k images match: an image matches when any of its files does (its row
    in Milvus names one of them)."""
    local, col = local_and_milvus
    query = photos_with_copies / "img05.png"
    for path_filter, count in [(f, None) for f in PATH_FILTERS] + COPY_FILTERS:
        filters = Filter(**{key: value.format(dir=photos_with_copies) if isinstance(value, str) else value
                            for key, value in path_filter.items()})
        found = [sorted(h.path for h in c.search(image=query, k=20, filters=filters)) for c in (local, col)]
        assert found[1] == found[0] and (len(found[0]) == count if count is not None else found[0]), path_filter


def test_a_copy_changed_into_another_picture_no_longer_matches_for_it(local_and_milvus, tmp_path, make_image):
    local, col = local_and_milvus
    more = tmp_path / "more"
    (more / "b").mkdir(parents=True)
    picture = make_image(more / "a.png", seed=300)
    shutil.copy(picture, more / "b" / "copy.png")
    for c in (local, col):
        c.add([more])
    make_image(more / "b" / "copy.png", seed=301)
    os.utime(more / "b" / "copy.png", (1e9, 1e9))  # a changed file, however fast the test runs
    found = []
    for c in (local, col):
        c.add([more])
        found.append(sorted(h.path for h in c.search(image=picture, k=5, filters=Filter(path_prefix=str(more / "b")))))
        assert c.remove([more]) == 2
    assert found[1] == found[0] == [str(more / "b" / "copy.png")]


def test_codes_and_removal_on_each_milvus(local_and_milvus, photos_with_copies):
    """Codes where the server allows two vector fields (2.4+), Milvus's exact float index on
    2.3; a path holding ``%`` is removed."""
    local, col = local_and_milvus
    col.use_codes("sign", bits=64)
    two_fields = col._version >= (2, 4)
    assert col._ensure_index().describe()["layout"] == ("codes" if two_fields else "float")
    if not two_fields:
        assert summary(col.backend_info()) == "Milvus FLAT on float_vector (exact inner product)"
    query = photos_with_copies / "sub" / "img03.png"
    assert col.search(image=query, k=1)[0].path == str(query)
    assert col.remove([photos_with_copies / "100%_x"]) == 2 and len(col) == 12
    assert col.remove([query]) == 1 and col._ensure_index().count() == 11


def test_served_over_http(lite_server, image_dir, hash_encoder, tmp_path, monkeypatch):
    """glimpse serve on a Milvus collection: search with a filter, then a removal through the writer."""
    from fastapi.testclient import TestClient

    from glimpse.server import ServerConfig, create_app

    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    uri = f"milvus://{lite_server}/served"
    with glimpse.open(uri, hash_encoder) as col:
        col.index([image_dir])
    with TestClient(create_app(uri, ServerConfig(write_token="t"))) as http:
        query = image_dir / "img01.png"
        hits = http.post("/api/search/image", files={"image": ("q.png", query.read_bytes(), "image/png")},
                         data={"query": '{"k": 5, "filters": {"path_prefix": "%s"}}' % (image_dir / "sub")}).json()
        assert len(hits["results"]) == 4 and all("/sub/" in h["path"] for h in hits["results"])
        job = http.post("/api/items/remove", json={"paths": [str(image_dir / "sub")]},
                        headers={"Authorization": "Bearer t"}).json()
        for _ in range(500):
            if http.get(f"/api/jobs/{job['id']}").json()["state"] == "done":
                break
        assert http.post("/api/search", json={"like": hits["results"][0]["id"]}).status_code == 404  # removed
        kept = http.post("/api/search", json={"text": "red", "k": 12}).json()["results"]
        assert len(kept) == 8 and all("/sub/" not in h["path"] for h in kept)
        assert len(http.post("/api/search", json={"like": kept[0]["id"], "k": 12}).json()["results"]) == 7
    with glimpse.open(uri) as col:
        assert len(col) == 8 and col._ensure_index().count() == 8


def test_precomputed_vectors_from_two_workers(lite_server, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    uri = f"milvus://{lite_server}/vectors"
    for worker in range(2):  # two machines, each with its own keys
        monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / f"m{worker}"))
        with glimpse.open(uri, "precomputed", dim=8) as col:
            col.add_vectors(vectors[worker * 20 : worker * 20 + 20], [f"w{worker}/{i}" for i in range(20)])
    with glimpse.open(uri) as col:
        assert col._ensure_index().count() == 40
        assert col.search(vector=vectors[25], k=1)[0].path == "w1/5"  # added by the other worker
        hits = col.search(vector=vectors[25], k=30, filters=Filter(path_prefix="w0"))
        assert len(hits) == 20 and all(h.path.startswith("w0/") for h in hits)


def test_the_commands_take_a_milvus_uri(tmp_path, image_dir):
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")
    from typer.testing import CliRunner

    from glimpse.cli import app

    uri = f"milvus-lite://{tmp_path}/photos.db"
    runner = CliRunner()
    indexed = runner.invoke(app, ["index", str(image_dir), "-c", uri, "--encoder", "hash"])
    assert indexed.exit_code == 0, indexed.output
    info = runner.invoke(app, ["info", "-c", uri])
    assert info.exit_code == 0 and "collection │ milvus-lite:///" in info.output
    assert "search     │ Milvus FLAT on float16_vector (exact inner product)" in info.output
    query = image_dir / "sub" / "img03.png"
    found = runner.invoke(app, ["search", "--image", str(query), "-k", "2", "--path-prefix", str(image_dir / "sub"), "-c", uri])
    assert found.exit_code == 0 and "sub/img03." in "".join(found.output.split())
    bad = runner.invoke(app, ["info", "-c", "milvus://localhost/9"])
    assert bad.exit_code == 2 and "milvus://HOST:19530/NAME" in bad.output


def test_eval_scores_through_milvus_as_locally(tmp_path, make_image):
    """glimpse eval --backend milvus: the same configurations searched in Milvus Lite collections."""
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")
    import json

    from typer.testing import CliRunner

    from glimpse.cli import app

    (tmp_path / "photos").mkdir()
    for i in range(12):
        make_image(tmp_path / "photos" / f"p{i:02d}.png", seed=i, size=(96, 72))
    figures = {}
    for backend in ("local", "milvus"):
        out = tmp_path / backend
        result = CliRunner().invoke(app, ["eval", "copydetect", str(tmp_path / "photos"), "--per-image", "2",
                                          "--encoder", "hash", "--codes", "sign:32", "--backend", backend,
                                          "--out", str(out), "--cache", str(tmp_path / "cache")])
        assert result.exit_code == 0, result.output
        report = json.loads((out / "report.json").read_text())
        figures[backend] = {r["config"]["name"]: r["figures"] for r in report["results"]}
    assert report["environment"]["backend"] == "Milvus Lite 2.5"
    assert list(figures["milvus"]) == ["float", "sign-32", "sign-32 +rerank100"]
    assert figures["milvus"]["sign-32"] == figures["local"]["sign-32"]  # the same codes, Hamming in Milvus
    for name in ("float", "sign-32 +rerank100"):  # float16 in Milvus, float32 in eval's own backends
        assert figures["milvus"][name] == pytest.approx(figures["local"][name], abs=0.02)
    bad = CliRunner().invoke(app, ["eval", "copydetect", str(tmp_path / "photos"), "--encoder", "hash",
                                   "--backend", "faiss", "--cache", str(tmp_path / "cache")])
    assert bad.exit_code == 2 and "use local, milvus" in bad.output


def test_the_web_page_keeps_milvus_item_ids_exact(lite_server, image_dir, hash_encoder, tmp_path, monkeypatch, page):
    """Milvus item ids (from content hashes) pass 2**53, beyond what a JavaScript number holds
    exactly: the page's item details and more-like-this must still name the item shown."""
    from test_web import RESULTS, drop_file, first_ids, serving, wait_for_results

    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    query = image_dir / "img01.png"
    with glimpse.open(f"milvus://{lite_server}/web", hash_encoder) as col:
        col.index([image_dir])
        with serving(col) as url:
            page.goto(url)
            drop_file(page, query.read_bytes(), "query.png", "image/png")
            wait_for_results(page)
            shown = [h.id for h in col.search(image=query, k=3)]
            assert shown[1] > 2**53 and first_ids(page) == shown
            page.locator(RESULTS).nth(1).click()
            page.wait_for_function("document.querySelector('#viewer-meta').textContent.includes('×')")  # its details
            assert f"id {shown[1]} " in page.locator("#viewer-meta").text_content()
            with page.expect_response("**/api/search") as answer:
                page.click("#more-like")
            assert answer.value.ok, answer.value.text()
            like = [h.id for h in col.search(like=shown[1], k=3)]
            page.wait_for_function(f"document.querySelector('{RESULTS}').dataset.id === '{like[0]}'")
            assert first_ids(page) == like and page.locator("#error").is_hidden()


def test_a_milvus_server_that_cannot_be_reached_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")
    from typer.testing import CliRunner

    from glimpse.cli import app
    from glimpse.milvus.local import free_port

    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    uri = f"milvus://127.0.0.1:{free_port()}/photos"  # nothing listens there
    result = CliRunner().invoke(app, ["info", "-c", uri])
    assert result.exit_code == 2 and "cannot reach the Milvus server at 127.0.0.1:" in result.output
    assert "Traceback" not in result.output
