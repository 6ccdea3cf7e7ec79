"""A Milvus server that stops under an open collection: the next call fails after a few tries
(pymilvus's own 75 took ~210 s), and the HTTP answer is a 503 with one sentence."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import glimpse
from glimpse.server import ServerConfig, create_app


def test_a_stopped_server_is_reported_after_a_few_tries(tmp_path, image_dir, hash_encoder, monkeypatch):
    pymilvus = pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install '.[milvus]')")
    from glimpse.milvus.local import lite_server, stop

    monkeypatch.setenv("GLIMPSE_HOME", str(tmp_path / "home"))
    process, address = lite_server(tmp_path / "down.db")  # its own server: this test stops it
    try:
        col = glimpse.open(f"milvus://{address}/down", hash_encoder)
        col.index([image_dir])
        query = next(image_dir.glob("*.png"))
        assert col.search(image=query, k=1)[0].path == str(query)
    finally:
        stop(process)
    with col:
        with pytest.raises(pymilvus.MilvusException, match="Retry run out of 6 retry times"):
            col.search(image=query, k=1)
        with TestClient(create_app(col, ServerConfig()), raise_server_exceptions=False) as http:
            answer = http.post("/api/search", json={"text": "red"})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"].startswith("the Milvus server did not answer: ")
