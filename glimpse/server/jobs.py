"""Writes run one at a time on a writer thread, so searches keep answering meanwhile.

Each job opens its own :class:`~glimpse.Collection` for writing: the reader's in-memory
index is never touched by the writer thread, and readers pick up each committed batch by
generation, as readers in other processes do. The collection's ``flock`` still stops a
second writer (``glimpse index`` in a shell, another server): the job then fails with
"locked by pid N".
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..collection import Collection
from ..storage import CollectionLockedError
from .errors import milvus_errors

log = logging.getLogger(__name__)

#: (collection, progress callback) -> a JSON-able report.
Work = Callable[[Collection, Callable[[int, int], None]], dict]


@dataclass
class JobState:
    id: int
    kind: str
    state: str = "queued"
    done: int = 0
    total: int | None = None
    result: dict | None = None
    error: str | None = None
    locked: bool = False  # failed because another process holds the write lock
    unwritable: bool = False  # failed because the collection is gone or damaged under the server
    future: Future | None = field(default=None, repr=False)


class Writer:
    def __init__(self, open_collection: Callable[[], Collection], keep: int = 200):
        self._open = open_collection
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glimpse-writer")
        self._jobs: OrderedDict[int, JobState] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self._next_id = 1

    def submit(self, kind: str, work: Work) -> JobState:
        with self._lock:
            job = JobState(self._next_id, kind)
            self._next_id += 1
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:  # forget the oldest finished jobs
                oldest = next(iter(self._jobs.values()))
                if oldest.state in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
        job.future = self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: int) -> JobState | None:
        with self._lock:
            return self._jobs.get(job_id)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: JobState, work: Work) -> None:
        job.state = "running"

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            with self._open() as col:
                job.result = work(col, progress)
            job.state = "done"
        except CollectionLockedError as exc:
            job.error, job.locked, job.state = str(exc), True, "failed"
        except (OSError, sqlite3.DatabaseError, *milvus_errors()) as exc:
            # its files damaged or removed under the server, or its Milvus server not answering
            message = getattr(exc, "message", None) or exc  # pymilvus's str() wraps the message in its code
            job.error, job.unwritable, job.state = f"the collection cannot be written: {message}", True, "failed"
        except ValueError as exc:
            job.error, job.state = str(exc), "failed"
        except Exception as exc:  # a bug: keep the server up, tell the client, log the trace
            log.exception("write job %d failed", job.id)
            job.error, job.state = f"internal error: {type(exc).__name__}: {exc}", "failed"
