"""Reading an indexed file again (Collection.open_original): only what was indexed, inside the roots.

Each swap below is what a person with write access to the photo folder could do after
indexing; none may hand out a byte of another file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fastapi.testclient import TestClient
from PIL import Image

import glimpse
from glimpse.storage.originals import FileChangedError
from glimpse.server import ServerConfig, create_app

SECRET = b"root:x:0:0:the secret outside the photo folder\n"


@pytest.fixture
def col(collection_uri, image_dir):
    collection = glimpse.open(collection_uri, encoder="hash")
    collection.add([image_dir])
    yield collection
    collection.close()


def item_of(col, path: Path) -> int:
    return next(r.id for r in col.search(image=path, k=12) if r.path == str(path))


def lookalike(target: Path, original_stat: os.stat_result, data: bytes = SECRET) -> Path:
    """A file outside the roots with the original's size and mtime: only the roots check can tell."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.ljust(original_stat.st_size, b"x")[: original_stat.st_size])
    os.utime(target, ns=(original_stat.st_atime_ns, original_stat.st_mtime_ns))
    return target


def test_an_unchanged_original_is_opened(col, image_dir):
    photo = image_dir / "img04.png"
    path, f = col.open_original(item_of(col, photo))
    with f:
        assert path == str(photo) and f.read() == photo.read_bytes()


def secret_link(photo: Path, outside: Path) -> None:
    """The photo becomes a link to a secret of its own size and mtime: only the roots check tells."""
    secret = lookalike(outside / "secret", photo.stat())
    photo.unlink()
    photo.symlink_to(secret)


def passwd_link(photo: Path, outside: Path) -> None:
    (outside / "passwd").write_bytes(SECRET)
    photo.unlink()
    photo.symlink_to(outside / "passwd")


def folder_link(photo: Path, outside: Path) -> None:
    """The photo's folder becomes a link to a copy elsewhere (names, sizes, mtimes kept) whose
    files hold the secret."""
    folder = photo.parent
    shutil.copytree(folder, outside / "copy")
    for copy in (outside / "copy").iterdir():
        lookalike(copy, copy.stat())
    shutil.rmtree(folder)
    folder.symlink_to(outside / "copy")


def other_content(photo: Path, outside: Path) -> None:
    Image.new("RGB", (70, 50), "red").save(photo)


def fifo(photo: Path, outside: Path) -> None:
    photo.unlink()
    os.mkfifo(photo)


def gone(photo: Path, outside: Path) -> None:
    photo.unlink()


# swap -> (what Collection.open_original raises, the HTTP status, words of the message)
SWAPS = {
    secret_link: (FileChangedError, 409, "leads outside"),
    passwd_link: (FileChangedError, 409, "changed since it was indexed"),
    folder_link: (FileChangedError, 409, "leads outside"),
    other_content: (FileChangedError, 409, "changed since it was indexed"),
    fifo: (FileNotFoundError, 404, "none of its files"),
    gone: (FileNotFoundError, 404, "none of its files"),
}


@pytest.mark.parametrize("swap", SWAPS, ids=lambda f: f.__name__)
def test_swapped_files_are_refused(col, image_dir, tmp_path, swap):
    photo = image_dir / "sub" / "img03.png"
    item = item_of(col, photo)
    (tmp_path / "outside").mkdir()
    swap(photo, tmp_path / "outside")
    error, _, words = SWAPS[swap]
    with pytest.raises(error, match=words if error is FileChangedError else None):
        col.open_original(item)


@pytest.mark.parametrize("swap", SWAPS, ids=lambda f: f.__name__)
def test_swapped_files_are_never_served(col, image_dir, tmp_path, swap):
    photo = image_dir / "sub" / "img03.png"
    item = item_of(col, photo)
    (tmp_path / "outside").mkdir()
    _, status, words = SWAPS[swap]
    with TestClient(create_app(col, ServerConfig())) as client:
        assert client.get(f"/api/items/{item}/thumbnail", params={"size": 128}).status_code == 200  # cached before
        swap(photo, tmp_path / "outside")
        for url in (f"/api/items/{item}/image", f"/api/items/{item}/thumbnail?size=512"):
            answer = client.get(url)
            assert answer.status_code == status, (url, answer.text)
            assert words in answer.json()["error"] and b"secret" not in answer.content
        # A thumbnail made while the file was as indexed is still that file's.
        assert client.get(f"/api/items/{item}/thumbnail", params={"size": 128}).status_code == 200


def test_a_folder_link_to_an_allowed_root_is_followed(col, image_dir, tmp_path):
    photo = image_dir / "sub" / "img03.png"
    item = item_of(col, photo)
    outside = tmp_path / "outside"
    shutil.copytree(image_dir / "sub", outside)  # same names, sizes and mtimes
    shutil.rmtree(image_dir / "sub")
    (image_dir / "sub").symlink_to(outside)
    path, f = col.open_original(item, roots=[outside])
    with f:
        assert path == str(photo) and f.read() == (outside / "img03.png").read_bytes()


def test_gone_files_and_unknown_ids(col, image_dir):
    photo = image_dir / "img11.png"
    item = item_of(col, photo)
    photo.unlink()
    with pytest.raises(FileNotFoundError):
        col.open_original(item)
    with pytest.raises(KeyError):
        col.open_original(999)
    for not_an_id in (-1, 2**64):  # checked as search(like=...) checks ids
        with pytest.raises(ValueError, match="whole number"):
            col.open_original(not_an_id)


def test_a_copy_still_as_indexed_is_served_when_the_first_changed(col, image_dir, tmp_path):
    photo = image_dir / "img10.png"
    copy = image_dir / "zz-copy.png"
    shutil.copy2(photo, copy)
    col.add([copy])
    item = item_of(col, photo)
    photo.unlink()
    photo.symlink_to(lookalike(tmp_path / "secret", copy.stat()))
    path, f = col.open_original(item)
    with f:
        assert path == str(copy) and f.read() == copy.read_bytes()


def test_a_root_reached_through_a_symlink_still_serves(tmp_path, image_dir):
    link = tmp_path / "photos-link"
    link.symlink_to(image_dir)
    with glimpse.open(tmp_path / "linked", encoder="hash") as col:
        col.add([link])
        photo = link / "img01.png"
        path, f = col.open_original(item_of(col, photo))
        with f:
            assert path == str(photo) and f.read() == photo.read_bytes()


def test_a_file_added_by_itself_is_served_where_it_is(tmp_path, make_image):
    photo = make_image(tmp_path / "alone.png", seed=77)
    with glimpse.open(tmp_path / "single", encoder="hash") as col:
        col.add([photo])
        path, f = col.open_original(item_of(col, photo))
        f.close()
        assert path == str(photo)
