"""Running an upgrade: sample, fit, switch, backfill, finish (or abort).

Every step is durable before the one metadata commit that makes it visible, so a kill at any
moment leaves a collection that opens and searches, and the next run resumes:

- sampling: a seeded sample is re-embedded with the new encoder into the new vector file
  (its items' rows), each batch committed as ``done``; the collection still answers in the
  old space meanwhile.
- the switch: maps old->new and new->old are fitted on the sample (:mod:`.maps`), every other
  item's old vector is mapped into the new file, the backfill order is saved, and one commit
  makes the new encoder and file the collection's. A kill before it redoes the (seeded) fit.
- backfilling: the rest is re-embedded batch by batch, each batch's rows overwritten and
  then committed. The model runs without the collection's write lock, which is taken only
  to write and commit a batch, so ``glimpse index`` can run meanwhile (its new images go
  straight to the new encoder) and the backfill waits for it.
- finishing: codes are re-fitted on the final vectors, then one commit drops the upgrade and
  the old file goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..encoders import Encoder, create_encoder
from ..encoders.precomputed import PRECOMPUTED
from ..backends.binary import CODES_FILE, DELTA_FILE
from ..storage import VectorStore, WriteLock
from ..storage.vectors import sums_path
from ..storage.lock import CollectionLockedError
from ..ingest import prepare_files
from ..ingest.scan import FileEntry
from ..settings import ScanOptions, check_callback, check_count, check_flag, check_ingest
from . import state as st
from .files import extend, save_order, unchanged, unfitted
from .maps import MapQuality, SpaceMap, fit_map
from .views import sample_pairs

#: Called with (images done, images to do) this run. The collection is passed in, not imported:
#: it imports this package (``col.upgrade``).
ProgressFn = Callable[[int, int], None]

#: Images re-embedded before the map is fitted (fewer when the collection holds fewer).
DEFAULT_SAMPLE = 1000
#: Backfill orders: ``uncertain`` re-embeds first the items whose mapped vectors the reverse
#: map brings back worst (a FastFill-style "least certain first"); ``random`` is seeded.
POLICIES = ("uncertain", "random")
DEFAULT_POLICY = "uncertain"
LOCK_NAME = "upgrade.lock"
#: How long a backfill batch waits between tries while another writer (an index run) holds the lock.
LOCK_RETRY_S = 0.2


@dataclass
class UpgradeReport:
    """Where one ``upgrade`` run left the collection."""

    phase: str  # sampling | backfilling | finished | aborted
    reembedded: int = 0  # images this run embedded with the new encoder
    done: int = 0  # images of the backfill order re-embedded so far (sample included)
    total: int = 0  # images in the order
    unreadable: int = 0  # images whose file could not be read again: they keep their mapped vectors
    quality: dict | None = None  # the map's cross-validated figures
    seconds: float = 0.0


def upgrade(col, encoder: str | Encoder | None, options: dict, *, sample: int, backfill: int | None,
            finish: bool, abort: bool, policy: str, seed: int, batch_size: int, workers: int,
            progress: ProgressFn | None) -> UpgradeReport:
    started = time.perf_counter()
    _check(sample, backfill, policy, seed, batch_size, workers)
    check_flag("finish", finish)
    check_flag("abort", abort)
    check_callback("progress", progress)
    _check_encoder_options(encoder, options, abort)
    with WriteLock(col.path / LOCK_NAME):  # one upgrade run at a time; the write lock is taken per step
        report = _Run(col, seed, batch_size, workers, progress).go(encoder, options, sample, backfill, finish,
                                                                   abort, policy)
    report.seconds = time.perf_counter() - started
    return report


def sampled_units(units: list[np.ndarray], sample: int, seed: int) -> list[np.ndarray]:
    """Whole batches, in a seeded order, until they hold ``sample`` items."""
    return leading([units[u] for u in np.random.default_rng(seed).permutation(len(units))], sample)


def leading(units: list[np.ndarray], count: int) -> list[np.ndarray]:
    """The first batches of ``units``, ``count`` items in all (the sample's, at the head of the order)."""
    return units[: int(np.searchsorted(np.cumsum([len(u) for u in units]), count)) + 1] if count else []


def shuffled(units: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """The ``random`` backfill order: the batches in a seeded order."""
    return [units[u] for u in np.random.default_rng(seed).permutation(len(units))]


def doubt_of(old: np.ndarray, mapped: np.ndarray, reverse: SpaceMap) -> np.ndarray:
    """How uncertain each mapped vector is: the old->new->old cycle's cosine to the old vector, negated."""
    return -(reverse(mapped) * old).sum(axis=1)


def least_certain_first(units: list[np.ndarray], items: np.ndarray, doubt: np.ndarray) -> list[np.ndarray]:
    """The ``uncertain`` backfill order: the batches by their items' mean ``doubt`` (of sorted ``items``), most first."""
    mean_doubt = [doubt[np.searchsorted(items, unit)].mean() for unit in units]
    return [units[u] for u in np.argsort(-np.array(mean_doubt), kind="stable")]


def _check(sample: int, backfill: int | None, policy: str, seed: int, batch_size: int, workers: int) -> None:
    check_count("sample", sample)
    if backfill is not None:
        check_count("backfill", backfill, 0)
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ValueError(f"unknown backfill order {policy!r}: use one of {', '.join(POLICIES)}")
    check_count("sample_seed", seed, 0)
    check_ingest(batch_size, workers)


def _check_encoder_options(encoder, options: dict, abort: bool) -> None:
    """Model options go with an encoder's name: an :class:`Encoder` was built with its own, and an abort
    builds none (silently ignoring them would run with other options than the caller asked for)."""
    if abort and (encoder is not None or options):
        raise ValueError("an abort returns to the old encoder: give no encoder or model options with it")
    if isinstance(encoder, Encoder) and options:
        raise ValueError(f"model options ({', '.join(sorted(options))}) go with an encoder's name; "
                         f"this {encoder.name} encoder was built with its own: build it with them instead")


class _Run:
    def __init__(self, col, seed: int, batch_size: int, workers: int, progress: ProgressFn | None):
        self.col, self.seed, self.batch_size, self.workers, self.progress = col, seed, batch_size, workers, progress
        self.folder = col.path
        self.reembedded = self.unreadable = 0

    # -- the phases ---------------------------------------------------------------------
    def go(self, encoder, options: dict, sample: int, backfill: int | None, finish: bool, abort: bool,
           policy: str) -> UpgradeReport:
        col = self.col
        with col._lock:  # files of killed runs: an order saved before its start's commit, an old vector file, ...
            col._sync()
            col._drop_stale_vectors()
        state = st.active(col._meta.get_meta())
        if abort:
            if state is None:
                raise ValueError("no upgrade is under way: there is nothing to abort")
            with col._lock:
                self._abort(st.active(col._meta.get_meta()))
            return UpgradeReport("aborted")
        if state is None:
            if encoder is None:
                raise ValueError("no upgrade is under way: name the encoder to upgrade to")
            new = self._new_encoder(encoder, options)
            state = self._start(new, sample, policy)
        else:
            new = self._resumed_encoder(state, encoder, options)
        if state["phase"] == "sampling":
            state = self._embed(state, new, int(state["sample"]))
            state = self._switch(state, new)
        if backfill is None or backfill > 0:
            stop = len(st.read_order(self.folder, state))
            if backfill is not None:
                stop = min(stop, int(state["done"]) + backfill)
            state = self._embed(state, new, stop)
        total = len(st.read_order(self.folder, state))
        if finish and int(state["done"]) >= total:
            with col._lock:
                self._finish(st.active(col._meta.get_meta()))
            return self._report("finished", state, total)
        return self._report(state["phase"], state, total)

    def _report(self, phase: str, state: dict, total: int) -> UpgradeReport:
        return UpgradeReport(phase, self.reembedded, int(state["done"]), total,
                             int(state.get("unreadable", 0)), state.get("quality"))

    def _new_encoder(self, encoder: str | Encoder, options: dict) -> Encoder:
        col = self.col
        if not col.has_files:
            raise ValueError("this collection holds precomputed vectors, with no images to re-embed: "
                             "import the new vectors into a new collection instead")
        name = encoder.name if isinstance(encoder, Encoder) else encoder
        if name == PRECOMPUTED:
            raise ValueError("encoder precomputed cannot embed images, so it cannot re-embed this collection: "
                             "upgrade to an encoder with an image model")
        new = encoder if isinstance(encoder, Encoder) else create_encoder(encoder, **options)
        if new.info == col.encoder.info and (new.options or {}) == (col.encoder.options or {}):
            raise ValueError(f"this collection already uses {new.name} v{new.version} with these options: "
                             "there is nothing to upgrade")
        codes = col._code_settings()
        if codes is not None:
            try:
                codes.validate(new.dim)
            except ValueError as exc:
                raise ValueError(f"the collection's binary codes do not suit the new encoder's {new.dim}-d vectors "
                                 f"({exc}): change them first (glimpse index --codes ...)") from None
        return new

    def _resumed_encoder(self, state: dict, encoder, options: dict) -> Encoder:
        want = state["new"]
        name = encoder.name if isinstance(encoder, Encoder) else encoder
        if name is not None and name != want["encoder"]:
            raise ValueError(f"an upgrade to {st.described(want)} is under way: resume it (glimpse upgrade "
                             f"{want['encoder']}) or abort it (glimpse upgrade --abort) first")
        if state["phase"] == "backfilling" and not isinstance(encoder, Encoder) and not options:
            self.col._sync()
            return self.col.encoder  # the collection's own encoder since the switch
        new = encoder if isinstance(encoder, Encoder) else \
            create_encoder(want["encoder"], **{**want["encoder_options"], **options})
        if (new.options or {}) != want["encoder_options"] or new.dim != want["dim"]:  # the sample so far is its
            raise ValueError(f"an upgrade to {st.described(want)} is under way: resume it with its own model options "
                             f"or abort it (glimpse upgrade --abort) first")
        return new

    def _start(self, new: Encoder, sample: int, policy: str) -> dict:
        col = self.col
        with col._lock:
            meta = col._meta.get_meta()
            chosen = sampled_units(self._units(np.array(col._meta.item_ids(), np.int64)), sample, self.seed)
            token = f"{int(time.time() * 1000):x}"
            state = {
                "phase": "sampling", "policy": policy, "seed": self.seed, "started": time.time(),
                "old": {**{k: meta.get(k) for k in st.ENCODER_KEYS}, "vectors": meta.get("vectors") or "vectors.f16"},
                "new": {"encoder": new.name, "encoder_version": new.version, "dim": new.dim,
                        "encoder_options": new.options or {}, "vectors": f"vectors-upgrade-{token}.f16"},
                "order": f"upgrade-{token}-order.npy", "map": f"upgrade-{token}-map.npz",
                "reverse": f"upgrade-{token}-reverse.npz", "sample": sum(map(len, chosen)), "done": 0,
            }
            state["old"]["encoder_options"] = state["old"]["encoder_options"] or {}
            save_order(self.folder / state["order"], chosen)
            col._meta.remove_paths([], **{st.KEY: state})  # no paths: sets the state and bumps the generation
        return state

    def _switch(self, state: dict, new: Encoder) -> dict:
        """Fit the maps on the sample, map every other item into the new file, and switch in one commit."""
        col = self.col
        forward, reverse, quality, candidates = self._fit(state, new)  # without the lock: ingest goes on meanwhile
        with col._lock:
            meta, table = col._meta.snapshot()
            live, rows_of = table[:, 0], dict(zip(table[:, 0].tolist(), table[:, 1].tolist()))
            rows = int(meta.get("rows", 0))
            # The order's leading batches, as the sample embedded them: a switch killed after it saved the
            # whole order leaves the backfill's batches after them, which must not be appended twice.
            # Items removed since stay in them (passed over), so ``done`` keeps counting the order's places.
            sample_units = leading(st.read_units(self.folder, state), int(state["sample"]))
            sampled = np.concatenate(sample_units)
            sampled = sampled[np.isin(sampled, live)]
            old_store, new_store = self._store(state["old"], table, rows), self._store(state["new"], table, rows)
            extend(new_store, rows)  # rows not written yet (removed items, mapped ones below) read as zeros
            forward.save(self.folder / state["map"])
            reverse.save(self.folder / state["reverse"])
            rest = np.setdiff1d(live, sampled)
            doubt = np.zeros(len(rest), np.float32)
            for start in range(0, len(rest), 8192):
                ids = rest[start : start + 8192]
                old = old_store.read(ids, rows)
                mapped = forward(old)
                new_store.write_rows([rows_of[i] for i in ids.tolist()], mapped)
                doubt[start : start + len(ids)] = doubt_of(old, mapped, reverse)
            units = [unit[~np.isin(unit, sampled)] for unit in self._units(rest)]
            units = [unit for unit in units if len(unit)]
            if state["policy"] == "uncertain":
                units = least_certain_first(units, rest, doubt)
            else:
                units = shuffled(units, self.seed)
            save_order(self.folder / state["order"], [*sample_units, *units])
            state = {**state, "phase": "backfilling", "done": int(state["sample"]),
                     "map_kind": forward.kind, "candidates": candidates, "adapt": meta.get("adapt"),
                     "quality": None if quality is None else asdict(quality)}
            new_facts = {k: state["new"][k] for k in st.ENCODER_KEYS}
            # One commit: from here every reader answers in the new space (codes are re-fitted next).
            col._meta.remove_paths([], **new_facts, vectors=state["new"]["vectors"], adapt=None,
                                   **unfitted(meta.get("codes")),
                                   **{st.KEY: state})
            col._follow_upgrade(col._meta.get_meta(), new)
            col._fit_codes()
            col._persist_index()
        return state

    def _fit(self, state: dict, new: Encoder) -> tuple[SpaceMap, SpaceMap, MapQuality | None, dict]:
        """The maps old->new and new->old, fitted on the sample's pairs (:mod:`.views`), the first's quality
        and every candidate's figures."""
        meta, table = self.col._meta.snapshot()
        rows = int(meta.get("rows", 0))
        sampled = st.read_order(self.folder, state)[: int(state["sample"])]
        sampled = sampled[np.isin(sampled, table[:, 0])]
        new_store = self._store(state["new"], table, rows)
        extend(new_store, rows)  # the new file is not read by searches yet: growing it is harmless
        old_x, new_y = self._store(state["old"], table, rows).read(sampled, rows), new_store.read(sampled, rows)
        files = self._files(sampled)
        by_row = {k: files[i][0] for k, i in enumerate(sampled.tolist()) if i in files}
        pairs = sample_pairs(self.col.encoder, new, old_x, new_y, by_row, self.seed, self.workers)
        forward, quality, candidates = fit_map(pairs, self.seed)
        reverse, _, _ = fit_map(pairs.reversed(), self.seed)
        return forward, reverse, quality, candidates

    def _embed(self, state: dict, encoder: Encoder, stop: int) -> dict:
        """Re-embed the order's batches from ``done`` until ``stop`` items are done, each batch committed."""
        first = int(state["done"])
        units, position = [], 0
        for unit in st.read_units(self.folder, state):
            if first <= position < stop:
                units.append(unit)
            position += len(unit)
        todo = sum(map(len, units))
        for batch, vectors in zip(units, self._encoded_units(units, encoder)):
            start = int(state["done"])
            state = self._commit(state, start, start + len(batch), vectors)
            if state is None:
                raise ValueError("the upgrade was aborted or finished by another process meanwhile")
            if self.progress:
                self.progress(int(state["done"]) - first, todo)
        return state

    def _encoded_units(self, units: list[np.ndarray], encoder: Encoder) -> Iterator[list[tuple[int, np.ndarray]]]:
        """For each batch of the order, [(item id, new vector)] of its items that could be read as indexed."""
        files = self._files(np.concatenate(units) if units else np.zeros(0, np.int64))
        prepared = prepare_files([files[i][0] for unit in units for i in unit.tolist() if i in files], encoder.prepare,
                                 target=encoder.image_size, workers=self.workers)
        for unit in units:
            pending: list[tuple[int, np.ndarray]] = []
            for item in unit.tolist():
                if item not in files:  # removed since: passed over
                    continue
                p = next(prepared)
                if p.array is not None and p.hash == files[item][1]:
                    pending.append((item, p.array))
                else:
                    self.unreadable += 1
            yield self._encoded(encoder, pending)

    def _units(self, items: np.ndarray) -> list[np.ndarray]:
        """``items`` in the batches a fresh ``glimpse index`` of the collection's folders would embed
        them in: its scan order, ``batch_size`` files a batch, each content in the batch of its first
        file. Models round by batch (float16 rows differ in the last bit), so re-embedding in the
        same batches is what makes the final vectors equal a fresh collection's. Items no folder
        scan finds (files added one by one) follow, in id order."""
        col = self.col
        paths = {path: record.item_id for path, record in col._meta.file_records().items()}
        wanted, seen = set(items.tolist()), set()
        entries = col._scan(col._targets(list(col.folders()), ScanOptions()), col._meta.get_meta().get("excluded", []), {})
        units = []
        for start in range(0, len(entries), self.batch_size):
            unit = []
            for entry in entries[start : start + self.batch_size]:
                item = paths.get(str(entry.path))
                if item is not None and item not in seen:
                    seen.add(item)
                    if item in wanted:
                        unit.append(item)
            units.append(unit)
        rest = sorted(wanted - seen)
        units += [rest[i : i + self.batch_size] for i in range(0, len(rest), self.batch_size)]
        return [np.array(unit, np.int64) for unit in units if unit]

    @staticmethod
    def _encoded(encoder: Encoder, pending: list[tuple[int, np.ndarray]]) -> list[tuple[int, np.ndarray]]:
        if not pending:
            return []
        vectors = encoder.encode_prepared(np.stack([array for _, array in pending]))
        return [(item, vector) for (item, _), vector in zip(pending, vectors)]

    def _files(self, ids: np.ndarray) -> dict[int, tuple[FileEntry, str]]:
        """For each item, a file to read it from (one that still looks as indexed, if any) and its content hash."""
        want = set(ids.tolist())
        found: dict[int, tuple[FileEntry, str]] = {}
        for record in sorted(self.col._meta.file_records().values(), key=lambda r: r.path):
            if record.item_id in want:
                entry, known = FileEntry(Path(record.path), record.size, record.mtime_ns), found.get(record.item_id)
                if known is None or (not unchanged(known[0]) and unchanged(entry)):
                    found[record.item_id] = (entry, record.hash)
        return found

    def _commit(self, state: dict, start: int, done: int, batch: list[tuple[int, np.ndarray]]) -> dict | None:
        """Write a batch's rows into the new file, then commit the watermark; waits while another writer works."""
        col = self.col
        while True:
            try:
                col._lock.acquire()
                break
            except CollectionLockedError:
                time.sleep(LOCK_RETRY_S)
        try:
            meta, table = col._meta.snapshot()
            current = st.active(meta)
            if current is None or current["order"] != state["order"] or int(current["done"]) != start:
                return None
            rows_of = dict(zip(table[:, 0].tolist(), table[:, 1].tolist()))
            kept = [(item, vector) for item, vector in batch if item in rows_of]
            if kept:
                store = self._store(current["new"], table, int(meta.get("rows", 0)))
                store.write_rows([rows_of[item] for item, _ in kept], np.stack([v for _, v in kept]))
            self.reembedded += len(kept)
            current = {**current, "done": done, "unreadable": int(current.get("unreadable", 0)) + self.unreadable}
            self.unreadable = 0
            col._meta.remove_paths([], **{st.KEY: current})
            # Saved codes now hold stale rows and do not say which: a reader opening later rebuilds them.
            for saved in [*self.folder.glob(CODES_FILE.format(generation="*", fit="*")),
                          *self.folder.glob(DELTA_FILE.format(generation="*", fit="*"))]:
                saved.unlink(missing_ok=True)
            col._refresh()
            return current
        finally:
            col._lock.release()

    def _finish(self, state: dict) -> None:
        """Codes re-fitted on the final vectors, then one commit drops the upgrade; then the old files go."""
        col = self.col
        codes = col._code_settings()
        if codes is not None:
            col._fit_codes(codes.unfitted())
        col._meta.remove_paths([], **{st.KEY: None})
        col._refresh()
        col._persist_index()
        vectors = state["old"]["vectors"]
        for name in (vectors, sums_path(Path(vectors)).name, state["order"], state["map"], state["reverse"]):
            (self.folder / name).unlink(missing_ok=True)
        if state.get("adapt"):  # learnt in the old space: `glimpse adapt` learns one for the new
            (self.folder / state["adapt"]["file"]).unlink(missing_ok=True)

    def _abort(self, state: dict) -> None:
        """Back to the old encoder: items added since the switch get their vectors mapped back."""
        col = self.col
        if state["phase"] == "backfilling":
            meta, table = col._meta.snapshot()
            rows = int(meta.get("rows", 0))
            added = table[~np.isin(table[:, 0], st.read_order(self.folder, state))]
            if len(added):
                mapped = SpaceMap.load(self.folder / state["reverse"])(self._store(state["new"], table, rows).read(added[:, 0], rows))
                self._store(state["old"], table, rows).write_rows(added[:, 1].tolist(), mapped)
            extend(self._store(state["old"], table, rows), rows)
            col._meta.remove_paths([], **{k: state["old"][k] for k in st.ENCODER_KEYS}, vectors=state["old"]["vectors"],
                                   adapt=state.get("adapt"),
                                   **unfitted(meta.get("codes")),
                                   **{st.KEY: None})
            col._follow_upgrade(col._meta.get_meta())
            col._fit_codes()
            col._persist_index()
        else:
            col._meta.remove_paths([], **{st.KEY: None})
        vectors = state["new"]["vectors"]
        for name in (vectors, sums_path(Path(vectors)).name, state["order"], state["map"], state["reverse"]):
            (self.folder / name).unlink(missing_ok=True)

    def _store(self, encoder: dict, table: np.ndarray, rows: int) -> VectorStore:
        store = VectorStore(self.folder / encoder["vectors"], int(encoder["dim"]))
        store.locate(store.path, table[:, 0], table[:, 1])
        return store
