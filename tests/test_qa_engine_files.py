"""A collection's .npz/.npy files (caption adaptation, binarizer, upgrade order and maps) are checked when
read: a damaged one is one sentence naming it and what to do (an OSError: CLI exit 2, server 503), or,
for derived codes, fitted again; never numpy's or zipfile's traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.storage.arrays import DamagedFileError
from glimpse.upgrade.state import active

WORDS = ["cat", "dog", "boat", "tree", "car", "bird", "house", "road", "beach", "cake",
         "lamp", "chair", "train", "flower", "horse", "clock", "bridge", "snow", "fish", "kite", "moon", "apple"]


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"cut": data[: len(data) // 2], "empty": b"", "garbage": b"\x00\xff" * 300,
                      "flipped": data[:60] + bytes(b ^ 0x5A for b in data[60:-200]) + data[-200:]}[how])


@pytest.fixture
def captioned(tmp_path: Path, make_image) -> tuple[Path, Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, word in enumerate(WORDS):
        make_image(folder / f"p{i:02d}.png", seed=100 + i)
        (folder / f"p{i:02d}.png.txt").write_text(f"a photo of the {word} at dusk")
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.index([folder], batch_size=4)
    return tmp_path / "col", folder


@pytest.mark.parametrize("how", ["cut", "empty", "garbage", "flipped"])
def test_a_damaged_adaptation_is_one_sentence_and_removable(captioned, how):
    where, _ = captioned
    with glimpse.open(where) as col:
        col.adapt(holdout=0)
        damage(where / col.settings().adapt["file"], how)
    with glimpse.open(where) as col:  # BadZipFile, EOFError or numpy's pickle advice before
        with pytest.raises(DamagedFileError, match="is damaged .*glimpse adapt --remove"):
            col.search(text="the cat", k=3)
    result = CliRunner().invoke(app, ["search", "the cat", "-c", str(where)])
    assert result.exit_code == 2 and "Traceback" not in result.output and "is damaged" in " ".join(result.output.split())
    assert CliRunner().invoke(app, ["adapt", "--remove", "-c", str(where)]).exit_code == 0
    with glimpse.open(where) as col:
        assert len(col.search(text="the cat", k=3)) == 3


@pytest.mark.parametrize("how", ["cut", "flipped"])
def test_a_damaged_binarizer_is_fitted_again(tmp_path, make_image, how):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(40):
        make_image(folder / f"p{i:02d}.png", seed=i)
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.use_codes("sign", bits=64)
        col.index([folder], batch_size=8)
        fitted = col.settings().codes.file
    damage(tmp_path / "col" / fitted, how)  # a truncated one was a BadZipFile traceback
    with glimpse.open(tmp_path / "col") as col:
        assert len(col.search(text="a photo", k=5)) == 5
        make_image(folder / "new.png", seed=99)
        col.index([folder], batch_size=8)
        assert len(col.search(text="a photo", k=5)) == 5


@pytest.mark.parametrize("which", ["order", "map"])
def test_a_damaged_upgrade_file_is_one_sentence(captioned, which):
    where, _ = captioned
    with glimpse.open(where) as col:
        col.upgrade("hash", dim=32, sample=4, backfill=0, finish=False, batch_size=4)
        damage(where / active(col._meta.get_meta())[which], "cut")
    with glimpse.open(where) as col:
        with pytest.raises(DamagedFileError, match="is damaged .*glimpse upgrade --abort"):
            col.search(text="the cat", k=3)
    result = CliRunner().invoke(app, ["search", "the cat", "-c", str(where)])
    assert result.exit_code == 2 and "Traceback" not in result.output and "is damaged" in " ".join(result.output.split())
