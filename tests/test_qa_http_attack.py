"""Defects an adversarial pass over the HTTP API found (qa-http); each test failed before its fix."""

from __future__ import annotations

import os

from qa_http_fixtures import AUTH, client  # noqa: F401  (a fixture)


def test_a_thumbnail_pruned_while_served_is_still_sent(client):
    # A removal prunes thumbnails on the writer thread; one pruned between the cache's answer
    # and the response was a 500 (FileResponse opened the path later) and a dropped connection.
    thumbnails = client.app.state.service.thumbnails
    made = thumbnails.get

    def pruned_right_after(*args):
        answer = made(*args)
        thumbnails.prune(set())
        return answer

    thumbnails.get = pruned_right_after
    try:
        for _ in range(2):  # made, then made again after the prune
            answer = client.get("/api/items/0/thumbnail?size=128")
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "image/jpeg" and answer.content[:2] == b"\xff\xd8"
    finally:
        thumbnails.get = made


def test_an_upload_refused_for_one_bad_file_keeps_none_of_them(client, tmp_path):
    from conftest import make_image

    good = make_image(tmp_path / "new.png", seed=77).read_bytes()
    uploads = client.app.state.service.upload_dir
    before = set(os.listdir(uploads)) if uploads.exists() else set()
    answer = client.post("/api/items/upload?wait=true", headers=AUTH,
                         files=[("image", ("new.png", good, "image/png")), ("image", ("bad.png", b"junk", "image/png"))])
    assert answer.status_code == 415, answer.text
    # the good file was kept in the upload folder, though the request was refused and nothing indexed
    assert (set(os.listdir(uploads)) if uploads.exists() else set()) == before


def _ids(answer):
    assert answer.status_code == 200, answer.text
    return [(hit["id"], round(hit["score"], 5)) for hit in answer.json()["results"]]


def test_only_the_ratio_of_term_weights_matters(client):
    # Weights 1e308 summed to inf and 1e-320 to 0: "the query adds up to nothing" for valid weights.
    def search(*weights):
        terms = [{"text": text, "weight": w} for text, w in zip(("red", "blue"), weights)]
        return _ids(client.post("/api/search", json={"terms": terms, "exact": True}))

    assert search(1e308, 1e308) == search(1, 1)
    assert search(1e308, -1e308 / 2) == search(2, -1)
    assert search(1e-320) == search(1)
