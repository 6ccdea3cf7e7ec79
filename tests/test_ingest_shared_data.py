"""Real photos: index part of ../shared/data/captioned-dev (when present) and find copies of them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

import glimpse

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "captioned-dev"


@pytest.fixture
def real_photos(tmp_path: Path) -> list[Path]:
    if not (SHARED / "images").is_dir():
        pytest.skip(f"needs the shared development photos at {SHARED} (see the README)")
    folder = tmp_path / "real"
    folder.mkdir()
    photos = sorted((SHARED / "images").glob("*.jpg"), key=lambda p: int(p.stem))[:50]
    for photo in photos:  # links, not copies: the photos stay where they are
        (folder / photo.name).symlink_to(photo)
    return sorted(folder.iterdir())


def test_real_photos_are_indexed_and_each_reencoded_copy_finds_its_original(tmp_path, real_photos, hash_encoder):
    # The hash encoder keeps this fast; the default encoder's quality is measured in the README.
    col = glimpse.open(tmp_path / "col", encoder=hash_encoder)
    report = col.index([real_photos[0].parent])
    assert (report.embedded, report.errors) == (50, [])
    for photo in real_photos:
        with Image.open(photo) as im:
            copy = im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4))
        buf = io.BytesIO()
        copy.save(buf, "JPEG", quality=60)
        assert col.search(image=buf.getvalue(), k=1)[0].path == str(photo)
