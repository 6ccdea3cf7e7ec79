from __future__ import annotations

import itertools
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from milvus_fixtures import client as milvus_client
from milvus_fixtures import lite_server, milvus23_server  # noqa: F401 - fixtures for every module
from PIL import Image

# Off a terminal Rich prints at 80 columns and folds a word longer than that mid-word: a message naming a
# deep temporary path (pytest-xdist's per-worker folders add 10 characters) would then not read as written.
# Set before any test module imports glimpse's consoles, and inherited by the commands tests run.
os.environ["COLUMNS"] = "1000"


@pytest.fixture(autouse=True)
def snapshots_kept_from_the_first_item(monkeypatch):
    """Every test's collections keep their snapshots (glimpse keeps them from 262,144 items on), so the
    later snapshots of each test come from the kept file and the commits' log, which must agree with SQLite."""
    monkeypatch.setattr("glimpse.storage.metadata.KEPT_FROM", 0)


#: What the collection suite runs on: a local directory, and Milvus Lite 2.5.1, started once per
#: session on a loopback port (one process serves it; each test gets collections of its own).
BACKENDS = ("local", "milvus-lite")
_names = itertools.count()


def collection_location(request: pytest.FixtureRequest, backend: str, folder: Path) -> Iterator[str]:
    """Where a new collection lives on ``backend``: ``folder``, or a fresh ``milvus://`` name whose
    Milvus collections are dropped afterwards (a generator, for fixtures of any scope)."""
    if backend == "local":
        yield str(folder)
        return
    address = request.getfixturevalue("lite_server")
    request.getfixturevalue("milvus_home")
    name = f"suite{next(_names)}"
    yield f"milvus://{address}/{name}"
    milvus = milvus_client(address)
    for held in milvus.list_collections():
        if held.startswith(name + "_"):
            milvus.drop_collection(held)
    milvus.close()


@pytest.fixture(scope="session")
def milvus_home(tmp_path_factory) -> Iterator[Path]:
    """GLIMPSE_HOME, where a machine keeps the local part of ``milvus://`` collections."""
    home = tmp_path_factory.mktemp("glimpse-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLIMPSE_HOME", str(home))
        yield home


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local_only(reason): a collection test that cannot apply to Milvus, and why")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The backend this collection test runs on (``@pytest.mark.local_only(reason)``: local only)."""
    only = request.node.get_closest_marker("local_only")
    if only is not None and request.param != "local":
        pytest.skip(f"local backend only: {only.args[0]}")
    return request.param


@pytest.fixture
def collection_at(request, backend, tmp_path) -> Iterator[Callable[[str], str]]:
    """``collection_at("col")``: the location of a new collection called so, on this test's backend."""
    opened: list[Iterator[str]] = []

    def locate(name: str) -> str:
        opened.append(collection_location(request, backend, tmp_path / name))
        return next(opened[-1])

    yield locate
    for location in opened:
        next(location, None)


@pytest.fixture(scope="module", params=BACKENDS)
def shared_collection_uri(request, tmp_path_factory) -> Iterator[str]:
    """As ``collection_uri``, for one collection that the tests of a module share."""
    yield from collection_location(request, request.param, tmp_path_factory.mktemp("col"))


@pytest.fixture
def collection_uri(collection_at) -> str:
    """Where this test's collection lives: a folder, or a collection on Milvus Lite."""
    return collection_at("col")



def make_image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    """A distinct, smooth-ish picture: blocky colour fields, so resizes stay recognisable."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BILINEAR).save(path)
    return path


@pytest.fixture(name="make_image")
def make_image_fixture():
    return make_image


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(12):
        make_image(folder / ("sub" if i % 3 == 0 else "") / f"img{i:02d}.png", seed=i)
    return folder


@pytest.fixture
def hash_encoder():
    from glimpse.encoders import create_encoder

    return create_encoder("hash")


def big_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of any size, built by streaming zlib (tiny on disk, no RAM)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(name="big_png")
def big_png_fixture():
    return big_png


CHROMIUM = Path("/usr/bin/chromium")
# Chromium on a machine with no internet: no background connections, no first-run work.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update",
]


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (never a downloaded browser).

    ``.ci/run`` installs Chromium; elsewhere, browser tests skip with the reason.
    """
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()
