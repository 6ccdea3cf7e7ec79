"""What a collection remembers about its files: odd names, removals, folders, and every skip's reason."""

from __future__ import annotations

import importlib
import json
import os
import sqlite3

import pytest
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.ingest.names import shown

runner = CliRunner()
LATIN1 = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name: not UTF-8, kept as Python keeps it


def test_shown_escapes_undecodable_bytes_and_leaves_text_alone():
    assert shown("/p/" + LATIN1) == "/p/caf\\xe9.png"
    assert shown("/p/café.png") == "/p/café.png"
    assert shown("/p/new\nline\t.png") == "/p/new\\x0aline\\x09.png"  # one table row per name
    assert shown(shown("/p/" + LATIN1)) == shown("/p/" + LATIN1)


def test_a_name_that_is_not_utf8_is_indexed_found_shown_and_removed(collection_uri, image_dir, make_image, hash_encoder):
    odd = make_image(image_dir / LATIN1, seed=50)
    col_dir = collection_uri
    col = glimpse.open(col_dir, encoder=hash_encoder)
    report = col.index([image_dir])
    assert (report.embedded, report.errors) == (13, [])
    assert col.search(image=odd, k=1)[0].path == str(odd)
    col.close()

    found = runner.invoke(app, ["search", "--image", str(odd), "-k", "1", "--json", "-c", col_dir])
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)[0]["path"] == shown(str(odd)) == str(image_dir) + "/caf\\xe9.png"
    table = runner.invoke(app, ["search", "--image", str(odd), "-k", "1", "-c", col_dir])
    assert "caf\\xe9.png" in table.stdout
    removed = runner.invoke(app, ["remove", str(odd), "-c", col_dir])
    assert removed.exit_code == 0 and "1 file removed" in removed.stdout
    info = runner.invoke(app, ["info", "--json", "-c", col_dir])
    stats = json.loads(info.stdout)["stats"]
    assert (stats["files"], stats["excluded"]) == (12, [shown(str(odd))])


def test_collections_with_text_paths_are_migrated_on_open(tmp_path, image_dir, hash_encoder):
    col_dir = tmp_path / "col"
    glimpse.open(col_dir, encoder=hash_encoder).index([image_dir]).embedded
    with sqlite3.connect(col_dir / "metadata.sqlite") as db:  # as collections stored paths before
        db.execute("UPDATE files SET path = CAST(path AS TEXT)")
        db.execute("PRAGMA user_version = 0")
    col = glimpse.open(col_dir)
    path = str(image_dir / "img04.png")
    assert col.search(image=path, k=1)[0].path == path
    assert col.index().unchanged == 12  # every file still recognised, none re-read
    assert col.remove([path]) == 1 and col.stats().files == 11


def test_a_removal_under_an_indexed_folder_sticks_until_added_again(collection_uri, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.index([image_dir])
    private = image_dir / "sub"
    assert col.remove([private]) == 4
    assert col.stats().excluded == [str(private)]
    assert col.index().indexed == 0 and col.stats().files == 8  # plain re-index: still out
    assert col.index([image_dir]).indexed == 0  # re-indexing the folder keeps the removal
    assert col.add([private]).indexed == 4  # naming it again brings it back
    assert col.stats().excluded == [] and col.index().unchanged == 12


def test_removing_an_indexed_folder_forgets_the_folder(collection_uri, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.index([image_dir])
    col.remove([image_dir])
    assert (col.stats().roots, col.stats().excluded, len(col)) == ([], [], 0)
    with pytest.raises(ValueError, match="no folders"):
        col.index()


def test_scan_options_of_the_first_index_are_remembered(collection_uri, image_dir, hash_encoder):
    col_dir = collection_uri
    first = runner.invoke(app, ["index", str(image_dir), "-c", col_dir, "--encoder", "hash", "--exclude", "sub"])
    assert first.exit_code == 0 and "8 indexed" in first.stdout
    again = runner.invoke(app, ["index", "-c", col_dir])
    assert "0 indexed, 8 unchanged" in again.stdout and "removed" not in again.stdout
    named = runner.invoke(app, ["index", str(image_dir), "-c", col_dir])  # no options: the folder's own
    assert "0 indexed, 8 unchanged" in named.stdout
    assert "--exclude sub" in runner.invoke(app, ["info", "-c", col_dir]).stdout
    changed = runner.invoke(app, ["index", str(image_dir), "-c", col_dir, "--include", "*.png"])
    assert "4 indexed, 8 unchanged" in changed.stdout  # new options replace the remembered ones


def test_an_interrupted_first_index_leaves_its_folder_known(collection_uri, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        col.index([image_dir], batch_size=4, exclude=["img00.png"], progress=interrupt)
    col.close()
    col = glimpse.open(collection_uri)
    report = col.index()  # the folder, with its options
    assert (report.embedded, report.unchanged, len(col)) == (7, 4, 11)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_link_loops_dangling_links_and_fifos_are_listed_with_reasons(tmp_path, collection_uri, image_dir, hash_encoder):
    (image_dir / "loop.jpg").symlink_to(image_dir / "loop.jpg")
    (image_dir / "dangling.png").symlink_to(tmp_path / "missing.png")
    os.mkfifo(image_dir / "sub" / "pipe.jpg")
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    report = col.index([image_dir])
    reasons = {os.path.basename(p): r for p, r in report.errors}
    assert reasons == {
        "loop.jpg": "symbolic link loop (the link leads back to itself)",
        "dangling.png": "dangling symbolic link (its target does not exist)",
        "pipe.jpg": "not a regular file (a FIFO: never opened)",
    }
    assert {os.path.basename(e.path) for e in col.errors()} == set(reasons)
    assert (report.embedded, report.skipped) == (12, 3)
    generation = col._meta.generation()
    again = col.index()
    assert (again.embedded, again.errors, again.skipped, again.unchanged) == (0, [], 3, 12)
    assert col._meta.generation() == generation  # nothing rewritten
    (image_dir / "dangling.png").unlink()  # gone: its line goes too
    assert col.index().removed == 1 and len(col.errors()) == 2


def test_a_name_copied_as_shown_removes_the_file(collection_uri, image_dir, make_image):
    odd = make_image(image_dir / LATIN1, seed=50)
    col_dir = collection_uri
    runner.invoke(app, ["index", str(image_dir), "-c", col_dir, "--encoder", "hash"])
    listed = json.loads(runner.invoke(app, ["search", "--image", str(odd), "-k", "1", "--json", "-c", col_dir]).stdout)
    removed = runner.invoke(app, ["remove", listed[0]["path"], "-c", col_dir])  # "…/caf\xe9.png" as text
    assert "1 file removed" in removed.stdout
    assert glimpse.open(col_dir).stats().excluded == [str(odd)]


def test_a_mistyped_path_is_not_remembered_as_a_removal(collection_uri, image_dir, hash_encoder):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.index([image_dir])
    with pytest.raises(ValueError, match="not in this collection: .*no-such-photo.jpg"):
        col.remove([image_dir / "no-such-photo.jpg"])
    assert col.stats().excluded == []


def test_a_folder_unreadable_for_a_while_is_listed_and_keeps_its_files(collection_uri, image_dir, hash_encoder, monkeypatch):
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.index([image_dir])
    scan_module = importlib.import_module("glimpse.ingest.scan")
    real = os.scandir

    def scandir(path):
        if str(path) == str(image_dir / "sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(scan_module.os, "scandir", scandir)
    report = col.index()
    assert report.removed == 0 and col.stats().files == 12
    assert report.errors == [(str(image_dir / "sub"), "cannot read folder: permission denied")]
    monkeypatch.undo()
    assert col.index().unchanged == 12 and col.stats().errors == 0


@pytest.mark.parametrize("concurrent", [1, 2])
def test_content_that_leaves_one_file_and_comes_back_in_a_later_batch_is_indexed(collection_uri, image_dir,
                                                                                 make_image, hash_encoder, concurrent):
    # A later file of the run held the content while it was decoded, so it was not decoded; the
    # commit of the changed file then dropped that content's item while the batches after it were
    # already planned (and encoding): they must be planned again, and the later file not lost.
    hash_encoder.concurrent_batches = concurrent
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    make_image(image_dir / "a.png", seed=50)
    col.index([image_dir])
    old_content = (image_dir / "a.png").read_bytes()
    make_image(image_dir / "a.png", seed=51)
    os.utime(image_dir / "a.png", ns=(1, 10**18))
    make_image(image_dir / "m.png", seed=52)
    (image_dir / "z.png").write_bytes(old_content)
    report = col.index([image_dir], batch_size=1)
    assert (report.errors, report.embedded) == ([], 3)
    assert col.stats().images == 15  # 12 + m.png + a.png's new content + its old one, now z.png's
    for name in ("a.png", "m.png", "z.png"):
        assert col.search(image=image_dir / name, k=1)[0].path == str(image_dir / name)


def test_batches_encoded_at_once_land_in_their_own_rows(collection_uri, image_dir, hash_encoder):
    hash_encoder.concurrent_batches = 2
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    seen = []
    report = col.index([image_dir], batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert (report.embedded, report.errors) == (12, [])
    assert seen == [(n, 12) for n in range(2, 13, 2)]  # one step per committed batch, in order
    for path in sorted(image_dir.rglob("*.png")):
        top = col.search(image=path, k=1)[0]
        assert (top.path, round(top.score, 2)) == (str(path), 1.0)
