"""A Milvus server that accepts connections but never answers (frozen, overloaded) blocked
glimpse for ever: every call now has a deadline (``?timeout=`` in the URI), and missing it is
one sentence naming the server, in Python, the CLI and HTTP (503). The server here is a socket
the test opens, never a frozen Milvus."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.server import ServerConfig, create_app

pymilvus = pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")


@contextmanager
def silent_port():
    """A port that accepts TCP connections and never sends a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@contextmanager
def freezable_proxy(upstream: str):
    """A TCP relay to ``upstream`` that goes silent (relays nothing more, either way) once its
    ``freeze`` event is set: a server that froze under an open collection."""
    freeze, stop = threading.Event(), threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    host, port = upstream.split(":")
    held = []

    def relay(source, sink):
        source.settimeout(0.1)
        while not stop.is_set():
            if freeze.is_set():
                stop.wait(0.1)
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                sink.sendall(data)
            except OSError:  # the other side closed
                return

    def accept():
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed as the test ends
                return
            server = socket.create_connection((host, int(port)))
            held.extend([client, server])
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=relay, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", freeze
    finally:
        stop.set()
        for s in [listener, *held]:
            s.close()


def test_a_server_that_never_answers_is_named_at_open(tmp_path, monkeypatch):
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    with silent_port() as address:
        uri = f"milvus://{address}/photos?timeout=0.5"
        with pytest.raises(ValueError, match=rf"cannot reach the Milvus server at {address} .* answers nothing within 0.5 s"):
            glimpse.open(uri, encoder="hash")
        out = CliRunner().invoke(app, ["search", "red", "-c", uri])
    assert out.exit_code == 2 and f"cannot reach the Milvus server at {address}" in out.output
    assert "Traceback" not in out.output


@contextmanager
def mute_grpc_server():
    """A gRPC server that completes the handshake and takes every call, then never answers one."""
    import grpc
    from concurrent.futures import ThreadPoolExecutor

    release = threading.Event()

    class Mute(grpc.GenericRpcHandler):
        def service(self, details):
            return grpc.unary_unary_rpc_method_handler(lambda request, context: release.wait(60) and b"")

    server = grpc.server(ThreadPoolExecutor(8), handlers=[Mute()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        release.set()
        server.stop(0)


def test_a_server_that_takes_calls_and_never_answers_is_named_at_open(tmp_path, monkeypatch):
    """pymilvus's first call (its Connect, inside MilvusClient()) has no deadline: open waited for ever."""
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    failed = []
    with mute_grpc_server() as address:
        def open_it():
            try:
                glimpse.open(f"milvus://{address}/photos?timeout=0.5", encoder="hash")
            except ValueError as exc:
                failed.append(str(exc))

        opening = threading.Thread(target=open_it, daemon=True)
        opening.start()
        opening.join(30)  # a hang fails the test, not the run
        assert not opening.is_alive(), "open() still waits on a server that never answers"
    assert failed and failed[0].startswith(f"cannot reach the Milvus server at {address} (it accepted the connection "
                                           "but gave no answer within 0.5 s)"), failed


@pytest.mark.parametrize("timeout", ["0", "-1", "soon", "86401"])
def test_a_timeout_that_is_no_number_of_seconds_is_refused(timeout):
    with pytest.raises(ValueError, match=r"timeout= \(seconds a call waits"):
        glimpse.open(f"milvus://127.0.0.1:1/photos?timeout={timeout}", encoder="hash")


def test_a_server_that_freezes_under_an_open_collection_fails_the_next_call(lite_server, tmp_path, image_dir, monkeypatch):
    """Once gRPC drops the frozen channel, pymilvus's own inner calls (the query iterator's
    describe_collection under a text search's word sync) take no deadline and retry 75 times:
    each glimpse call is waited for at most ?timeout= plus the back-off between its tries."""
    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    with freezable_proxy(lite_server) as (address, freeze):
        col = glimpse.open(f"milvus://{address}/frozen{id(tmp_path) % 10**6}?timeout=0.5", encoder="hash")
        col.index([image_dir])
        query = next(image_dir.glob("*.png"))
        assert col.search(image=query, k=1)[0].path == str(query)
        with TestClient(create_app(col, ServerConfig(write_token="t")), raise_server_exceptions=False) as http:
            freeze.set()
            answer = http.post("/api/search", json={"text": "red"})
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"].startswith(f"the Milvus server did not answer: {address} gave no answer to ")
            assert "within 0.5 s: check that the server is running" in answer.json()["error"]
            job = http.post("/api/items/remove?wait=true", json={"paths": [str(query)]}, headers={"Authorization": "Bearer t"})
            assert job.status_code == 503 and f"{address} gave no answer to " in job.json()["error"], job.text
        with pytest.raises(pymilvus.MilvusException, match=f"{address} gave no answer to .* within 0.5 s"):
            col.search(image=query, k=1)
        freeze.clear()
        assert col.search(image=query, k=1)[0].path == str(query)  # on a fresh channel: the thawed server is used again
        col.close()
    abandoned = [thread for thread in threading.enumerate() if thread.name.startswith("milvus-")]
    for thread in abandoned:  # the calls left waiting on the frozen channel end once it is closed
        thread.join(10)
    assert not [thread.name for thread in abandoned if thread.is_alive()]


def test_the_cli_says_a_milvus_error_in_one_sentence(tmp_path, image_dir, monkeypatch):
    """What pymilvus raises once a call's tries or deadline run out, met mid-command."""
    col = str(tmp_path / "col")
    assert CliRunner().invoke(app, ["index", str(image_dir), "-c", col, "--encoder", "hash"]).exit_code == 0
    late = pymilvus.MilvusException(message="127.0.0.1:19530 gave no answer to search within 30 s: check that ...")
    monkeypatch.setattr(glimpse.Collection, "search", lambda *args, **kwargs: (_ for _ in ()).throw(late))
    out = CliRunner().invoke(app, ["search", "red", "-c", col])
    assert out.exit_code == 2, out.output
    assert "error: the Milvus server did not answer: 127.0.0.1:19530 gave no answer to search within 30 s" in " ".join(out.output.split())


def test_a_write_job_whose_milvus_cannot_be_reached_is_the_servers_trouble():
    """A 503 (the collection cannot be written), not a 422 blaming the request."""
    from glimpse.milvus.connect import ServerUnreachableError
    from glimpse.server.jobs import Writer

    def unreachable():
        raise ServerUnreachableError("cannot reach the Milvus server at 127.0.0.1:1 (timed out)")

    writer = Writer(unreachable)
    job = writer.submit("remove", lambda col, progress: {})
    job.future.result()
    writer.close()
    assert job.unwritable and job.error == "the collection cannot be written: cannot reach the Milvus server at 127.0.0.1:1 (timed out)"
