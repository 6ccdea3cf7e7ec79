"""The binarizer interface: float vectors -> packed binary codes for Hamming scans.

Bit layout (matches FAISS). ``encode`` returns uint8 ``(n, bits // 8)``; bit ``j`` of the code
is bit ``j % 8`` (least significant first) of byte ``j // 8`` -- ``np.packbits(...,
bitorder="little")``, the layout of ``faiss.real_to_binary`` / ``fvec2bitvec``. Hamming
distance itself (``faiss.IndexBinaryFlat``, ``IndexBinaryHNSW``, ...) does not depend on the
order, but anything that unpacks codes (asymmetric scoring, ``unpack_codes``) does, so always
go through :func:`pack_bits` / :func:`unpack_codes`. A set bit means +1, a clear bit -1.

Asymmetric scoring. ``query_vector(q)`` maps a float query into the ±1 code space so that
``query_vector(q) @ unpack_codes(code, bits)`` approximates the float similarity (higher is
more similar): the float query is scored against the *decoded* codes, which loses only the
database side's quantisation error, not the query's. What exactly it approximates is each
kind's choice, made by measurement: ``sign``/``itq`` score the centred query against the
scaled signs (≈ <q - mean, x - mean>), ``learned`` scores q against its trained decoder.

Files. ``save`` writes one ``.npz`` (never pickle; loads with ``allow_pickle=False``),
atomically (temporary file in the same folder, then ``os.replace``), carrying ``kind``,
``format``, ``version``, ``bits``, ``dim``, ``seed``, the JSON options and the fitted arrays,
stored as float16: ``fit`` rounds the parameters to float16 (and back to float32 to compute),
so a loaded binarizer encodes exactly as the one that was fitted, at half the file size.
``fit_id`` names one fit by its stored content: codes keep it to tell which fit made them.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..atomic import write_atomic
from ..storage.arrays import DamagedFileError, read_arrays

#: Version of the file layout (keys and their meaning), independent of each kind's version.
FILE_FORMAT = 1

MIN_BITS = 8
MAX_BITS = 4096

#: Precision of the stored parameters (see the module docstring).
PARAM_DTYPE = np.float16

#: Called with (steps done, steps) while a binarizer fits; only long fits (``learned``) call it.
FitProgress = Callable[[int, int], None]


def pack_bits(positive: np.ndarray) -> np.ndarray:
    """Boolean (n, bits) -> uint8 (n, bits // 8), FAISS bit order (LSB first in each byte)."""
    return np.packbits(np.asarray(positive, dtype=bool), axis=1, bitorder="little")


def unpack_codes(codes: np.ndarray, bits: int | None = None) -> np.ndarray:
    """uint8 (n, bits // 8) codes -> float32 (n, bits) of ±1 (set bit = +1)."""
    codes = np.asarray(codes, dtype=np.uint8)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, bytes), got shape {codes.shape}")
    bits = codes.shape[1] * 8 if bits is None else bits
    unpacked = np.unpackbits(codes, axis=1, count=bits, bitorder="little")
    return unpacked.astype(np.float32) * 2.0 - 1.0


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Packed codes (n, B) and (m, B) -> int (n, m) Hamming distances (numpy; for tests/small)."""
    table = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)
    x = np.bitwise_xor(np.asarray(a, np.uint8)[:, None, :], np.asarray(b, np.uint8)[None, :, :])
    return table[x].sum(axis=2)


class Binarizer(ABC):
    """Fit on float vectors, then encode them into ``bits``-bit packed codes.

    Subclasses set ``name`` and ``version`` (bump the version whenever the same seed and
    data would give different codes) and implement ``_fit``, ``_project`` (the real values
    whose signs are the bits), ``_query_vector`` and ``_params``/``_set_params``.
    """

    #: Registered kind, stored in files and used by ``load_binarizer`` to dispatch.
    name: ClassVar[str]
    #: Algorithm version; a file with another version is refused.
    version: ClassVar[int]

    def __init__(self, bits: int = 256, seed: int = 0) -> None:
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
            raise TypeError(f"bits must be an int, not {type(bits).__name__}")
        if bits % 8 or not MIN_BITS <= bits <= MAX_BITS:
            raise ValueError(f"bits must be a multiple of 8 in [{MIN_BITS}, {MAX_BITS}], got {bits}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.bits = int(bits)
        self.seed = int(seed)
        #: Input dimension; None until fitted.
        self.dim: int | None = None
        self._fit_progress: FitProgress | None = None
        self._fit_population = 0  # while fitting: the rows the fit's vectors were sampled from

    # -- public API ---------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return self.dim is not None

    @property
    def code_bytes(self) -> int:
        return self.bits // 8

    def min_fit_vectors(self, dim: int) -> int:
        """Fewest training vectors ``fit`` accepts for this input dimension."""
        return 2

    def check_dim(self, dim: int) -> None:
        """Raise ValueError when this binarizer cannot be fitted on ``dim``-dimensional vectors."""

    def options(self) -> dict[str, Any]:
        """Constructor options beyond bits and seed (JSON-serialisable); saved with the file."""
        return {}

    def fit(self, vectors: np.ndarray, progress: FitProgress | None = None, population: int | None = None) -> Binarizer:
        """Learn the code from float vectors (n, dim); returns self. Deterministic for a seed.
        ``population``: how many rows the vectors were sampled from (default n), for fits whose
        structure grows with the collection (``ivf-rabitq``'s lists)."""
        x = self._as_matrix(vectors, "fit")
        n, dim = x.shape
        self.check_dim(dim)
        need = self.min_fit_vectors(dim)
        if n < need:
            raise ValueError(
                f"{self.name}: fit needs at least {need} vectors for {self.bits} bits "
                f"in {dim} dimensions, got {n}"
            )
        population = n if population is None else population
        if isinstance(population, bool) or not isinstance(population, (int, np.integer)) or population < n:
            raise ValueError(f"{self.name}: population must be an int of at least the {n} vectors given, got {population!r}")
        self._fit_progress, self._fit_population = progress, int(population)
        try:
            self._fit(x)
        finally:
            self._fit_progress, self._fit_population = None, 0
        self._set_params(self._stored_params(), dim)  # compute with what the file will hold
        self.dim = dim
        return self

    @property
    def fit_id(self) -> str:
        """A digest of the fitted binarizer's stored content: equal ids encode alike."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: an unfitted binarizer has no fit id")
        digest = hashlib.sha256(json.dumps(
            [self.name, self.version, self.bits, self.dim, self.seed, self.options()], sort_keys=True).encode())
        for key, value in sorted(self._stored_params().items()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        return digest.hexdigest()[:16]

    def _stored_params(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v).astype(PARAM_DTYPE) for k, v in self._params().items()}

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Float vectors (n, dim) -> packed codes uint8 (n, bits // 8) (FAISS bit order)."""
        x = self._checked(vectors, "encode")
        out = np.empty((x.shape[0], self.code_bytes), np.uint8)
        for start in range(0, x.shape[0], 8192):  # bounded memory for big inputs
            out[start : start + 8192] = pack_bits(self._project(x[start : start + 8192]) > 0)
        return out

    def query_vector(self, vectors: np.ndarray) -> np.ndarray:
        """Float queries (n, dim) -> float32 (n, bits) for asymmetric scoring.

        ``query_vector(q) @ unpack_codes(codes).T`` approximates the float similarity
        ``q @ x.T`` (see the module docstring for each kind's estimate); higher is more similar.
        """
        x = self._checked(vectors, "query_vector")
        return np.ascontiguousarray(self._query_vector(x), dtype=np.float32)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted binarizer to one .npz file, atomically. Returns the path."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: cannot save an unfitted binarizer; call fit first")
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "kind": np.array(self.name),
            "format": np.array(FILE_FORMAT),
            "version": np.array(self.version),
            "bits": np.array(self.bits),
            "dim": np.array(self.dim),
            "seed": np.array(self.seed),
            "options": np.array(json.dumps(self.options(), sort_keys=True)),
        }
        for key, value in self._stored_params().items():
            arrays["p_" + key] = value
        return write_atomic(path, lambda f: np.savez(f, **arrays))  # a file object: numpy adds no ".npz" suffix

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Binarizer:
        """Read a file written by ``save`` of this kind (``load_binarizer`` dispatches on kind)."""
        header, params = read_file(path)
        if header["kind"] != cls.name:
            raise ValueError(f"{path}: holds a {header['kind']!r} binarizer, not {cls.name!r}")
        if header["version"] != cls.version:
            raise ValueError(
                f"{path}: {cls.name} binarizer version {header['version']} "
                f"is not supported (this code reads version {cls.version})"
            )
        obj = cls(bits=header["bits"], seed=header["seed"], **header["options"])
        obj._set_params(params, header["dim"])
        obj.dim = header["dim"]
        return obj

    def __repr__(self) -> str:
        state = f"dim={self.dim}" if self.fitted else "unfitted"
        opts = "".join(f", {k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}(bits={self.bits}, seed={self.seed}{opts}; {state})"

    # -- for subclasses -------------------------------------------------------------------

    @abstractmethod
    def _fit(self, x: np.ndarray) -> None:
        """Learn parameters from float32 (n, dim), n >= min_fit_vectors(dim)."""

    @abstractmethod
    def _project(self, x: np.ndarray) -> np.ndarray:
        """float32 (n, dim) -> real (n, bits); bit j is set where column j > 0."""

    @abstractmethod
    def _query_vector(self, x: np.ndarray) -> np.ndarray:
        """float32 (n, dim) -> (n, bits) for asymmetric scoring."""

    @abstractmethod
    def _params(self) -> dict[str, np.ndarray]:
        """Fitted float arrays to save (stored as ``PARAM_DTYPE``)."""

    @abstractmethod
    def _set_params(self, params: dict[str, np.ndarray], dim: int) -> None:
        """Restore what ``_params`` returned; raise ValueError if inconsistent."""

    # -- helpers ----------------------------------------------------------------------------

    def _as_matrix(self, vectors: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(vectors)
        if x.ndim != 2:
            raise ValueError(f"{self.name}.{what}: vectors must be 2-D (n, dim), got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise TypeError(f"{self.name}.{what}: vectors must be real numbers, not {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1] == 0:
            raise ValueError(f"{self.name}.{what}: vectors have zero dimensions")
        if not np.isfinite(x).all():
            raise ValueError(f"{self.name}.{what}: vectors contain NaN or infinity")
        return x

    def _checked(self, vectors: np.ndarray, what: str) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError(f"{self.name}: {what} before fit; call fit(vectors) first")
        x = self._as_matrix(vectors, what)
        if x.shape[1] != self.dim:
            raise ValueError(
                f"{self.name}.{what}: vectors have {x.shape[1]} dimensions, "
                f"the binarizer was fitted on {self.dim}"
            )
        return x


def read_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A saved binarizer file -> (header, parameter arrays). Raises ValueError if malformed."""
    try:
        files = read_arrays(path, ("kind", "format", "version", "bits", "dim", "seed", "options"),
                            "codes are fitted again by the next write")
    except DamagedFileError as exc:  # codes are derived state: the caller fits them again
        raise ValueError(f"not a binarizer file: {exc}") from None
    if int(files["format"]) != FILE_FORMAT:
        raise ValueError(f"{path}: binarizer file format {int(files['format'])} is not supported")
    header = {
        "kind": str(files["kind"]),
        "version": int(files["version"]),
        "bits": int(files["bits"]),
        "dim": int(files["dim"]),
        "seed": int(files["seed"]),
        "options": json.loads(str(files["options"])),
    }
    params = {k[2:]: v for k, v in files.items() if k.startswith("p_")}
    return header, params


def orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A (rows, cols) float64 matrix with orthonormal columns (rows >= cols), Haar-random."""
    a = rng.standard_normal((rows, cols))
    q, r = np.linalg.qr(a)
    return q * np.sign(np.diag(r))[None, :]
