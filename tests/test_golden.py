"""The same queries on real photos give the same ids and scores as the fixture recorded.

tests/golden/make_golden.py holds the queries (text, image, composed, filtered, terms,
more-like-this, refined; codes off, on with each scoring, exact, without re-rank) and wrote
tests/golden/captioned_dev.json from the code before the search path was restructured.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("make_golden", Path(__file__).with_name("golden") / "make_golden.py")
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)

pytestmark = pytest.mark.slow  # the real default encoder, and a binarizer fit


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, list[list]]:
    if not (make_golden.SHARED / "images").is_dir():
        pytest.skip(f"needs the shared development photos at {make_golden.SHARED} (see the README)")
    return make_golden.run(tmp_path_factory.mktemp("golden"))


def test_every_query_of_the_fixture_is_run(results):
    assert set(results) == set(json.loads(make_golden.FIXTURE.read_text()))


@pytest.mark.parametrize("name", sorted(json.loads(make_golden.FIXTURE.read_text())))
def test_same_ids_and_scores_as_recorded(results, name):
    want = json.loads(make_golden.FIXTURE.read_text())[name]
    got = results[name]
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4)
