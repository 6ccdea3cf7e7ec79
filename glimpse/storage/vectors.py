"""Float16 vectors in one flat, memory-mapped file, one row per item, and beside it one checksum per row."""

from __future__ import annotations

import contextlib
import errno
import functools
import mmap
import os
import stat
from pathlib import Path

from ..atomic import open_own

import numpy as np


def write_whole(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``: one pwrite may write less (a disk filling up, a write over
    about 2 GiB), and rows committed without their bytes would read as a damaged file."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if not written:
            raise OSError(errno.ENOSPC, f"no byte could be written to the vector file at offset {offset}")
        view, offset = view[written:], offset + written


#: madvise(2)'s MADV_POPULATE_READ (Linux 5.14 on), which Python's mmap module does not name: map a range's pages
#: into this process now, as its reads would one page fault at a time.
POPULATE_READ = 22
#: Bytes of a mapping populated per call: CPython's ``madvise`` holds the GIL throughout (8 MiB of pages in the page
#: cache took about 1 ms), so searches in other threads wait at most that long.
PRELOAD_CHUNK = 8 << 20
#: A vector file is preloaded only while it and its checksums take at most this share of the machine's memory: past
#: it, its pages would push each other (and everything else) out of the page cache.
PRELOAD_SHARE = 0.5


def physical_memory() -> int | None:
    """The machine's memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


#: The checksums file of a vector file: ``vectors.f16`` -> ``vectors.sums``, one little-endian
#: uint64 per row (``row_sums``), written with the rows and made durable before the commit.
SUMS_SUFFIX = ".sums"
#: A stored checksum that checks nothing: the zeros of a file extended or written with gaps, and
#: the mark an in-place rewrite leaves while it runs. A whole row sums to 0 about once in 2**64.
NO_SUM = 0


def sums_path(vectors: Path) -> Path:
    return Path(vectors).with_suffix(SUMS_SUFFIX)


@functools.cache
def _weights(words: int) -> np.ndarray:
    """One odd 64-bit weight per word of a row: SplitMix64 of 1, 2, ... (fixed, documented in docs/storage.md)."""
    z = np.arange(1, words + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) | np.uint64(1)


def row_sums(rows: np.ndarray) -> np.ndarray:
    """One checksum per float16 row (float32 rows are taken as the float16 they were read from): its
    bytes as little-endian 32-bit words (the last padded with zeros), each times a fixed odd 64-bit
    weight, summed modulo 2**64. Any change within one word (a flipped sign bit, a byte, a pair of
    components) changes the sum, as an odd weight is invertible modulo 2**64; changes in several
    words cancel about once in 2**33 at worst (a word's top bit keeps 33 bits of its weight), as
    for a CRC-32. 64-bit words would cost a third, but their top bit keeps one bit of its weight:
    two flipped signs there always cancel. numpy integer arithmetic, about 0.3 ns per component
    (0.5 for ten rows), under half of what gathering the rows costs."""
    data = np.ascontiguousarray(rows, dtype=np.float16).view(np.uint8).reshape(len(rows), -1)
    if data.shape[1] % 4:
        data = np.pad(data, ((0, 0), (0, -data.shape[1] % 4)))
    words = data.view("<u4")
    return np.einsum("ij,j->i", words, _weights(words.shape[1]))


class DamagedVectorError(OSError):
    """An item's stored vector failed the length check or its checksum (``glimpse repair`` derives it again): the
    collection's file is damaged, not the request (HTTP 503, as for other unreadable files)."""


class VectorStore:
    """Rows of float16 vectors; item ``i`` is row ``i`` until a compaction moves it (``locate``).

    The file may be longer than the committed row count: a writer appends and fsyncs rows
    *before* the metadata commit that makes them visible, so a crash in between leaves only
    unreferenced bytes past the end, which the next writer overwrites. Every write also stores the
    rows' checksums (``row_sums``) in the checksums file, made durable before the commit too;
    ``unchanged`` checks rows read against them. Rows past that file's end (a collection from
    before it) have none until a write or ``cover`` builds them from the bytes then stored.
    """

    DTYPE = np.float16

    def __init__(self, path: Path, dim: int):
        self.path = Path(path)
        self.dim = dim
        self.row_bytes = dim * np.dtype(self.DTYPE).itemsize
        self._map: np.ndarray | None = None
        self._mmap: mmap.mmap | None = None  # what _map reads; its size() is an fstat of the mapped file
        self._mapped_rows = 0
        self._row_of: np.ndarray | None = None  # item id -> row (-1: none); None: row = id
        self._sparse: tuple[np.ndarray, np.ndarray] | None = None  # sorted (ids, rows), for sparse ids
        self._sums: np.ndarray | None = None  # the checksums of the first rows, mapped (None: not yet)
        self._sums_mmap: mmap.mmap | None = None
        self._sums_rows = 0  # the committed row count they were mapped for

    def locate(self, path: Path, ids: np.ndarray, rows: np.ndarray) -> None:
        """Read from ``path`` from now on, item ``ids[j]`` at row ``rows[j]`` (as committed)."""
        path = Path(path)
        if path != self.path:
            self.close()
            self.path = path
        self._sparse = None
        if np.array_equal(ids, rows):
            self._row_of = None
        elif int(ids.max()) < 4 * len(ids) + 65536:
            self._row_of = np.full(int(ids.max()) + 1, -1, np.int64)
            self._row_of[ids] = rows
        else:  # ids derived from content (glimpse.milvus) are sparse: binary search, not a table
            order = np.argsort(ids)
            self._row_of, self._sparse = None, (ids[order], rows[order])

    def write(self, start_row: int, vectors: np.ndarray) -> None:
        """Write rows ``start_row ..`` (past the committed rows: no reader looks there) and their
        checksums, and make both durable."""
        data = self._rows_to_write(vectors)
        self.cover(start_row)
        fd = open_own(self.path)
        try:
            write_whole(fd, data.tobytes(), start_row * self.row_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._write_sums([(start_row, row_sums(data))])

    def write_rows(self, rows: list[int], vectors: np.ndarray) -> None:
        """Write scattered rows in place (readers may be reading them: an upgrade's backfill) and their
        checksums, durably. Their checksums are cleared first, so a reader meeting a row rewritten
        before its new checksum checks its length only, and never takes the new row for damage."""
        data = self._rows_to_write(vectors)
        if not len(rows):
            return
        self.cover(max(rows))
        places = np.asarray(rows, np.int64)
        self._write_sums([(row, np.full(1, NO_SUM, np.uint64)) for row in places.tolist()])
        fd = open_own(self.path)
        try:
            for row, vector in zip(places.tolist(), data):
                write_whole(fd, vector.tobytes(), row * self.row_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._write_sums(list(zip(places.tolist(), row_sums(data)[:, None])))

    def _rows_to_write(self, vectors: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(vectors, dtype=self.DTYPE)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) vectors, got {data.shape}")
        return data

    def _write_sums(self, runs: list[tuple[int, np.ndarray]]) -> None:
        """Checksums written at their rows (each run: a first row and the sums from there), durably."""
        fd = open_own(sums_path(self.path))
        try:
            for row, sums in runs:
                write_whole(fd, np.asarray(sums, "<u8").tobytes(), row * 8)
            os.fsync(fd)
        finally:
            os.close(fd)

    def cover(self, rows: int) -> None:
        """Checksums for the first ``rows`` rows where the checksums file stops short of them (a
        collection from before it), computed from the bytes the vector file holds now."""
        fd = open_own(sums_path(self.path))
        try:
            have = os.fstat(fd).st_size // 8
        finally:
            os.close(fd)
        if have >= rows:
            return
        try:
            fd = self._open(rows)
        except FileNotFoundError:  # not made yet (an upgrade's file before its first rows): no rows to sum
            return
        with os.fdopen(fd, "rb") as f:
            stored = min(rows, os.fstat(f.fileno()).st_size // self.row_bytes)  # past it: zero rows, sum NO_SUM
            for start in range(have, stored, 65536):
                f.seek(start * self.row_bytes)
                count = min(65536, stored - start)
                chunk = np.frombuffer(f.read(count * self.row_bytes), self.DTYPE).reshape(count, self.dim)
                self._write_sums([(start, row_sums(chunk))])

    def copy_rows(self, ids: np.ndarray, rows: int, target: Path) -> None:
        """Write the vectors of ``ids`` to a new file ``target``, in that order, and their checksums
        (as stored: a row damaged before the copy stays found damaged), durably."""
        with open(target, "wb") as f, open(sums_path(target), "wb") as sums:
            for start in range(0, len(ids), 65536):
                chunk = ids[start : start + 65536]
                data = self.read(chunk, rows, self.DTYPE)
                f.write(data.tobytes())
                stored = self._stored_sums(self._row_numbers(chunk), rows)
                sums.write(np.where(stored == NO_SUM, row_sums(data), stored).astype("<u8").tobytes())
            for done in (f, sums):
                done.flush()
                os.fsync(done.fileno())
        fd = os.open(target.parent, os.O_RDONLY)  # the new names too, before metadata points at them
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def unchanged(self, ids: np.ndarray, rows: int, vectors: np.ndarray) -> np.ndarray:
        """One bool per row of ``vectors`` (read for item ``ids``, ``rows`` committed): whether it
        still gives the checksum stored with it (True where none is stored, ``NO_SUM``)."""
        stored = self._stored_sums(self._row_numbers(ids), rows)
        checked = stored != NO_SUM
        if checked.all():  # the usual case: no copy of the rows
            return row_sums(vectors) == stored
        out = np.ones(len(stored), bool)
        if checked.any():
            out[checked] = row_sums(vectors[checked]) == stored[checked]
        return out

    def _stored_sums(self, places: np.ndarray, rows: int) -> np.ndarray:
        """The stored checksums of rows ``places`` (``NO_SUM`` past the checksums file's end)."""
        sums = self._sums_view(rows)
        inside = places < len(sums)
        out = np.full(len(places), NO_SUM, np.uint64)
        out[inside] = sums[places[inside]]
        return out

    def _sums_view(self, rows: int) -> np.ndarray:
        """The checksums of the first ``rows`` rows, or of as many as the file holds, memory-mapped;
        mapped again when the committed rows change or the file is cut short under the map. Read
        into locals and set at once: searches call it side by side."""
        sums, mapped = self._sums, self._sums_mmap
        if sums is not None and self._sums_rows == rows and (mapped is None or mapped.size() >= len(sums) * 8):
            return sums
        sums, mapped = np.zeros(0, np.uint64), None
        path = sums_path(self.path)
        try:
            fd = open_own(path, os.O_RDONLY)
        except FileNotFoundError:  # a collection from before them: the next write builds them
            fd = None
        if fd is not None:
            try:
                facts = os.fstat(fd)
                if not stat.S_ISREG(facts.st_mode):
                    raise OSError(f"the checksums file {path} is not a file: move it aside (the next write builds it "
                                  "again)")
                count = min(rows, facts.st_size // 8)
                if count:
                    mapped = mmap.mmap(fd, count * 8, access=mmap.ACCESS_READ)
                    sums = np.frombuffer(mapped, "<u8", count)
            finally:
                os.close(fd)
        self._sums, self._sums_mmap, self._sums_rows = sums, mapped, rows
        return sums

    def mapped(self, rows: int) -> list[mmap.mmap]:
        """The memory maps of the first ``rows`` rows and of their checksums (mapped now where they were not),
        for :meth:`populate`."""
        if not rows:
            return []
        self.view(rows)
        self._sums_view(rows)
        return [mapped for mapped in (self._mmap, self._sums_mmap) if mapped is not None]

    def populate(self, maps: list[mmap.mmap]) -> int:
        """Map every page of ``maps`` (:meth:`mapped`) into this process; returns the bytes mapped. A search's
        first read of a row otherwise takes a page fault of its own: at 1M x 1664-d rows in the page cache, 3-10 us
        a row against 0.9 once mapped (a query re-ranks 300-6,000 rows). Any thread may call it; it stops where the
        store maps its file again (it grew, moved or closed), and maps nothing where the maps take more than
        ``PRELOAD_SHARE`` of the machine's memory, or the system cannot populate a map (it asks for the kernel's
        read-ahead there)."""
        memory = physical_memory()
        if memory is None or sum(len(mapped) for mapped in maps) > PRELOAD_SHARE * memory:
            return 0
        done = 0
        for mapped in maps:
            for start in range(0, len(mapped), PRELOAD_CHUNK):
                if mapped is not self._mmap and mapped is not self._sums_mmap:
                    return done  # mapped again since: the next preload takes the new map
                length = min(PRELOAD_CHUNK, len(mapped) - start)
                try:
                    mapped.madvise(POPULATE_READ, start, length)
                except OSError as exc:
                    if exc.errno == errno.EINVAL and not done:  # an older kernel, or not Linux
                        with contextlib.suppress(OSError):
                            mapped.madvise(mmap.MADV_WILLNEED)
                        return 0
                    return done  # the file was cut short under the map: a search's read there reports it
                except (ValueError, AttributeError):  # closed meanwhile, or no madvise (Windows)
                    return done
                done += length
        return done

    def view(self, rows: int) -> np.ndarray:
        """A read-only (rows, dim) memory map of the first ``rows`` rows.

        Each call checks the mapped file's size (one fstat): a file cut short under the map
        (another program, a disk problem) would otherwise kill the process with SIGBUS on the
        first read past its new end."""
        if rows == 0:
            return np.zeros((0, self.dim), self.DTYPE)
        if self._map is None or self._mapped_rows != rows:
            self.close()
            with os.fdopen(self._open(rows), "rb") as f:
                self._check_size(os.fstat(f.fileno()).st_size, rows, self.path)
                self._mmap = mmap.mmap(f.fileno(), rows * self.row_bytes, access=mmap.ACCESS_READ)
            self._map = np.frombuffer(self._mmap, self.DTYPE, rows * self.dim).reshape(rows, self.dim)
            self._mapped_rows = rows
        else:
            self._check_size(self._mmap.size(), rows, self.path)
        return self._map

    def _open(self, rows: int) -> int:
        """A read-only descriptor on the vector file itself: never through a symbolic link (glimpse
        makes none, and would read another file's bytes as vectors), never a folder."""
        restore = "restore the file from a backup or derive the vectors again with `glimpse repair`"
        try:
            fd = open_own(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise FileNotFoundError(f"the vector file {self.path} is missing but the metadata references {rows} "
                                    f"vectors: {restore}") from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise OSError(f"the vector file {self.path} is a symbolic link, which glimpse never makes: put the file "
                          "itself there") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"the vector file {self.path} is not a file: move it aside, then {restore}")
        return fd

    def check(self, path: Path, rows: int) -> None:
        """Raise OSError unless ``path`` holds ``rows`` rows (one stat; nothing mapped)."""
        if rows:
            self._check_size(os.stat(path).st_size, rows, path)

    def _check_size(self, size: int, rows: int, path: Path) -> None:
        if size < rows * self.row_bytes:
            raise OSError(  # what happened first: a long path may be clipped (HTTP errors)
                f"the vector file was truncated or replaced: {path} holds "
                f"{size // self.row_bytes} vectors but the metadata references {rows}"
            )

    def close(self) -> None:
        """Drop the memory maps (and the file descriptors they hold)."""
        self._map, self._mmap, self._mapped_rows = None, None, 0
        self._sums, self._sums_mmap, self._sums_rows = None, None, 0

    def read(self, ids: np.ndarray, rows: int, dtype: np.dtype = np.float32, columns: slice = slice(None)) -> np.ndarray:
        """Vectors of item ``ids`` as ``dtype`` (float16: as stored, no conversion), only ``columns`` of them
        where given; sorted ids read fastest. Ids of consecutive rows, ascending, give a read-only view of the
        map (float16) instead of a copy: an exact pass over every row scores them in place (100,000 x 256-d:
        4 ms against 12-16 ms through a gathered copy)."""
        at = self._row_numbers(ids)
        stored = self.view(rows)
        if 1 < len(at) and at[-1] < len(stored) and at[-1] - at[0] == len(at) - 1 and (np.diff(at) > 0).all():
            return np.asarray(stored[at[0] : at[-1] + 1, columns], dtype=dtype)  # a run of rows
        return np.asarray(stored[at, columns], dtype=dtype)

    def _row_numbers(self, ids: np.ndarray) -> np.ndarray:
        """The rows of item ``ids`` (KeyError for an item without one)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._row_of is not None:
            ids = self._row_of[ids]
        elif self._sparse is not None and len(ids):
            known, their_rows = self._sparse
            at = np.searchsorted(known, ids).clip(max=len(known) - 1)
            ids = np.where(known[at] == ids, their_rows[at], -1)
        if len(ids) and ids.min() < 0:
            raise KeyError("an item without a vector row was read")
        return ids

    def nbytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0
