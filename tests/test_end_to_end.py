"""The whole path with the real default encoder on real photos (scikit-image's samples)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

import glimpse
from glimpse.demo import write_samples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder():
    from glimpse.encoders import create_encoder

    return create_encoder()


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return write_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def collection(tmp_path_factory, samples, encoder):
    col = glimpse.open(tmp_path_factory.mktemp("col") / "demo", encoder=encoder)
    report = col.index([samples[0].parent])
    assert report.embedded == len(samples) and not report.errors
    return col


@pytest.mark.parametrize("text, expected", [("a cat", "chelsea"), ("a cup of coffee", "coffee")])
def test_text_query_ranks_the_right_photo_first(collection, text, expected):
    top = collection.search(text=text, k=3)
    assert top[0].path.rsplit("/", 1)[-1].split(".")[0] == expected, top


@pytest.mark.parametrize("name", ["chelsea", "coffee", "rocket", "astronaut", "motorcycle"])
def test_image_query_finds_its_cropped_reencoded_copy_first(collection, samples, name):
    original = next(p for p in samples if p.stem == name)
    image = Image.open(original).convert("RGB")
    w, h = image.size
    copy = image.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w // 2, h // 2))
    buffer = io.BytesIO()
    copy.save(buffer, "JPEG", quality=60)
    top = collection.search(image=buffer.getvalue(), k=2)
    assert top[0].path == str(original)
    assert top[0].score > top[1].score


def test_bad_files_and_reindex_with_the_real_encoder(tmp_path, samples, encoder, monkeypatch):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in samples[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "zero.jpg").write_bytes(b"")
    jpeg = samples[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "text.jpg").write_text("a text file, not a picture")
    Image.new("1", (20_000, 20_000)).save(folder / "bomb.png")

    encoded = []
    real = encoder.encode_prepared
    monkeypatch.setattr(encoder, "encode_prepared", lambda batch: encoded.append(len(batch)) or real(batch))
    col = glimpse.open(tmp_path / "col", encoder=encoder)
    report = col.index([folder])
    assert report.embedded == 3 and sum(encoded) == 3
    reasons = {e.path.rsplit("/", 1)[-1]: e.reason for e in col.errors()}
    assert set(reasons) == {"zero.jpg", "truncated.jpg", "text.jpg", "bomb.png"}
    assert all(reasons.values())

    again = col.index([folder])
    assert sum(encoded) == 3  # nothing reached the model the second time
    assert (again.embedded, again.unchanged, again.skipped) == (0, 3, 4)
