"""Collection.search from several threads: index scans run together, a refresh waits for them.

Each test stops one search inside its index scan until something else has happened, so a
lock that serialised scans would leave both waiting (the guard timeouts only end a hang).
"""

from __future__ import annotations

import threading

import pytest

import glimpse


@pytest.fixture
def col(collection_uri, image_dir):
    collection = glimpse.open(collection_uri, encoder="hash")
    collection.add([image_dir])
    collection.search(text="load the index", k=1)
    yield collection
    collection.close()


def hold_first_scan(col, until: threading.Event) -> threading.Event:
    """The next scan made by a thread named 'first' waits for ``until``; returns 'it is scanning'."""
    scanning = threading.Event()
    index = col._index
    search = index.search

    def held(*args, **kwargs):
        if threading.current_thread().name == "first":
            scanning.set()
            assert until.wait(20), "the other search did not get through"
        return search(*args, **kwargs)

    index.search = held
    return scanning


def in_thread(target) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(target()), name="first")
    thread.start()
    return thread, out


def test_two_searches_scan_the_index_at_once(col, image_dir):
    second_done = threading.Event()
    scanning = hold_first_scan(col, second_done)
    thread, first = in_thread(lambda: col.search(text="the first", k=3))
    try:
        assert scanning.wait(20)
        second = col.search(image=image_dir / "img05.png", k=1)
        assert second[0].path == str(image_dir / "img05.png")
    finally:
        second_done.set()
        thread.join(30)
    assert len(first[0]) == 3


@pytest.mark.local_only("a running scan sees the in-memory index as it was; Milvus answers each search with what "
                        "is committed when the search reaches it")
def test_a_commit_is_seen_once_the_running_scans_are_done(col, tmp_path, make_image):
    release = threading.Event()
    scanning = hold_first_scan(col, release)
    thread, first = in_thread(lambda: col.search(text="the first", k=20))
    assert scanning.wait(20)
    new = make_image(tmp_path / "photos" / "new.png", seed=4040)
    with glimpse.open(col.location) as writer:  # another process's commit, as the server's writer makes
        writer.add([new])
    release.set()
    thread.join(30)
    assert len(first[0]) == 12  # it scanned the index as it was
    assert col.search(image=new, k=1)[0].path == str(new)
    assert len(col.search(text="all", k=20)) == 13
