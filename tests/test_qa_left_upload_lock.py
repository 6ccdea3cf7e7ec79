"""An upload whose add job loses the write lock to a real second writer (another process)
keeps none of its files, and says so; a picture uploaded and indexed before stays."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager

from fastapi.testclient import TestClient

import glimpse
from conftest import make_image
from glimpse.server import ServerConfig, create_app

AUTH = {"Authorization": "Bearer t"}
HOLD = "import sys; from glimpse.storage import WriteLock; WriteLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()"


@contextmanager
def second_writer(col):
    """Another process holding the collection's write lock meanwhile."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(col.path / "write.lock")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def _upload(http, *datas, wait=True):
    files = [("image", (f"u{i}.png", data, "image/png")) for i, data in enumerate(datas)]
    return http.post(f"/api/items/upload{'?wait=true' if wait else ''}", files=files, headers=AUTH)


def test_a_locked_upload_keeps_no_file(tmp_path, image_dir):
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([image_dir])
    earlier, *fresh = (make_image(tmp_path / f"new{i}.png", seed=900 + i).read_bytes() for i in range(3))
    with TestClient(create_app(col, ServerConfig(write_token="t"))) as http:
        assert _upload(http, earlier).status_code == 200
        kept = set((col.path / "uploads").iterdir())
        with second_writer(col) as holder:
            answer = _upload(http, fresh[0], earlier)
            assert answer.status_code == 409
            assert f"locked by pid {holder.pid}" in answer.json()["error"]
            assert answer.json()["error"].endswith("the uploaded images were not kept: send them again")
            queued = _upload(http, fresh[1], wait=False)
            assert queued.status_code == 202
            for _ in range(500):
                job = http.get(f"/api/jobs/{queued.json()['id']}").json()
                if job["state"] == "failed":
                    break
                time.sleep(0.02)
            assert job["state"] == "failed" and job["error"].endswith("not kept: send them again")
            assert set((col.path / "uploads").iterdir()) == kept  # the earlier picture stays, indexed
        assert _upload(http, fresh[0]).status_code == 200 and len(col) == 14
    col.close()


def test_a_picture_uploaded_again_leaves_the_kept_file_as_it_was(tmp_path, image_dir):
    """Rewritten, it got a new modification time: its original was 'changed since indexing'
    (409) until the add job ran, and was embedded again."""
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([image_dir])
    data = make_image(tmp_path / "again.png", seed=950).read_bytes()
    with TestClient(create_app(col, ServerConfig(write_token="t"))) as http:
        assert _upload(http, data).status_code == 200
        (kept,) = (col.path / "uploads").iterdir()
        before = kept.stat()
        again = _upload(http, data)
        assert again.status_code == 200 and again.json()["result"]["unchanged"] == 1
        assert (kept.stat().st_ino, kept.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    col.close()
