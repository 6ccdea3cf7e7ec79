"""A search backend on Milvus: one Milvus collection per glimpse collection and code fit.

Layouts, by what the server allows:

* ``codes``: Milvus 2.4+ (Milvus Lite 2.5, servers 2.4/2.5) with binary codes configured: two
  vector fields in one row, ``codes`` (BINARY_VECTOR: BIN_FLAT/HAMMING, or BIN_IVF_FLAT on a
  server) for the shortlist and ``vector`` (FLOAT16_VECTOR) for the exact re-rank, which reads
  the shortlist's vectors back from Milvus. The fitted binarizer makes the codes, as locally.
* ``float``: no codes configured, or a 2.3 server (one vector field per collection): the float
  vectors in Milvus's exact index (FLAT, inner product), or HNSW/IVF_FLAT on a server where
  the URI asks for it; FLOAT16 from 2.4, FLOAT before.

Filters arrive as a boolean expression over the row's scalar fields (:mod:`.expr`), or as
the allowed ids; Milvus applies them before ranking. Every request runs with consistency
"Strong" (searches: unless the URI says otherwise): a search sees every committed insert and
delete, whichever worker made it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..codes import Binarizer
from ..backends.base import CodeStage, SearchBackend
from .expr import both, ids_expression

#: Scalar columns of a row (:mod:`.expr` filters on them), from ``attributes(ids)``.
Attributes = Callable[[np.ndarray], dict[str, list]]
#: Of some ids, those a file still shows, each with its first file (``path``, ``bytes``, ``date_ns``).
Holders = Callable[[np.ndarray], dict]
SCALARS = {"path": "VARCHAR", "bytes": "INT64", "date_ns": "INT64", "width": "INT64", "height": "INT64"}
MAX_PATH = 65535  # VARCHAR's limit, in bytes
#: Milvus's largest ``limit`` for one search.
MAX_LIMIT = 16384
#: Rows per insert request: gRPC messages stay well under Milvus's 64 MB default.
BATCH_BYTES = 16 << 20
STRONG = "Strong"
#: Milvus's consistency levels, by the ``?consistency=`` of a URI (searches only).
CONSISTENCY = {"strong": STRONG, "bounded": "Bounded", "session": "Session", "eventually": "Eventually"}
#: Ids per query by id (the expression stays short).
IDS_PER_QUERY = 8192
#: Milvus's index on the searched field, by the ``?index=`` of a server URI: ``flat`` (exact: FLAT on
#: floats, BIN_FLAT on codes, the default), ``hnsw`` (HNSW on floats) or ``ivf`` (IVF_FLAT on
#: floats, BIN_IVF_FLAT on codes; with codes, ``hnsw`` also means BIN_IVF_FLAT). Build and search
#: parameters as measured in benchmarks/milvus.py.
INDEXES = ("flat", "hnsw", "ivf")
HNSW_BUILD = {"M": 16, "efConstruction": 200}
HNSW_EF = 128  # candidates per HNSW search (at least k)
IVF_LISTS = 1024
IVF_PROBES = 32


def index_spec(kind: str, codes: bool) -> tuple[str, dict]:
    """(Milvus index type, build parameters) of ``kind`` on the codes or on the float vectors."""
    if kind == "flat":
        return ("BIN_FLAT" if codes else "FLAT"), {}
    if codes or kind == "ivf":
        return ("BIN_IVF_FLAT" if codes else "IVF_FLAT"), {"nlist": IVF_LISTS}
    return "HNSW", HNSW_BUILD


def search_params(index_type: str, metric: str, limit: int) -> dict:
    """Milvus search parameters for a search of ``limit`` results on an index of that type."""
    params = {"HNSW": {"ef": max(HNSW_EF, limit)}, "IVF_FLAT": {"nprobe": IVF_PROBES},
              "BIN_IVF_FLAT": {"nprobe": IVF_PROBES}}.get(index_type, {})
    return {"metric_type": metric, "params": params}


def index_name(name: str, fit: str | None) -> str:
    """The Milvus collection of glimpse collection ``name`` for a code fit (None: floats only)."""
    return f"{name}_{fit[:12] if fit else 'float'}"


def index_collections(client, name: str) -> list[str]:
    """The Milvus collections holding glimpse collection ``name``'s rows (one per code fit)."""
    pattern = re.compile(re.escape(name) + r"_(float|[0-9a-f]{12})")
    return sorted(c for c in client.list_collections() if pattern.fullmatch(c))


def no_attributes(ids: np.ndarray) -> dict[str, list]:
    """Rows without files (precomputed vectors): the key is set by the caller, the rest zero."""
    zeros = [0] * len(ids)
    return {"path": [""] * len(ids), "bytes": zeros, "date_ns": zeros, "width": zeros, "height": zeros}


@contextmanager
def quiet(logger: str) -> Iterator[None]:
    """pymilvus's log lines about what glimpse handles (or what Milvus Lite lacks) left out."""
    log = logging.getLogger(logger)
    level, log.level = log.level, logging.CRITICAL
    try:
        yield
    finally:
        log.level = level


class SideCollection:
    """A keyed Milvus collection beside the vectors (settings, file rows): no vectors of its own,
    created by the first worker that writes, loaded by each on first use."""

    key_length = 256

    def __init__(self, client, name: str):
        self.client, self.name = client, name
        self._ready = False

    def _fields(self, schema) -> None:
        """Add the collection's fields after its key."""
        raise NotImplementedError

    def _exists(self) -> bool:
        if not self._ready and self.client.has_collection(self.name):
            load(self.client, self.name)
            self._ready = True
        return self._ready

    def _create(self) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=self.key_length)
        self._fields(schema)
        schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one vector field
        params = self.client.prepare_index_params()
        params.add_index("unused", index_type="FLAT", metric_type="L2")
        self.client.create_collection(self.name, schema=schema, index_params=params, consistency_level=STRONG)
        load(self.client, self.name)
        self._ready = True


def load(client, name: str, wait_s: float = 60, load_s: float = 3600) -> None:
    """Load collection ``name`` for searching; one that another worker is creating right now may
    have no index yet (Milvus creates the collection, then its indexes): wait for them. The load
    itself is polled (up to ``load_s``), each call within the client's deadline: a large
    collection may take longer to load than one call may wait."""
    import time

    from pymilvus import MilvusException
    from pymilvus.client.types import LoadState

    deadline = time.monotonic() + wait_s
    while True:
        try:
            with quiet("pymilvus.decorators"):
                client.load_collection(name, _async=True)
            break
        except MilvusException as exc:
            if "index not found" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    deadline = time.monotonic() + load_s
    while (state := client.get_load_state(name)["state"]) != LoadState.Loaded:
        if state != LoadState.Loading or time.monotonic() > deadline:
            raise MilvusException(message=f"Milvus did not load {name} ({state.name}) within {load_s:.0f} s")
        time.sleep(0.2)


def server_version(client) -> tuple[int, int]:
    """(major, minor) of the server; Milvus Lite (2.5) does not implement the call."""
    import grpc
    from pymilvus import MilvusException

    try:
        with quiet("pymilvus.decorators"):  # it logs the refusal as an error before raising
            text = client.get_server_version().lstrip("v")
    except (MilvusException, grpc.RpcError):
        return (2, 5)
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


class MilvusIndex(SearchBackend):
    """Vectors (and codes) of one glimpse collection in the Milvus collection ``name``.

    The Milvus collection is the persistent copy: opening an existing one reuses what it holds
    (``ids()``), so ``persist`` and ``restore`` have nothing to do.
    """

    def __init__(self, client, name: str, dim: int, *, binarizer: Binarizer | None = None,
                 oversample: int = 30, rerank: bool = True, attributes: Attributes = no_attributes,
                 version: tuple[int, int] | None = None, index: str | None = None, consistency: str = STRONG,
                 holders: Holders = lambda ids: {}):
        """``index``: Milvus's index on the searched field (:data:`INDEXES`); None keeps the
        existing collection's (FLAT for a new one), another one rebuilds it. ``consistency``:
        Milvus's consistency level for searches (every other request is "Strong"). ``holders``:
        the rows a file (of any worker) still shows, which :meth:`remove` keeps."""
        self.client, self.dim, self.attributes, self.holders = client, dim, attributes, holders
        self.consistency = consistency
        self.oversample, self.rerank = oversample, rerank
        version = version or server_version(client)
        two_fields = version >= (2, 4)
        self.binarizer = binarizer if binarizer is not None and two_fields else None
        self.layout = "codes" if self.binarizer is not None else "float"
        self.vector_type = "FLOAT16_VECTOR" if two_fields else "FLOAT_VECTOR"
        self.name = index_name(name, self.binarizer.fit_id if self.binarizer is not None else None)
        self._columns = None  # pymilvus's column-wise writer for this collection, made on first use
        self.field, self.metric = ("codes", "HAMMING") if self.binarizer is not None else ("vector", "IP")
        self.created = not client.has_collection(self.name)  # by this call
        if self.created:
            self._create(index or "flat")
        load(client, self.name)
        if index is not None and self.index_type() != index_spec(index, self.binarizer is not None)[0]:
            self._reindex(index)
            load(client, self.name)
        self._index_type = self.index_type()

    def _create(self, index: str) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", getattr(DataType, self.vector_type), dim=self.dim)
        if self.binarizer is not None:
            schema.add_field("codes", DataType.BINARY_VECTOR, dim=self.binarizer.bits)
        params = self.client.prepare_index_params()
        if self.field == "codes":  # the re-rank reads vectors by id; exact and asymmetric stages scan them
            params.add_index("vector", index_type="FLAT", metric_type="IP")
        self._add_index(params, index)
        for field, kind in SCALARS.items():
            schema.add_field(field, getattr(DataType, kind), **({"max_length": MAX_PATH} if kind == "VARCHAR" else {}))
        self.client.create_collection(self.name, schema=schema, index_params=params, consistency_level=STRONG)

    def _add_index(self, params, index: str) -> None:
        index_type, build = index_spec(index, self.binarizer is not None)
        params.add_index(self.field, index_type=index_type, metric_type=self.metric, params=build)

    def _reindex(self, index: str) -> None:
        """Replace Milvus's index on the searched field (the collection is unavailable meanwhile)."""
        self.client.release_collection(self.name)
        self.client.drop_index(self.name, self.field)
        params = self.client.prepare_index_params()
        self._add_index(params, index)
        self.client.create_index(self.name, params, sync=False)  # built meanwhile: load() waits for it

    def settle(self, timeout_s: float = 3600) -> None:
        """Seal what was written and wait until Milvus has indexed every row (searches work
        meanwhile: Milvus scans unindexed segments exhaustively)."""
        import time

        self.client.flush(self.name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.client.describe_index(self.name, self.field)
            if state.get("pending_index_rows", 0) == 0 and state.get("indexed_rows", 0) >= state.get("total_rows", 0):
                return
            time.sleep(1)
        raise TimeoutError(f"Milvus did not finish indexing {self.name} within {timeout_s:.0f} s")

    def index_type(self, wait_s: float = 60) -> str:
        """Milvus's index type on the searched field. A collection another worker is creating
        right now may not have it yet (Milvus makes the indexes one by one, and loading needs
        only the first): wait for it."""
        import time

        deadline = time.monotonic() + wait_s
        while not (described := self.client.describe_index(self.name, self.field)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Milvus collection {self.name} has no index on {self.field} after {wait_s:.0f} s")
            time.sleep(0.2)
        return described["index_type"]

    # -- writing ----------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert: adding an id again replaces its row, so a re-run after a crash duplicates nothing."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        step = max(1, BATCH_BYTES // (self.dim * 4 + 256))
        for start in range(0, len(ids), step):
            self._upsert(ids[start : start + step], vectors[start : start + step])

    def copy_from(self, source: str, skip: np.ndarray) -> int:
        """The rows of Milvus collection ``source`` (another fit of this glimpse collection) whose
        ids are not in ``skip``, with their scalars, coded by this one's binarizer; returns how many."""
        missing = np.setdiff1d(_ids(self.client, source), skip)
        step = max(1, min(IDS_PER_QUERY, BATCH_BYTES // (self.dim * 4 + 256)))
        for start in range(0, len(missing), step):
            rows = _rows(self.client, source, missing[start : start + step], ["vector", *SCALARS])
            ids = np.array([row["id"] for row in rows], dtype=np.int64)
            self._upsert(ids, _vectors(rows, self.dim), {f: [row[f] for row in rows] for f in SCALARS})
        return len(missing)

    def _upsert(self, ids: np.ndarray, vectors: np.ndarray, columns: dict[str, list] | None = None) -> None:
        """One upsert, by columns: pymilvus packs rows' vectors by appending bytes (quadratic in
        the batch: 5,000 rows of 512-d float16 took 44 s), columns in one join."""
        columns = columns or self.attributes(ids)
        if self.vector_type == "FLOAT16_VECTOR":
            stored = list(vectors.astype(np.float16))
        else:
            stored = vectors.tolist()
        data = [ids.tolist(), stored]
        if self.binarizer is not None:
            data.append([code.tobytes() for code in self.binarizer.encode(vectors)])
        data += [columns[field] for field in SCALARS]
        if self._columns is None:
            self._columns = self.client.columns(self.name)
        self._columns.upsert(data)

    def remove(self, ids: np.ndarray) -> int:
        """Delete the rows of ``ids`` that no file shows (``holders``: another worker may hold the
        same content under another path); a row kept whose file went names the first file left.
        A worker that writes a file of a deleted row just before the delete, after the check,
        saw the row there and does not push it: the check is made again after the delete and
        such rows are put back. Returns how many rows went."""
        ids = np.asarray(ids, dtype=np.int64)
        gone = 0
        for start in range(0, len(ids), IDS_PER_QUERY):
            gone += self._remove(ids[start : start + IDS_PER_QUERY])
        return gone

    def _remove(self, ids: np.ndarray) -> int:
        rows = {row["id"]: row for row in self.rows(ids, ["vector", *SCALARS])}
        kept = self.holders(np.fromiter(rows, np.int64, len(rows)))
        doomed = np.array(sorted(set(rows) - set(kept)), dtype=np.int64)
        if len(doomed):
            self.client.delete(self.name, ids=doomed.tolist())
        back = self.holders(doomed)
        held = {**kept, **back}
        self._repoint([rows[i] for i in sorted(held) if i in back or rows[i]["path"] != held[i].path], held)
        return len(doomed) - len(back)

    def _repoint(self, rows: list[dict], first: dict) -> None:
        """Upsert ``rows`` again with their item's first file now (path, bytes, date)."""
        if not rows:
            return
        ids = np.array([row["id"] for row in rows], dtype=np.int64)
        columns = {field: [row[field] for row in rows] for field in SCALARS}
        for field in ("path", "bytes", "date_ns"):
            columns[field] = [getattr(first[row["id"]], field) for row in rows]
        self._upsert(ids, _vectors(rows, self.dim).astype(np.float32), columns)

    # -- reading ----------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
               stage: CodeStage | None = None, where: str = "") -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`SearchBackend.search`; ``where`` is a Milvus filter expression (:mod:`.expr`).

        Milvus scans codes by Hamming distance only: ``hamming`` and ``cascade`` take the code
        shortlist, while ``asymmetric`` (what text queries get under ``auto``: their codes are far
        from every image's) and ``exact`` scan the float16 vectors in Milvus instead."""
        stage = stage or CodeStage()
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        expression = both(where, ids_expression(allowed) if allowed is not None else "")
        k = min(k, MAX_LIMIT)
        if allowed is not None and not len(allowed):
            k = 0
        scores = np.zeros((len(queries), k), np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if k == 0:
            return scores, ids
        codes = self.layout == "codes" and not stage.exact and stage.scoring != "asymmetric"
        found = (self._two_stage(queries, k, expression, stage.oversample or self.oversample,
                                 self.rerank if stage.rerank is None else stage.rerank)
                 if codes else self._float(queries, k, expression))
        for row, hits in enumerate(found):
            ids[row, : len(hits)] = [i for i, _ in hits]
            scores[row, : len(hits)] = [s for _, s in hits]
        return scores, ids

    def _float(self, queries: np.ndarray, k: int, expression: str) -> list[list[tuple[int, float]]]:
        data = queries.astype(np.float16) if self.vector_type == "FLOAT16_VECTOR" else queries.tolist()
        results = self.client.search(self.name, data=list(data), anns_field="vector", limit=k, filter=expression,
                                     search_params=search_params(self._index_type if self.field == "vector" else "FLAT", "IP", k),
                                     consistency_level=self.consistency)
        return [[(hit["id"], hit["distance"]) for hit in hits] for hits in results]

    def _two_stage(self, queries: np.ndarray, k: int, expression: str, oversample: int,
                   rerank: bool) -> list[list[tuple[int, float]]]:
        codes = self.binarizer.encode(queries)
        bits = self.binarizer.bits
        limit = min(k * oversample, MAX_LIMIT) if rerank else k
        results = self.client.search(self.name, data=[c.tobytes() for c in codes], anns_field="codes", limit=limit,
                                     filter=expression, search_params=search_params(self._index_type, "HAMMING", limit),
                                     consistency_level=self.consistency)
        found = []
        for query, hits in zip(queries, results):
            shortlist = [hit["id"] for hit in hits]
            if not rerank or not shortlist:
                found.append([(hit["id"], 1 - 2 * hit["distance"] / bits) for hit in hits[:k]])
                continue
            candidates, vectors = self.vectors(np.array(shortlist, dtype=np.int64))
            exact = vectors.astype(np.float32) @ query
            best = np.argsort(-exact, kind="stable")[:k]
            found.append(list(zip(candidates[best].tolist(), exact[best].tolist())))
        return found

    def missing(self, ids: np.ndarray) -> np.ndarray:
        """Those of ``ids`` that no row holds, ascending."""
        held = np.array([row["id"] for row in self.rows(ids, [])], dtype=np.int64)
        return np.setdiff1d(np.asarray(ids, dtype=np.int64), held)

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, ascending; their stored vectors), read back from Milvus."""
        rows = self.rows(ids, ["vector"])
        rows.sort(key=lambda row: row["id"])
        return np.array([row["id"] for row in rows], dtype=np.int64), _vectors(rows, self.dim)

    def rows(self, ids: np.ndarray, fields: list[str] = list(SCALARS)) -> list[dict]:
        """The rows of those of ``ids`` held (``id`` and ``fields``), in no order."""
        return _rows(self.client, self.name, ids, fields)

    def ids(self) -> np.ndarray:
        """Every id held, ascending."""
        return _ids(self.client, self.name)

    def paths(self, expression: str) -> tuple[np.ndarray, list[str]]:
        """(ids, paths) of the rows that ``expression`` lets through, in no order."""
        rows = _scan(self.client, self.name, expression or "id >= 0", ["path"])
        return np.array([row["id"] for row in rows], dtype=np.int64), [row["path"] for row in rows]

    def describe(self) -> dict:
        described = {"kind": "milvus", "collection": self.name, "layout": self.layout, "vectors": self.count(),
                     "vector_type": self.vector_type, "index": self._index_type}
        if self.binarizer is not None:
            described.update(bits=self.binarizer.bits, oversample=self.oversample, rerank=self.rerank)
        return described

    def count(self) -> int:
        return int(self.client.query(self.name, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def persist(self, directory: Path, generation: int) -> None:
        return None  # every upsert and delete is already in Milvus



def summary(described: dict) -> str:
    """What searches a Milvus collection, in words (``glimpse info``), from :meth:`MilvusIndex.describe`."""
    exact = described["index"] in ("FLAT", "BIN_FLAT")
    if described["layout"] == "codes":
        rerank = f"{described['vector_type'].lower()} re-rank x{described['oversample']}" if described["rerank"] else "no re-rank"
        return (f"Milvus {described['index']} on {described['bits']}-bit codes (Hamming"
                f"{'' if exact else ', approximate'}), {rerank}")
    return f"Milvus {described['index']} on {described['vector_type'].lower()} ({'exact' if exact else 'approximate'} inner product)"


def _vectors(rows: list[dict], dim: int) -> np.ndarray:
    """The ``vector`` field of query rows: float16 (bytes, 2.4+) or float32 (a list, 2.3)."""
    if not rows:
        return np.zeros((0, dim), np.float16)
    if isinstance(rows[0]["vector"], list) and rows[0]["vector"] and isinstance(rows[0]["vector"][0], bytes):
        return np.frombuffer(b"".join(row["vector"][0] for row in rows), dtype=np.float16).reshape(len(rows), dim)
    return np.array([row["vector"] for row in rows], dtype=np.float32).reshape(len(rows), dim)


def _rows(client, name: str, ids: np.ndarray, fields: list[str]) -> list[dict]:
    ids = np.asarray(ids, dtype=np.int64)
    return [row for start in range(0, len(ids), IDS_PER_QUERY)
            for row in client.query(name, filter=ids_expression(ids[start : start + IDS_PER_QUERY]), output_fields=fields)]


def _ids(client, name: str) -> np.ndarray:
    return np.array(sorted(row["id"] for row in _scan(client, name, "id >= 0", ["id"])), dtype=np.int64)


def _scan(client, name: str, expression: str, fields: list[str], consistency: str = STRONG) -> list[dict]:
    """Every row that ``expression`` lets through (``id`` and ``fields``): one query where they
    are fewer than a query returns (an iterator takes three round trips for one batch: on a
    server each waits for a time tick when Strong), else in batches."""
    held = client.query(name, filter=expression, output_fields=fields, limit=MAX_LIMIT, consistency_level=consistency)
    if len(held) < MAX_LIMIT:
        return held
    with quiet("pymilvus.orm.iterator"):  # Milvus Lite has no MVCC timestamp to give: a warning each time
        iterator = client.query_iterator(name, filter=expression, output_fields=fields, batch_size=MAX_LIMIT,
                                         consistency_level=consistency)
    held = []
    while batch := iterator.next():
        held.extend(batch)
    iterator.close()
    return held
