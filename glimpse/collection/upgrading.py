"""The collection's side of an encoder upgrade (:mod:`glimpse.upgrade` runs it): following a
switch made by any process, re-reading the rows a backfill rewrote, and the files it owns."""

from __future__ import annotations

import threading

import numpy as np

from ..encoders import Encoder, create_encoder
from ..query.build import Query, QuerySources, build_query
from ..query.request import SearchRequest
from ..storage import VectorStore
from ..upgrade import state as upgrade_state
from ..upgrade.dual import DualSpace, NoOldVector, QueryScores, ThroughMap, calibration_items, same_text_space
from ..upgrade.maps import SpaceMap
from .layout import VECTORS_NAME


class Upgrading:
    #: How a backfill under way scores queries: ``dual`` (items there before the switch in the old
    #: space, or through the map as at the switch, until the finish, see :mod:`glimpse.upgrade.dual`)
    #: or ``map`` (every item in the new space, through its vector now: mapped until re-embedded).
    _upgrade_scoring = "dual"
    #: False where the search index outside this folder holds the vectors at the old encoder's
    #: dimensions (Milvus): upgrades are refused there.
    _upgrades_in_place = True
    _dual: tuple[tuple, DualSpace | None] | None = None  # (the state it was built for, it)
    #: (the upgrade's order file, the old encoder, whether its text vectors are the new encoder's, the map's scorer)
    _old_side: tuple[str, Encoder | None, bool, ThroughMap] | None = None
    _old_side_lock = threading.Lock()

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
        their mapped vectors until the backfill re-embeds them (every query scores the images there
        before the switch by their old vectors, or through the map as at the switch, until the
        finish, see :mod:`glimpse.upgrade.dual`) (about ``backfill`` more this run,
        whole batches; None: all), in ``order`` (``uncertain``: worst-mapped batches first, or
        ``random``), in the batches a fresh index with ``batch_size`` would use. New images go
        straight to the new encoder. When every image is re-embedded, codes are re-fitted and
        the old vectors dropped (unless ``finish=False``). ``sample_seed`` seeds the sample, the
        map's cross-validation folds, the views and the random order. Without ``encoder``, resumes the upgrade
        under way; ``abort=True`` returns to the old encoder. Model options (``encoder_options``) go with an
        encoder's name; beside an :class:`Encoder`, with an abort, or other than an upgrade under way's own,
        they are refused. See :mod:`glimpse.upgrade`.
        """
        from ..upgrade import upgrade

        if not self._upgrades_in_place:
            raise ValueError("a Milvus collection cannot change its encoder in place yet (Milvus holds its vectors at "
                             "the old encoder's dimensions): index the photos into a new collection with the new encoder")
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
        if not len(rewritten):  # no upgrade under way (intersect1d would import numpy.ma: 0.05 s of a cold search)
            return
        rewritten = np.intersect1d(rewritten, self._live)
        if len(rewritten):
            self._index.remove(rewritten)
            self._index.add(rewritten, self._vectors.read(rewritten, self._rows))

    def _dual_space(self, request: SearchRequest) -> DualSpace | None:
        """Both spaces, for any query while a backfill leaves items waiting; else None."""
        if self._upgrade_scoring != "dual":
            return None
        meta = self._meta.get_meta() if self._encoder_facts["backfill"] is not None else {}  # as of the last sync
        if not upgrade_state.switched(meta):
            self._dual = self._old_side = None  # the old encoder's memory goes with the upgrade
            return None
        state = upgrade_state.active(meta)
        key = (state["order"], int(state["done"]), int(meta.get("generation", 0)))
        if self._dual is None or self._dual[0] != key:
            try:
                self._dual = (key, self._dual_at())
            except FileNotFoundError:  # the upgrade finished or was aborted meanwhile: its files are gone
                return None
        return self._dual[1]

    def _dual_at(self) -> DualSpace | None:
        meta, table = self._meta.snapshot()
        state = upgrade_state.active(meta)
        if not upgrade_state.switched(meta):
            return None
        order = upgrade_state.read_order(self.path, state)
        pending = np.intersect1d(order[int(state["done"]):], table[:, 0])
        if not len(pending):  # every vector is real: the new space alone
            return None
        old_encoder, same_text, through_map = self._old_side_of(state)
        rows = int(meta.get("rows", 0))
        old, new = (VectorStore(self.path / state[side]["vectors"], int(state[side]["dim"])) for side in ("old", "new"))
        for store in (old, new):
            store.locate(store.path, table[:, 0], table[:, 1])
        old_rows = min(rows, old.nbytes() // (old.dim * np.dtype(old.DTYPE).itemsize))  # none for items added since
        sample = calibration_items(order[: int(state["done"])], table[:, 0])
        reembedded = np.intersect1d(order[: int(state["done"])], table[:, 0])
        return DualSpace(old_encoder, old, old_rows, pending, reembedded, np.setdiff1d(table[:, 0], order), sample,
                         old.read(sample, old_rows), new.read(sample, rows), through_map, same_text=same_text)

    def _old_side_of(self, state: dict) -> tuple[Encoder | None, bool, ThroughMap]:
        """What the upgrade's searches keep from the old side, built once (a model load) until the upgrade
        ends: the old encoder (None where it cannot be built any more, its weights gone, say: queries then
        score through the map), whether it shares the new encoder's text vectors
        (:func:`~glimpse.upgrade.dual.same_text_space`), and the map's scorer."""
        with self._old_side_lock:
            if self._old_side is None or self._old_side[0] != state["order"]:
                old = state["old"]
                try:
                    encoder = create_encoder(old["encoder"], **(old["encoder_options"] or {}))
                except (ValueError, OSError, ImportError):
                    encoder = None
                self._old_side = (state["order"], encoder, encoder is not None and same_text_space(encoder, self.encoder),
                                  ThroughMap(SpaceMap.load(self.path / state["map"])))
            return self._old_side[1:]

    def _scored_in_both(self, dual: DualSpace, request: SearchRequest, terms, query: Query,
                        text_map) -> QueryScores:
        """``query``'s scores for the images there before the switch: built again in the old space where it
        can be (old encoder, old vectors), else through the map (:mod:`glimpse.upgrade.dual`). The reference
        image of a composed query or an image term is found by its content in either build, and left out."""
        old_query = None
        if dual.same_text and query.text_only and text_map is None:  # the same text vectors in both spaces
            old_query = query.vector
        elif query.kind != "vector" and (dual.encoder is not None or query.kind == "item"):
            try:
                built = build_query(dual.encoder, QuerySources(dual.old_vector, dual.item_with_old(self._item_for_hash)),
                                    text=request.text, image=request.image, like=request.like, terms=terms,
                                    alpha=request.alpha)
                old_query = built.vector
                query.exclude |= built.exclude
            except NoOldVector:  # an item added since the switch
                pass
        return dual.scorer(query.vector, old_query)

    def _upgrading(self) -> bool:
        return upgrade_state.active(self._meta.get_meta()) is not None

    def _upgrade_files(self) -> set[str]:
        return upgrade_state.owned_files(self._meta.get_meta())

    def _upgrade_summary(self, meta: dict) -> dict | None:
        return upgrade_state.summary(self.path, meta, self._live)
