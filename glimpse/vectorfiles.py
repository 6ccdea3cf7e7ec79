"""Read embeddings computed elsewhere, for ``glimpse import-vectors``: .npy or .parquet, and keys.

A .npy file is memory-mapped, so a 10M x D array is read batch by batch by
:meth:`glimpse.Collection.add_vectors` and never held in RAM twice. A .parquet file (read
with pyarrow, when installed) is decoded batch by batch into one float32 array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NPY_MAGIC = b"\x93NUMPY"
PARQUET_MISSING = "reading .parquet files needs pyarrow: pip install pyarrow (or save the vectors as .npy)"


def read_vectors(path: Path, column: str | None = None) -> np.ndarray:
    """An (n, dim) float array from ``path``: a .npy file, or the list column ``column`` of a
    .parquet file (by default its only list column)."""
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
        raise ValueError(f"{path} is not UTF-8 text (byte {exc.start}): keys must be one per line") from None
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
    return file.read(columns=[column]).column(0).to_pylist()


def _npy(path: Path) -> np.ndarray:
    try:
        with path.open("rb") as f:
            # Without it numpy takes the file for a pickle and suggests allow_pickle=, which is no fix.
            if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
                raise ValueError("it does not start with numpy's .npy header (save the array with numpy.save)")
        return np.load(path, mmap_mode="r", allow_pickle=False)
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
    import pyarrow.compute as pc

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
        # Nulls inside a vector become NaN, which add_vectors refuses with the row's number.
        out[row : row + len(values)] = values.flatten().to_numpy(zero_copy_only=False).reshape(len(values), dim)
        row += len(values)
    return out if out is not None else np.zeros((0, 0), np.float32)
