"""Reading a collection's .npz/.npy files (caption adaptation, binarizer, upgrade map and order) whole
and checked: a damaged one is one error naming it and what to do, never numpy's or zipfile's own."""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterable

import numpy as np


class DamagedFileError(OSError):
    """A collection file that cannot be read whole (cut short, overwritten, of another kind). An
    OSError: the CLI says it in one sentence, the server answers 503, as for a damaged vector file."""


def read_arrays(path: str | os.PathLike[str], keys: Iterable[str], remedy: str) -> dict[str, np.ndarray]:
    """Every array of the .npz file ``path`` (a .npy file's one array under ``""``), read whole.

    A missing file raises FileNotFoundError; one that is damaged, or lacks any of ``keys``,
    :class:`DamagedFileError` whose message ends with ``remedy``."""
    try:
        with open(path, "rb") as f:
            start = f.read(6)
        if not start.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):  # else numpy would suggest loading it as a pickle
            raise ValueError("not a numpy file" if start else "empty")
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays = {"": loaded}
        else:
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}  # each member is read (and its CRC checked) here
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # EOFError: an empty file
        raise DamagedFileError(f"{os.fspath(path)} is damaged ({exc or type(exc).__name__}): {remedy}") from None
    missing = sorted(set(keys) - arrays.keys())
    if missing:
        raise DamagedFileError(f"{os.fspath(path)} is damaged (missing {', '.join(missing)}): {remedy}")
    return arrays
