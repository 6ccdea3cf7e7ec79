"""prepare_files(): order, per-file errors, bad-file folder, dedup, early close."""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from glimpse.ingest import FileEntry, Prepared, content_hash, prepare_files, scan, stat_entry

pipeline_mod = importlib.import_module("glimpse.ingest.pipeline")


def prep(im: Image.Image) -> np.ndarray:
    return np.asarray(im.resize((8, 8)), dtype=np.float32)


def jpeg(color, size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def write(path: Path, data: bytes) -> FileEntry:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return stat_entry(path)


def many(tmp_path: Path, n: int) -> list[FileEntry]:
    return [write(tmp_path / f"{i:04d}.jpg", jpeg((i % 256, (7 * i) % 256, 50), (16 + i % 7, 16))) for i in range(n)]


def test_content_hash_is_blake2b_128():
    assert content_hash(b"abc") == hashlib.blake2b(b"abc", digest_size=16).hexdigest()
    assert len(content_hash(b"")) == 32


def test_order_preserved_with_uneven_work(tmp_path: Path):
    entries = many(tmp_path, 40)

    def slow_prep(im: Image.Image) -> np.ndarray:
        time.sleep(0.004 * (im.width % 3))  # later files often finish first
        return np.array([im.width, *im.getpixel((0, 0))], np.float32)

    out = list(prepare_files(entries, slow_prep, workers=4, prefetch=8))
    assert [p.entry.path for p in out] == [e.path for e in entries]
    for i, p in enumerate(out):
        assert p.error is None and p.array[0] == 16 + i % 7
        assert (p.width, p.height) == (16 + i % 7, 16)
        assert p.hash == content_hash(entries[i].path.read_bytes())


def test_bad_files_folder(tmp_path: Path, big_png):
    good = jpeg((200, 10, 10), (64, 48))
    folder = tmp_path / "mixed"
    write(folder / "a_good.jpg", good)
    write(folder / "b_empty.jpg", b"")
    write(folder / "c_truncated.jpg", jpeg((1, 2, 3), (256, 256))[:400])
    write(folder / "d_text.jpg", b"just some notes, not a picture\n" * 20)
    write(folder / "e_huge.png", big_png(20000, 20000))
    buf = io.BytesIO()
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(buf, "PNG")
    write(folder / "f_good.png", buf.getvalue())
    out = {p.entry.path.name: p for p in prepare_files(scan([folder]), prep, target=224)}
    assert list(out) == ["a_good.jpg", "b_empty.jpg", "c_truncated.jpg", "d_text.jpg", "e_huge.png", "f_good.png"]
    assert out["b_empty.jpg"].error == "empty file"
    assert out["c_truncated.jpg"].error == "truncated image data"
    assert out["d_text.jpg"].error == "not an image (unrecognised format)"
    assert out["e_huge.png"].error.startswith("too many pixels (20000x20000")
    for name in ("b_empty.jpg", "c_truncated.jpg", "d_text.jpg", "e_huge.png"):
        assert out[name].array is None and out[name].hash is not None  # read fine, not decoded
    assert out["a_good.jpg"].error is None and out["a_good.jpg"].array.shape == (8, 8, 3)
    assert (out["a_good.jpg"].width, out["a_good.jpg"].height) == (64, 48)
    assert np.allclose(out["f_good.png"].array, 255)  # transparent -> white


def test_unreadable_vanished_and_special_files(tmp_path: Path, monkeypatch):
    ok = write(tmp_path / "ok.jpg", jpeg((0, 255, 0)))
    gone = write(tmp_path / "gone.jpg", jpeg((0, 0, 255)))
    gone.path.unlink()
    denied = write(tmp_path / "denied.jpg", jpeg((9, 9, 9)))
    if os.geteuid() == 0:  # root reads anything: simulate the permission error
        real_open = os.open

        def fake_open(path, flags, *a, **kw):
            if Path(path) == denied.path:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *a, **kw)

        monkeypatch.setattr(pipeline_mod.os, "open", fake_open)
    else:
        denied.path.chmod(0)
    entries = [ok, gone, denied]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.jpg")  # would block a naive open()
        entries.append(FileEntry(tmp_path / "pipe.jpg", 0, 0))
    entries.append(FileEntry(tmp_path, 0, 0))  # a directory
    out = list(prepare_files(entries, prep))
    assert out[0].error is None and out[0].array is not None
    assert out[1].error == "file vanished since the scan (no longer exists)" and out[1].hash is None
    assert out[2].error == "permission denied"
    if hasattr(os, "mkfifo"):
        assert out[3].error == "not a regular file"
    assert out[-1].error.startswith("not a regular file")


def test_entry_refreshed_when_file_changed_since_scan(tmp_path: Path):
    entry = write(tmp_path / "a.jpg", jpeg((1, 1, 1)))
    newer = jpeg((250, 250, 250), (40, 40))
    entry.path.write_bytes(newer)
    (p,) = prepare_files([entry], prep)
    assert p.entry.size == len(newer) and p.hash == content_hash(newer)
    assert p.entry.mtime_ns == entry.path.stat().st_mtime_ns and (p.width, p.height) == (40, 40)


class Boom(BaseException):
    """Not even an Exception: must still be captured per file."""


def test_worker_exceptions_of_any_kind_are_per_file(tmp_path: Path):
    entries = many(tmp_path, 6)

    def flaky(im: Image.Image) -> np.ndarray:
        w = im.width
        if w == 17:
            raise ValueError("bad shape")
        if w == 18:
            raise Boom("kaboom")
        return prep(im)

    out = list(prepare_files(entries, flaky))
    assert [p.error for p in out] == [
        None,
        "cannot prepare image: ValueError: bad shape",
        "cannot prepare image: Boom: kaboom",
        None,
        None,
        None,
    ]
    assert all((p.array is None) == (p.error is not None) for p in out)

    def broken_needs_decode(h: str) -> bool:
        raise RuntimeError("db gone")

    out = list(prepare_files(entries[:2], prep, needs_decode=broken_needs_decode))
    assert [p.error for p in out] == ["internal error (needs_decode): RuntimeError: db gone"] * 2


def test_needs_decode_skips_known_content(tmp_path: Path):
    entries = many(tmp_path, 4)
    known = {content_hash(entries[1].path.read_bytes())}
    calls = []

    def counting(im):
        calls.append(im.size)
        return prep(im)

    out = list(prepare_files(entries, counting, needs_decode=lambda h: h not in known))
    assert len(calls) == 3
    assert out[1].hash in known and out[1].array is None and out[1].error is None
    assert not out[1].duplicate_of_earlier
    assert all(out[i].array is not None for i in (0, 2, 3))


def test_duplicates_within_a_run_decoded_once(tmp_path: Path):
    same = jpeg((10, 200, 10), (30, 20))
    a = write(tmp_path / "a.jpg", same)
    b = write(tmp_path / "b.jpg", jpeg((0, 0, 0)))
    c = write(tmp_path / "c.jpg", same)
    t1 = write(tmp_path / "t1.jpg", b"not an image")
    t2 = write(tmp_path / "t2.jpg", b"not an image")
    calls = []
    out = list(prepare_files([a, b, c, t1, t2, a], lambda im: calls.append(1) or prep(im), workers=1))
    assert len(calls) == 2  # a and b only
    pa, pb, pc, p1, p2, pa2 = out
    assert not pa.duplicate_of_earlier and pa.array is not None
    assert pc.duplicate_of_earlier and pc.duplicate_of == a.path
    assert pc.array is None and pc.error is None and pc.hash == pa.hash
    assert (pc.width, pc.height) == (30, 20)
    assert p1.error == "not an image (unrecognised format)" and not p1.duplicate_of_earlier
    assert p2.duplicate_of_earlier and p2.error == p1.error  # same content, same verdict
    assert pa2.duplicate_of == a.path  # the same path listed twice


def test_duplicates_with_many_workers_still_mark_the_later_one(tmp_path: Path):
    same = jpeg((10, 20, 30))
    entries = [write(tmp_path / f"{i:02d}.jpg", same) for i in range(12)]
    out = list(prepare_files(entries, prep, workers=4, prefetch=12))
    assert out[0].array is not None and not out[0].duplicate_of_earlier
    assert all(p.duplicate_of_earlier and p.array is None and p.duplicate_of == entries[0].path for p in out[1:])


def test_prefetch_bounds_how_far_the_input_is_read(tmp_path: Path):
    entries = many(tmp_path, 50)
    pulled = []

    def source():
        for e in entries:
            pulled.append(e)
            yield e

    gen = prepare_files(source(), prep, workers=2, prefetch=5)
    first = next(gen)
    assert first.entry == entries[0]
    assert len(pulled) <= 6  # prefetch window + the refill after the first result
    rest = list(gen)
    assert len(rest) == 49


def _ingest_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("glimpse-ingest")]


def test_early_close_cancels_pending_work(tmp_path: Path):
    entries = many(tmp_path, 8) * 50  # 400 entries
    calls = []

    def slow(im):
        calls.append(threading.current_thread().name)
        time.sleep(0.01)
        return prep(im)

    gen = prepare_files(entries, slow, workers=2, prefetch=64)
    got = [next(gen) for _ in range(3)]
    assert all(p.error is None for p in got)
    t0 = time.monotonic()
    gen.close()
    elapsed = time.monotonic() - t0
    n = len(calls)
    time.sleep(0.1)
    assert len(calls) == n  # nothing keeps running after close()
    assert n < 64 // 2  # far from decoding the prefetch window, let alone all 400
    assert elapsed < 1.0
    assert not _ingest_threads()
    assert all(name.startswith("glimpse-ingest") for name in calls)  # prepare ran in workers


def test_break_in_for_loop_releases_workers(tmp_path: Path):
    entries = many(tmp_path, 100)
    for i, p in enumerate(prepare_files(entries, prep, prefetch=32)):
        if i == 2:
            break
    del p  # the loop dropped its generator at "break"; make sure nothing else holds one
    import gc

    gc.collect()
    deadline = time.monotonic() + 2
    while _ingest_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _ingest_threads()


def test_prepared_defaults():
    p = Prepared(FileEntry(Path("/x.jpg"), 1, 2))
    assert (p.hash, p.array, p.error, p.duplicate_of_earlier, p.duplicate_of) == (None, None, None, False, None)


def test_max_bytes_skips_unread(tmp_path: Path):
    entry = write(tmp_path / "a.jpg", jpeg((1, 2, 3)))
    (p,) = prepare_files([entry], prep, max_bytes=100)
    assert p.error.startswith("file too large") and p.hash is None
