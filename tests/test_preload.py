"""Preloading the vector file (``Collection.preload``, as ``glimpse serve`` does at start): every page of the
memory map mapped ahead of searches, so the rows a search re-ranks cost no page fault each; skipped where the file
would crowd the machine's memory; safe where the file is cut short or mapped again meanwhile."""

from __future__ import annotations

import io
import os
from concurrent.futures import Future
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import glimpse
from glimpse.server.app import preloaded
from glimpse.storage import vectors as vector_files

DIM = 512
ROWS = 4096  # 4 MiB of float16 rows: 1,024 pages


def _collection(path: Path, rows: int = ROWS) -> np.ndarray:
    data = np.random.default_rng(0).standard_normal((rows, DIM)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    with glimpse.open(path, encoder="precomputed", dim=DIM) as col:
        col.add_vectors(data, [f"k{i}" for i in range(rows)])
    return data


def _resident(path: Path) -> int:
    """Bytes of this process's memory maps of ``path`` that are mapped in (Linux's /proc/self/smaps ``Rss``):
    pages a read will find without a page fault."""
    total, ours = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a map's first line: range, perms, offset, dev, inode, path
            ours = line.endswith(str(path))
        elif ours and head and head[0] == "Rss:":
            total += int(head[1]) * 1024
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="MADV_POPULATE_READ and smaps are Linux's")
def test_preloaded_rows_are_mapped_in_before_any_search_reads_them(tmp_path):
    _collection(tmp_path / "c")
    rows, sums = tmp_path / "c" / "vectors.f16", tmp_path / "c" / "vectors.sums"
    with glimpse.open(tmp_path / "c") as col:
        col._sync()
        assert _resident(rows) < ROWS * DIM * 2  # mapped, not yet read (a large folio read ahead may be in)
        mapped = col.preload().result()
        if not mapped:
            pytest.skip("this kernel cannot populate a memory map (MADV_POPULATE_READ: Linux 5.14)")
        assert mapped == ROWS * DIM * 2 + ROWS * 8  # the rows and their checksums
        assert _resident(rows) == ROWS * DIM * 2 and _resident(sums) == ROWS * 8


def test_a_file_over_the_memory_share_is_not_preloaded(tmp_path, monkeypatch):
    _collection(tmp_path / "c", rows=64)
    monkeypatch.setattr(vector_files, "physical_memory", lambda: 2 * 64 * DIM * 2 - 1)
    calls = []
    monkeypatch.setattr(vector_files.VectorStore, "populate", _spy(vector_files.VectorStore.populate, calls))
    with glimpse.open(tmp_path / "c") as col:
        assert col.preload().result() == 0
    assert calls == [0]
    monkeypatch.setattr(vector_files, "physical_memory", lambda: None)  # a system that does not say: not either
    with glimpse.open(tmp_path / "c") as col:
        assert col.preload().result() == 0


def _spy(populate, calls):
    def spied(self, maps):
        calls.append(populate(self, maps))
        return calls[-1]
    return spied


def test_a_file_cut_short_under_the_map_stops_the_preload_and_its_search_says_so(tmp_path, monkeypatch):
    _collection(tmp_path / "c")
    monkeypatch.setattr(vector_files, "PRELOAD_CHUNK", 4096)
    with glimpse.open(tmp_path / "c") as col:
        col._sync()
        maps = col._vectors.mapped(col._rows)
        os.truncate(tmp_path / "c" / "vectors.f16", ROWS * DIM)  # half the rows: a read past it would be SIGBUS
        done = col._vectors.populate(maps)  # the test process would die here were it read page by page
        assert done <= ROWS * DIM
        with pytest.raises(OSError, match="truncated or replaced"):
            col.search(vector=np.ones(DIM, np.float32), k=3)


def test_a_preload_ends_where_the_store_maps_its_file_again_and_searches_stay_right(tmp_path, monkeypatch):
    data = _collection(tmp_path / "c")
    monkeypatch.setattr(vector_files, "PRELOAD_CHUNK", 4096)
    with glimpse.open(tmp_path / "c") as col:
        col._sync()
        maps = col._vectors.mapped(col._rows)
        more = np.random.default_rng(1).standard_normal((8, DIM)).astype(np.float32)
        ids = col.add_vectors(more, [f"m{i}" for i in range(8)])  # the file grew: mapped again
        col.search(vector=more[0], k=1)
        assert col._vectors.populate(maps) == 0  # the old map: nothing of it is worth mapping now
        assert col.preload().result() == (ROWS + 8) * (DIM * 2 + 8)
        for row, vector in ((5, data[5]), (ROWS, more[0])):
            top = col.search(vector=vector, k=1)[0]
            assert top.path == (f"k{row}" if row < ROWS else "m0") and (row < ROWS or top.id == ids[0])


def test_the_server_reports_what_it_preloaded():
    def report(result) -> str:
        done: Future[int] = Future()
        done.set_exception(result) if isinstance(result, BaseException) else done.set_result(result)
        out = io.StringIO()
        with redirect_stdout(out):
            preloaded(0.0)(done)
        return out.getvalue()

    assert "mapped 3.33 GB of vectors into memory" in report(3_330_000_000)
    assert report(0) == ""  # not preloaded (too large, or not supported): nothing to say
    assert "could not be mapped ahead of searches: disk gone" in report(OSError("disk gone"))


def test_serve_preloads_the_vector_file_in_the_background_and_says_so(tmp_path, monkeypatch, capsys):
    import threading

    import uvicorn

    from glimpse.server import app as server_app

    _collection(tmp_path / "c", rows=256)
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    with glimpse.open(tmp_path / "c") as col:
        server_app.serve(col, port=_free_port())
        for thread in threading.enumerate():
            if thread.name == "glimpse-preload":
                thread.join(30)
        populates = col.preload().result() > 0  # what the server's preload could do here
    assert served
    said = f"mapped {(256 * DIM * 2 + 256 * 8) / 1e9:.2f} GB of vectors into memory"
    assert (said in capsys.readouterr().out) == populates


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_preload_benchmark_times_both_states_of_the_map(tmp_path, capsys):
    from benchmark_scripts import load_benchmark

    bench = load_benchmark("preload")
    _collection(tmp_path / "c", rows=256)
    try:
        bench.main(["--collection", str(tmp_path / "c"), "--data", str(tmp_path / "none"), "--queries", "6"])
    except SystemExit as exc:  # a system that cannot populate a map: the benchmark says so
        pytest.skip(str(exc))
    out = capsys.readouterr().out
    assert "| emptied |" in out and "| populated |" in out and "emptied / populated" in out


def test_a_missing_vector_file_is_the_preloads_error_not_the_callers(tmp_path):
    _collection(tmp_path / "c", rows=64)
    with glimpse.open(tmp_path / "c") as col:
        col._vectors.close()
        (tmp_path / "c" / "vectors.f16").unlink()
        done = col.preload()  # returns, as a server's start goes on
        with pytest.raises(FileNotFoundError, match="vector file"):
            done.result(timeout=10)
