"""A Milvus server that stops answering under a running glimpse server: a 503 with one sentence, not a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import glimpse
from glimpse.server import ServerConfig, create_app


def test_a_milvus_error_is_503(tmp_path, image_dir, monkeypatch):
    pymilvus = pytest.importorskip("pymilvus", reason="the milvus extra is not installed")
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
        # what pymilvus raises once its 75 retries against a stopped server run out
        down = pymilvus.MilvusException(code=2, message="[search] Retry run out of 75 retry times, message=failed to connect")
        monkeypatch.setattr(col, "search", lambda *args, **kwargs: (_ for _ in ()).throw(down))
        with TestClient(create_app(col, ServerConfig()), raise_server_exceptions=False) as http:
            answer = http.post("/api/search", json={"text": "red"})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == ("the Milvus server did not answer: [search] Retry run out of 75 retry times, "
                                      "message=failed to connect")


def test_a_write_job_milvus_fails_is_503(tmp_path, image_dir, monkeypatch):
    pymilvus = pytest.importorskip("pymilvus", reason="the milvus extra is not installed")
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
        down = pymilvus.MilvusException(code=2, message="[delete] Retry run out of 75 retry times")
        monkeypatch.setattr(type(col), "remove", lambda *args, **kwargs: (_ for _ in ()).throw(down))
        with TestClient(create_app(col, ServerConfig(write_token="t")), raise_server_exceptions=False) as http:
            answer = http.post("/api/items/remove?wait=true", json={"paths": [str(image_dir / "img01.png")]},
                               headers={"Authorization": "Bearer t"})
    assert answer.status_code == 503, answer.text  # was 422, "internal error: MilvusException"
    assert answer.json()["error"] == "the collection cannot be written: [delete] Retry run out of 75 retry times"
