"""`col.upgrade` never runs with other model options than the caller gave: options it cannot apply are refused."""

from __future__ import annotations

import pytest

from glimpse.encoders import create_encoder
from glimpse.upgrade.state import active
from test_qa_upgrade import B, col  # noqa: F401 - its fixture: 12 hash-encoded images in batches of B


def test_options_beside_an_encoder_instance_are_refused(col):
    # they were silently ignored: the upgrade ran with the instance's dim=32, not dim=48
    with pytest.raises(ValueError, match="model options \\(dim\\) go with an encoder's name"):
        col.upgrade(create_encoder("hash", dim=32), dim=48, batch_size=B)
    assert active(col._meta.get_meta()) is None and col.encoder.dim == 64


def test_options_or_an_encoder_with_an_abort_are_refused(col):
    col.upgrade("hash", dim=32, sample=4, backfill=0, finish=False, batch_size=B)
    for kwargs in ({"dim": 48}, {"encoder": "hash"}):
        with pytest.raises(ValueError, match="an abort returns to the old encoder"):
            col.upgrade(abort=True, **kwargs)
    assert active(col._meta.get_meta())["phase"] == "backfilling"
    assert col.upgrade(abort=True).phase == "aborted"


def test_other_options_when_resuming_a_backfill_are_refused(col):
    col.upgrade("hash", dim=32, sample=4, backfill=0, finish=False, batch_size=B)
    before = dict(active(col._meta.get_meta()))
    with pytest.raises(ValueError, match="its own model options"):  # was ignored: the backfill went on at dim 32
        col.upgrade(dim=48, batch_size=B)
    with pytest.raises(ValueError, match="its own model options"):
        col.upgrade("hash", seed=5, batch_size=B)
    assert active(col._meta.get_meta()) == before
    assert col.upgrade("hash", dim=32, batch_size=B).phase == "finished"  # its own options are fine
    assert col.encoder.dim == 32
