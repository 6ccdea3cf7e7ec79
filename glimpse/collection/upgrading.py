"""The collection's side of an encoder upgrade (:mod:`glimpse.upgrade` runs it): following a
switch made by any process, re-reading the rows a backfill rewrote, and the files it owns."""

from __future__ import annotations

import numpy as np

from ..encoders import Encoder, create_encoder
from ..storage import VectorStore
from ..upgrade import state as upgrade_state
from .layout import VECTORS_NAME


class Upgrading:
    def upgrade(
        self,
        encoder: str | Encoder | None = None,
        *,
        sample: int = 1000,
        backfill: int | None = None,
        finish: bool = True,
        abort: bool = False,
        order: str = "uncertain",
        sample_seed: int = 0,
        batch_size: int = 32,
        workers: int = 2,
        progress=None,
        **encoder_options,
    ):
        """Move the collection to another encoder without starting over; returns an
        :class:`~glimpse.upgrade.UpgradeReport`.

        A seeded ``sample`` of images is re-embedded with ``encoder`` (a registered name with
        its options, or an :class:`Encoder`), a map from the old space to the new one is fitted
        on it, and from then on every query runs in the new space: the other images through
        their mapped vectors until the backfill re-embeds them (about ``backfill`` more this run,
        whole batches; None: all), in ``order`` (``uncertain``: worst-mapped batches first, or
        ``random``), in the batches a fresh index with ``batch_size`` would use. New images go
        straight to the new encoder. When every image is re-embedded, codes are re-fitted and
        the old vectors dropped (unless ``finish=False``). ``sample_seed`` seeds the sample, the
        map's cross-validation folds, the views and the random order. Without ``encoder``, resumes the upgrade
        under way; ``abort=True`` returns to the old encoder. See :mod:`glimpse.upgrade`.
        """
        from ..upgrade import upgrade

        return upgrade(self, encoder, encoder_options, sample=sample, backfill=backfill, finish=finish, abort=abort,
                       policy=order, seed=sample_seed, batch_size=batch_size, workers=workers, progress=progress)

    def _follow_upgrade(self, meta: dict, encoder: Encoder | None = None) -> None:
        """Use the recorded encoder and vector file once an upgrade switched them (or an abort
        switched them back), perhaps in another process; ``encoder``: that encoder, built already.
        A finish drops the index too: rows rewritten since it last looked are no longer listed."""
        facts = upgrade_state.encoder_facts(meta)
        if facts == self._encoder_facts:
            return
        if encoder is not None or {**facts, "backfill": None} != {**self._encoder_facts, "backfill": None}:
            self.encoder = encoder or create_encoder(meta["encoder"], **(meta.get("encoder_options") or {}))
            self._vectors = VectorStore(self.path / (meta.get("vectors") or VECTORS_NAME), self.encoder.dim)
        self._encoder_facts, self._index, self._adapter, self._seen = facts, None, None, -1

    def _reread_rewritten(self) -> None:
        """Re-read into the loaded index the rows an upgrade's backfill rewrote since it last looked."""
        rewritten, self._rewrite_mark = upgrade_state.rewritten(self.path, self._meta.get_meta(), self._rewrite_mark)
        rewritten = np.intersect1d(rewritten, self._live)
        if len(rewritten):
            self._index.remove(rewritten)
            self._index.add(rewritten, self._vectors.read(rewritten, self._rows))

    def _upgrading(self) -> bool:
        return upgrade_state.active(self._meta.get_meta()) is not None

    def _upgrade_files(self) -> set[str]:
        return upgrade_state.owned_files(self._meta.get_meta())

    def _upgrade_summary(self, meta: dict) -> dict | None:
        return upgrade_state.summary(self.path, meta, self._live)
