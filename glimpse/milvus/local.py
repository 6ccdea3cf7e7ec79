"""Milvus servers on this machine's loopback, for the tests and benchmarks/milvus.py.

Two kinds: Milvus Lite 2.5 listening on a TCP port (the milvus extra; several processes can
connect, as to a server), and the registry's ``milvus`` 2.3 package (``milvus-server``: a real
standalone server with embedded etcd, no Docker). Each runs in its own process group, so
:func:`stop` ends it with what it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .connect import start_lite

#: The parts of the 2.3 server whose ports ``milvus-server`` takes as options (``--etcd-port``, ...).
INTERNAL_PORTS = ("etcd", "root-coord", "proxy-internal", "query-coord", "query-node", "index-coord", "index-node",
                  "data-coord", "data-node")
STARTUP_S = 120  # the 2.3 server unpacks itself on first start: ~10 s on an idle 2-core machine


class ServerUnavailable(RuntimeError):
    """This machine cannot run that server (not installed, or it did not come up)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lite_server(db: Path) -> tuple[subprocess.Popen, str]:
    """Milvus Lite on ``db``, on a free loopback port: (process, ``127.0.0.1:PORT``)."""
    port = free_port()
    process = start_lite(db, f"127.0.0.1:{port}")
    return process, _ready(process, port, "Milvus Lite")


def milvus_server(data: Path) -> tuple[subprocess.Popen, str]:
    """The ``milvus-server`` 2.3 standalone server with its data in ``data``: (process, ``127.0.0.1:PORT``)."""
    launcher = shutil.which("milvus-server")
    if launcher is None:
        raise ServerUnavailable("no milvus-server command: the registry's milvus package is not installed "
                                "(pip install 'milvus==2.3.5', Linux only)")
    port = free_port()
    # Every port its parts listen on is a free one: several servers may run on one machine (test runs at once).
    ports = {part: free_port() for part in INTERNAL_PORTS}
    options = [f"--{part}-port={number}" for part, number in ports.items()]
    env = {**os.environ, "ETCD_CONFIG_PATH": str(_etcd_config(data, ports["etcd"]))}
    process = subprocess.Popen([launcher, "--data", str(data), "--proxy-port", str(port), *options], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return process, _ready(process, port, "milvus-server")


def _etcd_config(data: Path, client_port: int) -> Path:
    """The embedded etcd's own configuration (Milvus reads its path from ETCD_CONFIG_PATH): its
    peer port is 2380 otherwise, whatever ``--etcd-port`` says, and a second server fails to bind it."""
    peer = f"http://127.0.0.1:{free_port()}"
    client = f"http://127.0.0.1:{client_port}"
    data.mkdir(parents=True, exist_ok=True)
    path = data / "embed-etcd.yaml"
    path.write_text(f"name: default\nlisten-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
                    f"initial-cluster: default={peer}\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n")
    return path


def _ready(process: subprocess.Popen, port: int, what: str) -> str:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"{what} exited with status {process.returncode} at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise ServerUnavailable(f"{what} did not listen on 127.0.0.1:{port} within {STARTUP_S} s")


def stop(process: subprocess.Popen) -> None:
    """The server and what it started (its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
