"""The same queries on real photos give the same ids and scores as the fixture recorded.

tests/golden/make_golden.py holds the queries (text, image, composed, filtered, terms,
more-like-this, refined; codes off, on with each scoring, exact, without re-rank) and wrote
tests/golden/captioned_dev.json (first from the code before the search path was restructured; recorded
again on an AVX2 machine, whose bf16 vectors differ from the first machine's, with probe.json beside it; the
code queries recorded again with `sign` codes, whose fit is the same on every CPU, where the `learned` fit's
torch training gave other codes on an Intel Xeon than on the AMD EPYC that recorded them).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("make_golden", Path(__file__).with_name("golden") / "make_golden.py")
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)

pytestmark = pytest.mark.slow  # the real default encoder, and a binarizer fit


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, list[list]]:
    if not (make_golden.SHARED / "images").is_dir():
        pytest.skip(f"needs the shared development photos at {make_golden.SHARED} (see the README)")
    recorded = np.array(json.loads(make_golden.PROBE.read_text()))
    if (gap := np.abs(np.array(make_golden.probe()) - recorded).max()) > 1e-5:
        pytest.skip(f"this CPU's {make_golden.PRECISION} image vectors differ from the recording machine's by up to "
                    f"{gap:.1e}: the fixture checks the search path on that machine's numerics")
    return make_golden.run(tmp_path_factory.mktemp("golden"))


def test_every_query_of_the_fixture_is_run(results):
    assert set(results) == set(json.loads(make_golden.FIXTURE.read_text()))


@pytest.mark.parametrize("name", sorted(json.loads(make_golden.FIXTURE.read_text())))
def test_same_ids_and_scores_as_recorded(results, name):
    want = json.loads(make_golden.FIXTURE.read_text())[name]
    got = results[name]
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4)
