"""A collection's files damaged or held open: a vector file cut short under a running process
is an error, not a crash (SIGBUS); a CLI command leaves no file of the collection open."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app

# Run in a child process: before the fix, reading the memory map past the file's new end
# killed the process (SIGBUS), which would take pytest down with it.
CUT_SHORT = textwrap.dedent("""
    import os, sys
    import numpy as np
    from fastapi.testclient import TestClient
    import glimpse
    from glimpse.server import create_app

    folder, codes = sys.argv[1], sys.argv[2] == "codes"
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    col = glimpse.open(folder, encoder="precomputed", dim=16)
    ids = col.add_vectors(x, [f"k{i}" for i in range(300)])
    if codes:
        col.use_codes()
    with TestClient(create_app(col)) as client:
        assert col.search(like=int(ids[5]), k=3) and col.search(vector=x[0], k=3)  # the file is mapped
        os.truncate(os.path.join(folder, "vectors.f16"), 0)
        for query in ({"like": int(ids[5])}, {"vector": x[0]}):
            try:
                col.search(k=3, **query)
                print("api: answered")
            except OSError as exc:
                print("api:", exc)
            answer = client.post("/api/search", json={**query, "vector": x[0].tolist()} if "vector" in query else query)
            print("http:", answer.status_code, answer.json().get("error", "answered"))
""")


def _search_cut_short(folder: Path, codes: bool) -> list[str]:
    done = subprocess.run([sys.executable, "-c", CUT_SHORT, str(folder), "codes" if codes else "plain"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return done.stdout.splitlines()


def test_a_vector_file_cut_short_under_an_open_collection_is_an_error_not_a_crash(tmp_path):
    like, like_http, by_vector, by_vector_http = _search_cut_short(tmp_path / "col", codes=False)
    said = "the vector file was truncated or replaced"
    # more-like-this reads the item's vector from the file: a clean error, HTTP 503
    assert like.startswith(f"api: {said}: ") and like.endswith(" holds 0 vectors but the metadata references 300")
    assert like_http.startswith(f"http: 503 the collection cannot be read: {said}: ")
    # a search by vector reads only the in-memory index: still answered
    assert (by_vector, by_vector_http) == ("api: answered", "http: 200 answered")


def test_a_re_rank_from_a_vector_file_cut_short_is_an_error_not_a_crash(tmp_path):
    lines = _search_cut_short(tmp_path / "col", codes=True)
    said = "the vector file was truncated or replaced"
    assert len(lines) == 4 and all(said in line for line in lines), lines
    assert [line.split()[1] for line in lines if line.startswith("http:")] == ["503", "503"]


def _open_files_under(folder: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:  # the fd of the listing itself, closed by now
            continue
    return sorted(t for t in targets if t.startswith(str(folder.resolve())))


def test_cli_commands_leave_no_file_of_the_collection_open(tmp_path, image_dir):
    runner = CliRunner()
    col = tmp_path / "col"
    np.save(tmp_path / "v.npy", np.eye(3, 8, dtype=np.float32))
    for command in (["index", str(image_dir), "--encoder", "hash"], ["search", "red"], ["info"],
                    ["search", "--like", "1"], ["remove", str(image_dir)]):
        result = runner.invoke(app, [*command, "-c", str(col)])
        assert result.exit_code == 0, (command, result.output)
        assert _open_files_under(col) == [], command
    result = runner.invoke(app, ["import-vectors", str(tmp_path / "v.npy"), "-c", str(tmp_path / "imported")])
    assert result.exit_code == 0, result.output
    assert _open_files_under(tmp_path / "imported") == []


def test_a_closed_collection_holds_no_file_open(tmp_path):
    x = np.eye(3, 8, dtype=np.float32)
    col = glimpse.open(tmp_path / "col", encoder="precomputed", dim=8)
    ids = col.add_vectors(x, ["a", "b", "c"])
    assert col.search(like=int(ids[0]), k=1)  # reads the vector file through its memory map
    col.close()  # still referenced: close itself must let go of every file
    assert _open_files_under(tmp_path / "col") == []
