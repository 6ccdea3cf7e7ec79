"""Milvus for the tests: Milvus Lite over loopback and the registry's Milvus 2.3 server binary
(glimpse.milvus.local). Import the fixtures into a test module; each skips with its reason
only where its Milvus cannot run here."""

from __future__ import annotations

import time

import pytest


#: Servers running for this session, by kind. Each test module that imports a fixture gets its
#: own copy of it, so the first one starts the server and the others share it (one start each).
_RUNNING: dict[str, str] = {}


def _serve(kind: str, start, folder):
    if kind in _RUNNING:
        yield _RUNNING[kind]
        return
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")
    from glimpse.extras import MissingExtraError
    from glimpse.milvus.local import ServerUnavailable, stop

    try:
        process, address = start(folder)
    except (MissingExtraError, ServerUnavailable) as exc:
        pytest.skip(str(exc))
    _RUNNING[kind] = address
    yield address
    del _RUNNING[kind]
    stop(process)


@pytest.fixture(scope="session")
def lite_server(tmp_path_factory):
    """Milvus Lite 2.5 listening on a loopback port, ``127.0.0.1:PORT``, for several processes."""
    from glimpse.milvus.local import lite_server as start

    yield from _serve("lite", start, tmp_path_factory.mktemp("lite") / "tests.db")


@pytest.fixture(scope="session")
def milvus23_server(tmp_path_factory):
    """The registry's ``milvus`` 2.3 server (test extra) on loopback, ``127.0.0.1:PORT``."""
    from glimpse.milvus.local import milvus_server as start

    yield from _serve("milvus23", start, tmp_path_factory.mktemp("milvus23"))


def client(address: str):
    """A client as glimpse's own (glimpse.milvus.connect): its calls bounded."""
    from pymilvus import MilvusClient

    from glimpse.milvus.connect import DEFAULT_TIMEOUT_S, Bounded

    return Bounded(MilvusClient(uri=f"http://{address}"), address, DEFAULT_TIMEOUT_S)


def unique_name(request) -> str:
    """A Milvus collection name for this test (letters, digits and _)."""
    return "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60] + f"_{time.monotonic_ns() % 10**6}"
