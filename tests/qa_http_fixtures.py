"""The served collection the tests/test_qa_http_*.py modules share: four pictures, hash encoder,
write token ``t``. Import ``client`` into a test module (each module gets its own)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import glimpse
from glimpse.server import ServerConfig, create_app

AUTH = {"Authorization": "Bearer t"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A TestClient of the app; ``client.photo`` holds the bytes of an indexed picture."""
    from conftest import make_image

    folder = tmp_path_factory.mktemp("photos")
    for i in range(4):
        make_image(folder / f"img{i:02d}.png", seed=i)
    col = glimpse.open(folder / "col", encoder="hash")
    col.add([folder])
    with TestClient(create_app(col, ServerConfig(write_token="t"))) as http:
        http.photo = (folder / "img00.png").read_bytes()
        yield http
    col.close()
