"""Collection URIs given wrongly: a clear sentence and exit 2, no traceback, nothing created."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from glimpse.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def said(result) -> str:
    return " ".join(result.output.split())


@pytest.mark.parametrize("uri", ["mlvus://host/photos", "milvus+lite:///tmp/x.db", "http://host:19530/photos"])
def test_a_uri_of_an_unknown_scheme_is_refused_not_made_a_folder(tmp_path, image_dir, monkeypatch, uri):
    monkeypatch.chdir(tmp_path)
    result = invoke("index", image_dir, "-c", uri, "--encoder", "hash")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "milvus://HOST:PORT/NAME" in said(result) and "milvus-lite:///" in said(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no folder named after the URI


def test_an_unreachable_milvus_server_is_one_sentence(tmp_path):
    pytest.importorskip("pymilvus", reason="needs the milvus extra")
    result = invoke("search", "a cat", "-c", "milvus://127.0.0.1:1/photos")  # nothing listens on port 1
    assert result.exit_code == 2, result.output
    assert "cannot reach the Milvus server at 127.0.0.1:1" in said(result) and "Traceback" not in result.output


@pytest.mark.parametrize("uri", ["milvus://host:abc/photos", "milvus://host:99999/photos", "milvus://[::1/photos"])
def test_a_bad_host_or_port_in_a_milvus_uri_says_how_to_write_one(uri):
    result = invoke("search", "a cat", "-c", uri)
    assert result.exit_code == 2 and "milvus://HOST:19530/NAME" in said(result) and "Traceback" not in result.output
