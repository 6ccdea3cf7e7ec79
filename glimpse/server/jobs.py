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
from ..milvus.connect import ServerUnreachableError, milvus_errors

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
    after: Callable[[bool], str] | None = field(default=None, repr=False)  # see Writer.submit


class Writer:
    def __init__(self, open_collection: Callable[[], Collection], keep: int = 200):
        self._open = open_collection
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glimpse-writer")
        self._jobs: OrderedDict[int, JobState] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self._next_id = 1

    def submit(self, kind: str, work: Work, after: Callable[[bool], str] | None = None) -> JobState:
        """Queue ``work``; ``after(done)``, if given, runs once it has ended, done or failed, even
        when the collection could not be opened, and what it returns is added to a failure's error."""
        with self._lock:
            job = JobState(self._next_id, kind, after=after)
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
        for job in list(self._jobs.values()):  # queued, never run: they end here
            if job.after is not None:
                job.error = "the server stopped before this job ran"
                self._end(job)

    def _run(self, job: JobState, work: Work) -> None:
        job.state = "running"
        ended = "failed"
        try:
            ended = self._attempt(job, work)
        finally:
            self._end(job, ended)

    @staticmethod
    def _end(job: JobState, ended: str = "failed") -> None:
        """The job's ``after``, then its final state (what a client polling it sees last)."""
        after, job.after = job.after, None
        if after is not None:
            note = after(ended == "done")
            if job.error is not None:
                job.error += note
        job.state = ended

    def _attempt(self, job: JobState, work: Work) -> str:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            with self._open() as col:
                job.result = work(col, progress)
            return "done"
        except CollectionLockedError as exc:
            job.error, job.locked = str(exc), True
        except (OSError, sqlite3.DatabaseError, ServerUnreachableError, *milvus_errors()) as exc:
            # its files damaged or removed under the server, or its Milvus server not answering
            message = getattr(exc, "message", None) or exc  # pymilvus's str() wraps the message in its code
            job.error, job.unwritable = f"the collection cannot be written: {message}", True
        except ValueError as exc:
            job.error = str(exc)
        except Exception as exc:  # a bug: keep the server up, tell the client, log the trace
            log.exception("write job %d failed", job.id)
            job.error = f"internal error: {type(exc).__name__}: {exc}"
        return "failed"
