"""Writes refused up front with the right status: a collection damaged or removed under a running
server is a 503, as a read is (not the client's 422); images for a collection of vectors a 422."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

import glimpse
from glimpse.server import ServerConfig, create_app

AUTH = {"Authorization": "Bearer t"}


def _truncate_vectors(folder):
    with open(folder / "vectors.f16", "r+b") as f:
        f.truncate(100)


def _remove_metadata(folder):
    for name in ("metadata.sqlite", "metadata.sqlite-wal", "metadata.sqlite-shm"):
        (folder / name).unlink(missing_ok=True)


@pytest.mark.parametrize("damage", [_truncate_vectors, _remove_metadata, shutil.rmtree])
def test_a_write_to_a_damaged_collection_is_503(tmp_path, image_dir, damage):
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
    with TestClient(create_app(tmp_path / "col", ServerConfig(write_token="t")), raise_server_exceptions=False) as http:
        assert http.post("/api/search", json={"text": "red"}).status_code == 200
        damage(tmp_path / "col")
        answer = http.post("/api/items/remove?wait=true", json={"paths": [str(image_dir / "img01.png")]}, headers=AUTH)
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        if damage is shutil.rmtree:  # the route reads the roots first
            assert error.startswith("the collection cannot be read: ")
        else:
            assert error.startswith("the collection cannot be written: ")
            job = http.get("/api/jobs/1").json()
            assert job["state"] == "failed" and job["error"] == error


def test_images_sent_to_a_collection_of_precomputed_vectors_are_refused_before_anything_is_kept(tmp_path, image_dir):
    import numpy as np

    with glimpse.open(tmp_path / "vec", encoder="precomputed", dim=8) as col:
        col.add_vectors(np.eye(8, dtype=np.float32)[:3], ["a", "b", "c"])
    with TestClient(create_app(tmp_path / "vec", ServerConfig(write_token="t", roots=[image_dir]))) as http:
        picture = (image_dir / "img01.png").read_bytes()
        upload = http.post("/api/items/upload", files={"image": ("a.png", picture, "image/png")}, headers=AUTH)
        add = http.post("/api/items/add", json={"paths": [str(image_dir)]}, headers=AUTH)
        for answer in (upload, add):  # was 202, then a failed job (and the upload kept in uploads/)
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"].startswith("this collection holds precomputed vectors")
        assert not (tmp_path / "vec" / "uploads").exists()
