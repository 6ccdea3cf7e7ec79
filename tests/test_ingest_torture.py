"""Hostile inputs and hard kills: every file indexed or listed with a reason, nothing lost.

The corpus is built in a temporary folder on each run (never committed): odd names, link
loops, FIFOs, empty/truncated/fake/random files, decompression bombs, huge metadata, bad
checksums, and valid but unusual formats.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import glimpse

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symlinks (POSIX)")

REPO = Path(__file__).resolve().parents[1]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(seed: int, *chunks: bytes) -> bytes:
    """A distinct PNG with ``chunks`` right after its header."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    return data[:33] + b"".join(chunks) + data[33:]


def _encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def build_corpus(root: Path, big_png) -> tuple[set[str], set[str]]:
    """Write the corpus; returns (paths that must be indexed, paths that must be listed as errors)."""
    good: dict[str, bytes | Path] = {}
    bad: dict[str, bytes | None] = {}
    photo = lambda seed: Image.fromarray(  # noqa: E731 - a small distinct photo
        np.random.default_rng(seed).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    good["plain.png"] = _png(1)
    good[os.fsdecode(b"caf\xe9.jpg")] = _encoded(photo(2), "JPEG")  # a Latin-1 name
    good["cmyk.jpg"] = _encoded(photo(3).convert("CMYK"), "JPEG")
    good["deep16.png"] = _encoded(Image.fromarray(np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20), "PNG")
    frames = [photo(4), photo(5)]
    good["animated.gif"] = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    good["multipage.tif"] = _encoded(photo(6), "TIFF", save_all=True, append_images=[photo(7)])
    exif = Image.Exif()
    exif[0x0112] = 6
    good["rotated.jpg"] = _encoded(photo(8), "JPEG", exif=exif)
    good["corrupt-exif.jpg"] = _encoded(photo(9), "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00")
    header_crc = bytearray(_png(10))
    header_crc[29] ^= 0xFF  # IHDR checksum
    good["bad-header-crc.png"] = bytes(header_crc)
    good["big-text.png"] = _png(11, _png_chunk(b"tEXt", b"Comment\0" + b"x" * (3 << 20)))
    good["inflating-profile.png"] = _png(12, _png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * (50 << 20), 9)))
    good["transparent.png"] = _encoded(photo(13).convert("P").copy(), "PNG", transparency=0)
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        good["phone.heic"] = _encoded(photo(14), "HEIF")
    except ImportError:
        pass
    if "AVIF" in Image.SAVE:
        good["modern.avif"] = _encoded(photo(15), "AVIF")

    full = _encoded(photo(20), "JPEG")
    bad["empty.jpg"] = b""
    bad["truncated.jpg"] = full[: len(full) // 2]
    bad["fake.png"] = b"this is not a picture, only a name that says so\n"
    bad["random.jpg"] = np.random.default_rng(21).bytes(5000)
    bad["bomb.png"] = big_png(30_000, 30_000)  # 900 MP from a 1 MB file: refused from the header
    bad[os.fsdecode(b"bad\xff.jpg")] = b"neither UTF-8 nor an image"

    for name, data in {**good, **bad}.items():
        (root / name).write_bytes(data)
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    (root / "dangling.png").symlink_to(root / "missing.png")
    os.mkfifo(root / "pipe.jpg")
    bad.update(dict.fromkeys(["loop.jpg", "dangling.png", "pipe.jpg"]))
    return {str(root / n) for n in good}, {str(root / n) for n in bad}


def test_torture_corpus_every_file_indexed_or_listed_and_a_rerun_changes_nothing(tmp_path, big_png):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good, bad = build_corpus(corpus, big_png)
    col_dir = tmp_path / "col"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # The command line as people run it: it must end (a FIFO never blocks it) and print no warnings.
    run = subprocess.run([sys.executable, "-m", "glimpse.cli", "index", str(corpus), "-c", str(col_dir),
                          "--encoder", "hash"], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert f"{len(good)} indexed, 0 unchanged, {len(bad)} skipped" in run.stdout
    assert run.stderr.strip() == ""  # (the finished progress bar leaves a bare newline)
    info = subprocess.run([sys.executable, "-m", "glimpse.cli", "info", "--errors", "--json", "-c", str(col_dir)],
                          capture_output=True, timeout=60, env=env)
    listed = json.loads(info.stdout.decode("utf-8"))["errors"]  # valid UTF-8 JSON, names escaped
    assert all(e["reason"] for e in listed) and len(listed) == len(bad)

    col = glimpse.open(col_dir)
    files = col._meta.file_records()
    assert set(files) == good  # every valid picture, and nothing else
    assert {e.path for e in col.errors()} == bad  # every other file, with its reason
    assert all(col.search(image=Path(p), k=1)[0].path == p for p in good if not p.endswith((".heic", ".avif")))

    again = col.index()
    assert (again.embedded, again.linked, again.errors, again.unchanged, again.skipped) == (0, 0, [], len(good), len(bad))
    assert col._meta.file_records() == files  # same files, same items


KILL_SCRIPT = """
import sys, time
import glimpse
col = glimpse.open(sys.argv[1], encoder="hash")
print("ready", flush=True)
started = time.perf_counter()
col.index([sys.argv[2]], batch_size=2)
col.remove([sys.argv[3]])
print(time.perf_counter() - started, flush=True)
"""


def _state(col) -> tuple:
    """What a user can observe: files with their content, errors, removals and search results."""
    files = {p: r.hash for p, r in col._meta.file_records().items()}
    query = col.encoder.encode_texts(["a photo"])[0]
    hits = [(h.path, round(h.score, 4)) for h in col.search(vector=query, k=100)]
    return files, sorted((e.path, e.reason) for e in col.errors()), col.stats().excluded, hits


def _run(col_dir: Path, args: list[str], kill_after: float | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(col_dir), *args], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    out = proc.communicate(timeout=120)[0]
    return out


def test_kill_9_at_random_moments_during_index_and_remove_loses_nothing(tmp_path, make_image):
    photos = tmp_path / "photos"
    (photos / "private").mkdir(parents=True)
    for i in range(40):
        make_image(photos / ("private" if i % 4 == 0 else "") / f"p{i:02d}.png", seed=500 + i)
    (photos / "broken.jpg").write_bytes(b"nope")
    args = [str(photos), str(photos / "private")]
    seconds = float(_run(tmp_path / "clean", args))  # how long the work takes here, measured
    expected = _state(glimpse.open(tmp_path / "clean"))

    rng = random.Random(0)
    kills = 5
    for attempt in range(kills):  # one random moment in each fifth of the work
        col_dir = tmp_path / f"col{attempt}"
        _run(col_dir, args, kill_after=(attempt + rng.random()) * seconds / kills)
        col = glimpse.open(col_dir)  # opens and searches after any kill
        col.search(text="anything", k=5)
        col.close()
        assert _run(col_dir, args)  # resumes to the end
        assert _state(glimpse.open(col_dir)) == expected
