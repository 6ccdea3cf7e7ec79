"""/api/health says when the collection was removed under the running server (its open database
still answered the image count)."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

import glimpse
from glimpse.server import ServerConfig, create_app


@pytest.mark.parametrize("remove", ["folder", "database"])
def test_health_is_503_once_the_collection_is_removed(tmp_path, image_dir, remove):
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
    with TestClient(create_app(tmp_path / "col", ServerConfig()), raise_server_exceptions=False) as http:
        assert http.get("/api/health").json() == {"status": "ok", "images": 12}
        if remove == "folder":
            shutil.rmtree(tmp_path / "col")
        else:
            for name in ("metadata.sqlite", "metadata.sqlite-wal", "metadata.sqlite-shm"):
                (tmp_path / "col" / name).unlink(missing_ok=True)
        answer = http.get("/api/health")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"].startswith("the collection cannot be read: ")
