"""`glimpse eval copydetect --per-image` is bounded: 100,000 ran forever."""

from __future__ import annotations

from typer.testing import CliRunner

from glimpse.cli import app
from glimpse.eval.augment import MAX_PER_IMAGE


def test_per_image_past_the_bound_is_refused_at_once(tmp_path, make_image):
    (tmp_path / "p").mkdir()
    make_image(tmp_path / "p" / "a.png", seed=0)
    for count in (0, MAX_PER_IMAGE + 1, 100_000):
        result = CliRunner().invoke(app, ["eval", "copydetect", str(tmp_path / "p"), "--per-image", str(count),
                                          "--encoder", "hash", "--out", str(tmp_path / "out")])
        assert result.exit_code == 2, result.output
        assert f"per_image (--per-image) must be from 1 to {MAX_PER_IMAGE} edited copies per image" in result.output
        assert f"got {count}" in result.output
