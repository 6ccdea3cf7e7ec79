"""``repair``: every stored vector checked, and the damaged ones derived again from what holds the truth."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import open_own
from ..backends.exact import whole_rows
from ..ingest.scan import FileEntry
from ..settings import check_callback
from ..storage import VectorStore
from .layout import VECTORS_NAME
from .reports import ProgressFn, RepairReport

#: Images encoded per model call while repairing.
ENCODE_BATCH = 64


class Repairing:
    """``repair``: rows found damaged are written again past the committed rows, then one commit
    points their items at them (as a compaction does): a kill leaves the old rows in use."""

    def repair(self, *, progress: ProgressFn | None = None) -> RepairReport:
        """Check every stored vector and derive the damaged ones again.

        Rows are stored at unit length and with a checksum; a row that is not at unit length or
        fails its checksum was damaged on disk, and searches leave it out. Rows stored before
        checksums were (an older collection) are checked by length, then given their checksums.
        An image collection encodes damaged items again from a file that still holds the indexed
        content (its hash decides); a vector file cut short or missing is extended with
        empty rows first, which are then damaged rows like any other. What cannot be derived is
        reported (``RepairReport.left``): the keys of precomputed vectors (add them again with
        ``add_vectors``), and images none of whose files holds that content any more (``glimpse
        index`` drops or re-reads them). ``progress`` is called with (rows checked, rows).
        """
        check_callback("progress", progress)
        with self._lock:
            if self._upgrading():
                raise ValueError("an encoder upgrade is under way: finish it (glimpse upgrade) or abort it "
                                 "(glimpse upgrade --abort) before repairing")
            self._extend_vector_file()
            self._vectors.close()  # a map made before the file was replaced would read the old file
            self._sync()
            rows, live = self._rows, np.sort(self._live)
            damaged: list[np.ndarray] = []
            for start in range(0, len(live), 65536):
                ids = live[start : start + 65536]
                stored = self._vectors.read(ids, rows, np.float16)
                damaged.append(ids[~(whole_rows(stored) & self._vectors.unchanged(ids, rows, stored))])
                if progress:
                    progress(min(start + 65536, len(live)), len(live))
            self._vectors.cover(rows)  # rows stored before checksums were: checked by length just now
            found = np.concatenate([np.zeros(0, np.int64), *damaged])
            report = RepairReport(checked=len(live), damaged=found.tolist())
            ids, vectors = self._derive(found, report) if len(found) else (np.zeros(0, np.int64), None)
            if len(ids):
                self._store_repaired(ids, vectors, rows)
            self._damaged.difference_update(report.repaired)
            return report

    def _extend_vector_file(self) -> None:
        """Empty rows up to the committed count where the vector file was cut short or is missing
        (what was cut is lost either way; the empty rows are damaged rows to derive again)."""
        meta = self._meta.get_meta()
        path, rows = self.path / meta.get("vectors", VECTORS_NAME), int(meta.get("rows", 0))
        want = rows * self._vectors.row_bytes
        if not rows or os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
            return  # nothing to extend, or a link or a folder in its place: the read says to move it aside
        if os.path.exists(path) and os.path.getsize(path) >= want:
            return
        fd = open_own(path)
        try:
            if os.fstat(fd).st_size < want:
                os.ftruncate(fd, want)
                os.fsync(fd)
        finally:
            os.close(fd)

    def _derive(self, items: np.ndarray, report: RepairReport) -> tuple[np.ndarray, np.ndarray | None]:
        """The items of ``items`` that can be derived again, and their vectors; the rest in ``report.left``."""
        derived, arrays = [], []
        for item in items.tolist():
            records = self._meta.item_files(item)
            if not self.has_files or not records:
                report.left.append((item, records[0].path if records else ""))
                continue
            entries = [FileEntry(Path(r.path), r.size, r.mtime_ns) for r in records]
            for prepared in self._prepare_files(entries, workers=1):
                if prepared.array is not None and prepared.hash == records[0].hash:
                    derived.append(item)
                    arrays.append(prepared.array)
                    break
            else:
                report.left.append((item, records[0].path))
        if not derived:
            return np.zeros(0, np.int64), None
        vectors = np.concatenate([self._encode_arrays(arrays[i : i + ENCODE_BATCH])
                                  for i in range(0, len(arrays), ENCODE_BATCH)])
        report.repaired = derived
        return np.asarray(derived, np.int64), vectors

    def _store_repaired(self, ids: np.ndarray, vectors: np.ndarray, rows: int) -> None:
        """The vectors written past the committed rows and made durable, then one commit moves
        their items there; the loaded index (and the codes on disk) take the new vectors."""
        stored = np.asarray(vectors).astype(VectorStore.DTYPE)
        self._vectors.write(rows, stored)
        next_id = int(self._meta.get_meta().get("next_id", rows))
        self._meta.move_rows(list(zip(ids.tolist(), range(rows, rows + len(ids)))), self._vectors.path.name,
                             rows + len(ids), next_id)
        with self._index_lock.write_lock():
            index = self._ensure_index()
            index.remove(ids)
            index.add(ids, stored.astype(np.float32))
            self._index_ids.update(ids.tolist())
        self._persist_index()
