"""``glimpse eval --backend``: the configurations scored through a Milvus collection's search.

``--backend milvus`` runs Milvus Lite on a temporary file for the run; a ``milvus-lite:///…``
or ``milvus://HOST:PORT/NAME`` URI names a Milvus of the user's. Each scorer's database goes
into a Milvus collection of its own (:class:`~glimpse.milvus.index.MilvusIndex`, the backend a
Milvus-backed glimpse collection searches: codes then float16 re-rank, or Milvus's exact float
index), and every one is dropped when the run ends.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..codes import Binarizer

LOCAL = "local"
#: ``--backend milvus``: Milvus Lite on a file of its own, for this run only.
LITE_FOR_THE_RUN = "milvus"


class MilvusPlace:
    """A Milvus for one eval run: one client, and the Milvus collections made through it."""

    def __init__(self, backend: str):
        from ..milvus.connect import connect, parse_uri
        from ..milvus.index import server_version

        self._scratch = None
        if backend == LITE_FOR_THE_RUN:
            self._scratch = Path(tempfile.mkdtemp(prefix="glimpse-eval-milvus-"))
            backend = f"milvus-lite://{self._scratch}/eval.db"
        self.target = parse_uri(backend)
        self.client = connect(self.target)
        self.version = server_version(self.client)
        self.made: list[str] = []

    def describe(self) -> str:
        """For the report: which Milvus, and its version (Milvus Lite reports none: 2.5)."""
        kind = "Milvus Lite" if self.target.scheme == "milvus-lite" else f"Milvus server {self.target.address}"
        return f"{kind} {'.'.join(map(str, self.version))}"

    def index(self, database: np.ndarray, binarizer: Binarizer | None):
        """A new Milvus collection holding ``database`` under ids 0..n-1 (and its codes)."""
        from ..milvus.index import MAX_LIMIT, MilvusIndex, index_name

        if len(database) > MAX_LIMIT:
            raise ValueError(f"eval on Milvus ranks every database image in one search, and Milvus returns at most "
                             f"{MAX_LIMIT:,} results: this database has {len(database):,} (use --backend local)")
        name = f"{self.target.name}_eval{len(self.made)}"
        stale = index_name(name, binarizer.fit_id if binarizer is not None else None)
        if self.client.has_collection(stale):  # left by a run that was killed
            self.client.drop_collection(stale)
        index = MilvusIndex(self.client, name, database.shape[1], binarizer=binarizer, version=self.version)
        self.made.append(index.name)
        index.add(np.arange(len(database), dtype=np.int64), database)
        return index

    def close(self) -> None:
        from ..milvus.connect import release

        for name in self.made:
            self.client.drop_collection(name)
        self.client.close()
        release(self.target)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def open_place(backend: str) -> MilvusPlace | None:
    """None for the in-process backends (``local``), else the Milvus that ``backend`` names.

    ValueError names what ``backend`` may be."""
    if backend == LOCAL:
        return None
    if backend != LITE_FOR_THE_RUN and not backend.startswith(("milvus-lite://", "milvus://")):
        raise ValueError(f"--backend {backend!r}: use local, milvus (Milvus Lite for this run), "
                         "milvus-lite:///path/eval.db or milvus://HOST:PORT/NAME")
    return MilvusPlace(backend)
