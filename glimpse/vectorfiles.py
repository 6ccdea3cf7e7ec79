"""Read embeddings computed elsewhere, for ``glimpse import-vectors``: .npy or .parquet, and keys.

A .npy file is read batch by batch (:class:`NpyRows`), so a 10M x D array is never held in RAM by
:meth:`glimpse.Collection.add_vectors`; its rows are read with plain file reads, not a memory map, so a
file cut short meanwhile is a ValueError, not a crash (SIGBUS). A .parquet file (read with pyarrow,
when installed) is decoded batch by batch into one float32 array.
"""

from __future__ import annotations

import codecs
import contextlib
import math
import os
import threading
from pathlib import Path

import numpy as np

NPY_MAGIC = b"\x93NUMPY"
#: Byte order marks of the Unicode files that are not UTF-8 (Windows tools write UTF-16), longest first.
_OTHER_UNICODE = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                  (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
PARQUET_MISSING = "reading .parquet files needs pyarrow: pip install pyarrow (or save the vectors as .npy)"


def read_vectors(path: Path, column: str | None = None) -> np.ndarray | NpyRows:
    """An (n, dim) float array from ``path``: a .npy file's rows (read a slice at a time), or the list
    column ``column`` of a .parquet file (by default its only list column)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if column is not None:
            raise ValueError("--column is for .parquet files; a .npy file holds one array")
        vectors = _npy(path)
    elif suffix == ".parquet":
        vectors = _parquet(path, column)
    else:
        raise ValueError(f"{path}: give a .npy or .parquet file of vectors")
    if vectors.ndim != 2 or not len(vectors) or not vectors.shape[1]:
        raise ValueError(f"{path} holds an array of shape {vectors.shape}, not (vectors, dims) with at least one of each")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise ValueError(f"{path} holds {vectors.dtype} values, not floating-point vectors")
    return vectors


def read_keys(path: Path) -> list[str]:
    """One key per line (UTF-8; a byte order mark, blank lines at the end and Windows line ends are allowed)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark (Notepad) is not part of the first key
    except UnicodeDecodeError as exc:
        utf = next((name for mark, name in _OTHER_UNICODE if exc.object.startswith(mark)), None)
        found = f"{utf} text" if utf else f"not UTF-8 text (byte {exc.start})"
        raise ValueError(f"{path} is {found}: save the keys as UTF-8, one per line") from None
    except OSError as exc:
        raise ValueError(f"cannot read keys file {path}: {exc.strerror or exc}") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and lines[-1] == "":  # an editor's final newline, or a blank line after it
        lines.pop()
    return lines


def parquet_keys(path: Path, column: str) -> list[str]:
    """The string column ``column`` of a .parquet file, as keys."""
    pq = _pyarrow_parquet()
    file = _open_parquet(pq, path)
    if column not in file.schema_arrow.names:
        raise ValueError(f"{path} has no column {column!r}; it has {', '.join(file.schema_arrow.names)}")
    with _readable(path):
        return file.read(columns=[column]).column(0).to_pylist()


class NpyRows:
    """The array of a .npy file, read from the file a slice of rows at a time (``rows[a:b]``, a copy).

    Its header is checked against the file's size when opened, and every read against what it
    got back, so a file cut short, even while it is read, is one ValueError naming it."""

    def __init__(self, path: Path):
        self.path = path
        self._file = path.open("rb", buffering=0)
        try:
            self.shape, self.dtype, self._fortran, self._start = _npy_header(self._file)
        except BaseException:
            self._file.close()
            raise
        self.ndim = len(self.shape)
        self._lock = threading.Lock()  # one seek-and-read at a time on the shared file
        need = self._start + math.prod(self.shape) * self.dtype.itemsize
        size = self._size()
        if size < need:
            self._file.close()
            raise ValueError(f"it is cut short ({size:,} bytes; its header needs {need:,})")

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or self.ndim != 2:
            raise TypeError("NpyRows reads slices of rows of a 2-d array")
        first, stop, step = rows.indices(len(self))
        if step != 1:
            raise TypeError("NpyRows reads contiguous slices of rows")
        count, (n, dim), size = max(stop - first, 0), self.shape, self.dtype.itemsize
        if self._fortran:  # column-major: each column's slice lies apart from the next
            columns = [self._read(self._start + (j * n + first) * size, count) for j in range(dim)]
            return np.stack(columns, axis=1) if columns else np.empty((count, 0), self.dtype)
        return self._read(self._start + first * dim * size, count * dim).reshape(count, dim)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    __del__ = close  # the file goes with the last reference, without a ResourceWarning

    def _size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def _read(self, offset: int, count: int) -> np.ndarray:
        out = np.empty(count, self.dtype)
        view, got = memoryview(out).cast("B"), 0
        with self._lock:
            self._file.seek(offset)
            while got < len(view):
                n = self._file.readinto(view[got:])
                if not n:
                    raise ValueError(f"{self.path} was cut short while it was read (now {self._size():,} bytes): "
                                     "import it again once it is whole")
                got += n
        return out


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, Fortran order, where the data starts) from an open .npy file's header."""
    # Without the magic check numpy takes the file for a pickle and suggests allow_pickle=, which is no fix.
    if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
        raise ValueError("it does not start with numpy's .npy header (save the array with numpy.save)")
    f.seek(0)
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if dtype.hasobject:
        raise ValueError("it holds Python objects (a pickle), not numbers: save a float array")
    return shape, dtype, fortran, f.tell()


def _npy(path: Path) -> NpyRows:
    try:
        return NpyRows(path)
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty or cut-short file
        raise ValueError(f"{path} is not a readable .npy array of numbers: {exc}") from None


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(PARQUET_MISSING) from None
    return pq


def _open_parquet(pq, path: Path):
    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/ArrowIOError kinds
        raise ValueError(f"{path} is not a readable .parquet file: {exc}") from None


def _parquet(path: Path, column: str | None) -> np.ndarray:
    pq = _pyarrow_parquet()
    import pyarrow as pa

    file = _open_parquet(pq, path)
    schema = file.schema_arrow
    lists = [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_large_list(f.type)
             or pa.types.is_fixed_size_list(f.type)]
    if column is None:
        if len(lists) != 1:
            raise ValueError(f"{path} has {len(lists)} list columns ({', '.join(lists) or 'none'}): "
                             "name the vectors' column with --column")
        column = lists[0]
    elif column not in lists:
        raise ValueError(f"{path} has no list column {column!r}; its list columns: {', '.join(lists) or 'none'}")
    if not pa.types.is_floating(schema.field(column).type.value_type):
        raise ValueError(f"column {column!r} of {path} holds {schema.field(column).type.value_type}, not floats")
    with _readable(path):
        return _parquet_rows(file, path, column)


@contextlib.contextmanager
def _readable(path: Path):
    """Reading a .parquet file's data: pages cut short or overwritten (its footer read fine) are a ValueError naming it."""
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path} is not a readable .parquet file: {exc}") from None


def _parquet_rows(file, path: Path, column: str) -> np.ndarray:
    import pyarrow.compute as pc

    out: np.ndarray | None = None
    row = 0
    for batch in file.iter_batches(columns=[column], batch_size=65536):
        values = batch.column(0)
        if values.null_count:
            raise ValueError(f"column {column!r} of {path} has empty (null) rows")
        lengths = pc.list_value_length(values).to_numpy()
        dim = int(lengths[0]) if len(lengths) else 0
        if len(lengths) and (lengths != dim).any():
            raise ValueError(f"the vectors in column {column!r} of {path} differ in length "
                             f"(row {row + int(np.argmax(lengths != dim))} has {int(lengths[lengths != dim][0])}, not {dim})")
        if out is None:
            out = np.empty((file.metadata.num_rows, dim), np.float32)
        elif dim != out.shape[1]:
            raise ValueError(f"the vectors in column {column!r} of {path} differ in length ({dim} and {out.shape[1]})")
        flat = values.flatten()
        if flat.null_count:  # to_numpy would make them NaN, which add_vectors would call a NaN
            at = row + int(np.argmax(flat.is_null().to_numpy(zero_copy_only=False))) // dim
            raise ValueError(f"column {column!r} of {path} has empty (null) values in row {at}")
        out[row : row + len(values)] = flat.to_numpy(zero_copy_only=False).reshape(len(values), dim)
        row += len(values)
    return out if out is not None else np.zeros((0, 0), np.float32)
