"""Milvus for the tests: Milvus Lite (started here) and the registry's Milvus 2.3 server binary.

Import the fixtures into a test module (``from milvus_fixtures import ...``). Each skips with
its reason only where its Milvus cannot run here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

STARTUP_S = 120  # the server binary unpacks itself on first start: ~10 s on an idle 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.skip(f"{what} exited with status {process.returncode} at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    pytest.skip(f"{what} did not listen on 127.0.0.1:{port} within {STARTUP_S} s")


def stop(process: subprocess.Popen) -> None:
    """The server and what it started (its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="session")
def lite_server(tmp_path_factory):
    """Milvus Lite 2.5 listening on a loopback port: ``http://127.0.0.1:PORT``, for several processes."""
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")
    from glimpse.extras import MissingExtraError
    from glimpse.milvus.connect import start_lite

    port = free_port()
    try:
        process = start_lite(tmp_path_factory.mktemp("lite") / "tests.db", f"127.0.0.1:{port}")
    except MissingExtraError as exc:
        pytest.skip(str(exc))
    wait_for_port(port, process, "Milvus Lite")
    yield f"127.0.0.1:{port}"
    stop(process)


@pytest.fixture(scope="session")
def milvus23_server(tmp_path_factory):
    """The registry's ``milvus`` 2.3 server (test extra) on loopback: ``127.0.0.1:PORT``."""
    launcher = shutil.which("milvus-server")
    if launcher is None:
        pytest.skip("no milvus-server command: the registry's milvus package (test extra) is not installed")
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")
    port = free_port()
    data = tmp_path_factory.mktemp("milvus23")
    process = subprocess.Popen([launcher, "--data", str(data), "--proxy-port", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_port(port, process, "milvus-server")
    yield f"127.0.0.1:{port}"
    stop(process)


def client(address: str):
    from pymilvus import MilvusClient

    return MilvusClient(uri=f"http://{address}")


def unique_name(request) -> str:
    """A Milvus collection name for this test (letters, digits and _)."""
    return "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60] + f"_{time.monotonic_ns() % 10**6}"


__all__ = ["client", "lite_server", "milvus23_server", "unique_name", "Path"]
