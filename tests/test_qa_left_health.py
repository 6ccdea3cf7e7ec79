"""/api/health checks the vector file's size against the committed rows: a file cut short
(the next search answers 503) is a 503 there too, not "ok"."""

from __future__ import annotations

import os

from fastapi.testclient import TestClient

import glimpse
from glimpse.server import ServerConfig, create_app


def test_health_is_503_when_the_vector_file_is_cut_short(tmp_path, image_dir):
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
    with TestClient(create_app(tmp_path / "col", ServerConfig()), raise_server_exceptions=False) as http:
        assert http.get("/api/health").json() == {"status": "ok", "images": 12}
        vectors = tmp_path / "col" / "vectors.f16"
        os.truncate(vectors, vectors.stat().st_size // 2)
        answer = http.get("/api/health")
        assert answer.status_code == 503, answer.text
        assert "the vector file was truncated or replaced" in answer.json()["error"]
        assert http.post("/api/search", json={"like": 0}).status_code == 503


def test_an_empty_collection_is_healthy(tmp_path):
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        with TestClient(create_app(col, ServerConfig())) as http:
            assert http.get("/api/health").json() == {"status": "ok", "images": 0}
