"""Binary-code settings of a collection: fitting the binarizer on the collection's own vectors,
re-fitting as it grows, switching codes on and off; every change is one metadata commit."""

from __future__ import annotations

import logging

import numpy as np

from ..codes import DEFAULT_BINARIZER, Binarizer, create_binarizer, default_bits, load_binarizer
from ..backends.binary import BINARIZER_FILE
from ..settings import CodeSettings, check_callback
from .reports import ProgressFn

log = logging.getLogger(__name__)


class CodeStages:
    """``use_codes`` and the fits behind it."""

    def use_codes(self, binarizer: str | None = DEFAULT_BINARIZER, bits: int | None = None,
                  oversample: int | None = None, seed: int = 0,
                  scoring: str = "auto", rerank: bool = True, progress: ProgressFn | None = None) -> None:
        """Search through compact codes (code scan, then exact float re-rank).

        ``binarizer`` picks the codes: ``ivf-rabitq`` (the default: coarse lists and RaBitQ
        residual codes, see :mod:`glimpse.backends.ivfcodes`), ``learned``, ``itq`` or ``sign``
        (one binary code per image, see :mod:`glimpse.backends.binary`); ``bits`` and
        ``oversample`` default per kind (:func:`glimpse.codes.default_bits`).

        The binarizer is fitted on the collection's own vectors now, or at the end of the
        next ``add``/``index`` when there are too few of them yet, and re-fitted when the
        collection has doubled since, or (``ivf-rabitq``) when the rows added since lie further
        outside the fit's projection than its own did; the settings record why
        (``fit_reason``). ``scoring`` picks how the codes are scanned (see
        :mod:`glimpse.backends.binary`): ``hamming``, ``cascade`` (Hamming, then the float query
        against the codes), ``asymmetric`` (float query against every code), or ``auto``:
        asymmetric for text queries, whose codes would be far from every image's, cascade
        for the rest. Without
        ``rerank``, results keep their code scores and the float vectors are never read.
        Each of these can be changed per query in :meth:`search`. ``binarizer=None`` (or
        ``"none"``) switches codes off: exact float search.

        Every option is checked first (ValueError). The settings change in one commit, after
        the new binarizer is fitted and saved: an interrupted change leaves the old settings,
        whole. ``progress`` gets (steps done, steps) while a binarizer fits, then (rows coded, rows) as
        the codes are built.
        """
        check_callback("progress", progress)
        if binarizer is None or binarizer == "none":
            with self._lock:
                self._meta.delete_meta("codes")
                self._index = None
                self._drop_stale_fits(None)
            return
        if bits is None and isinstance(binarizer, str):
            bits = default_bits(binarizer, self.encoder.dim)
        settings = CodeSettings(binarizer, bits, oversample, seed, scoring, rerank).validate(self.encoder.dim)
        with self._lock:
            current = self._code_settings()
            if current is not None and current.same_codes(settings) and self._binarizer(current) is not None:
                settings = settings.keeping_fit(current)  # no need to re-fit
            self._fit_codes(settings, progress)
            self._persist_index()

    def _code_settings(self) -> CodeSettings | None:
        return self.settings().codes

    def _binarizer(self, settings: CodeSettings | None) -> Binarizer | None:
        """The fitted binarizer ``settings`` name, if its file holds that very fit."""
        if settings is None or settings.file is None:
            return None
        try:
            binarizer = load_binarizer(self.path / settings.file)
        except (FileNotFoundError, ValueError):  # deleted by a newer fit, or damaged: not usable
            return None
        if binarizer.dim != self.encoder.dim or settings.fit not in (None, binarizer.fit_id):
            return None
        return binarizer

    def _fit_codes(self, settings: CodeSettings | None = None, progress: ProgressFn | None = None) -> None:
        """Fit (or re-fit) the binarizer when it is due, then switch the settings to it.

        Under the write lock. ``settings``: new settings to store (default: the stored ones).
        The binarizer file (named by its fit id) is durable before the one metadata commit
        that names it, and other fits' files go only after that commit, so a kill at any
        moment leaves settings whose binarizer is on disk. Codes are derived state: codes of
        another fit are never scanned, and missing ones are rebuilt from the vector file.
        """
        stored = self._code_settings()
        settings = settings or stored
        if settings is None:
            self._drop_stale_fits(None)  # codes switched off by a change that was killed halfway
            return
        self._sync()
        binarizer = create_binarizer(settings.binarizer, bits=settings.bits, seed=settings.seed)
        pool = self._fit_pool()
        enough = len(pool) >= binarizer.min_fit_vectors(self.encoder.dim)
        fitted = self._binarizer(settings) is not None
        reason = self._fit_reason(settings, stored, fitted, len(pool)) if enough else None
        if reason is not None:
            rng = np.random.default_rng(settings.seed)
            sample = np.sort(rng.choice(pool, size=min(len(pool), 100_000), replace=False))
            binarizer.fit(self._read_vectors(sample), progress, population=len(pool))
            name = BINARIZER_FILE.format(fit=binarizer.fit_id)
            binarizer.save(self.path / name)
            settings = settings.fitted(binarizer.fit_id, name, len(pool), reason)
            log.info("%s: %s codes fitted on %d images: %s", self.location, settings.binarizer, len(pool), reason)
        elif not fitted:
            settings = settings.unfitted()  # too few images yet: exact float search meanwhile
        if settings != stored:
            self._meta.set_meta(codes=settings.to_meta())
        if settings.file is not None:
            self._ensure_index(progress)  # this fit's codes, to persist for the current generation
        self._drop_stale_fits(settings)

    def _fit_reason(self, settings: CodeSettings, stored: CodeSettings | None, fitted: bool, images: int) -> str | None:
        """Why the binarizer is (re-)fitted now on ``images``, or None: no fit is due. Codes with no
        usable fit are fitted; a fit is redone when the collection has doubled since, or when the
        loaded codes of that very fit find the rows held no longer like those it was fitted on
        (:meth:`~glimpse.backends.SearchBackend.refit_reason`: checked after every write, from what
        the index already holds)."""
        if not fitted:
            return "first fit of these codes" if settings.fit is None else "the fit's file was missing or damaged"
        if images >= 2 * settings.fitted_on:
            return f"the collection doubled since the last fit ({settings.fitted_on:,} images then)"
        if stored is not None and stored.fit == settings.fit:
            return self._ensure_index().refit_reason()
        return None

    def _fit_pool(self) -> np.ndarray:
        """Ids of the images a fit counts and samples (a Milvus collection: every worker's)."""
        return self._live

    def _drop_stale_fits(self, settings: CodeSettings | None) -> None:
        """Binarizer and codes files the committed settings do not name."""
        keep = settings.file if settings is not None else None
        for old in self.path.glob("binarizer*.npz"):
            if old.name != keep:
                old.unlink(missing_ok=True)
        for half_written in [*self.path.glob(".binarizer*.tmp"), *self.path.glob(".codes-*.tmp")]:  # killed saves
            half_written.unlink(missing_ok=True)
        if keep is None:
            for old in [*self.path.glob("codes-*.faissbin"), *self.path.glob("codes-*.delta")]:
                old.unlink(missing_ok=True)
