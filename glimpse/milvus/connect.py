"""Where a Milvus-backed collection lives: its URI, the Milvus it names, and a client for it.

* ``milvus-lite:///path/photos.db``: Milvus Lite, embedded. This process starts the Milvus Lite
  2.5 binary on a private Unix socket; it serves that one file to one process at a time.
* ``milvus://HOST:PORT/NAME``: a Milvus server (standalone or cluster); ``NAME`` names the
  collection. ``GLIMPSE_MILVUS_TOKEN``, or ``GLIMPSE_MILVUS_USER`` and
  ``GLIMPSE_MILVUS_PASSWORD``, authenticate when the server asks for it.

Milvus Lite is started here rather than through the ``milvus_lite`` package's own launcher:
that package imports ``pkg_resources``, which setuptools 81 and later no longer ship.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import re
import socket
import subprocess
import tempfile
import threading
import uuid
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..extras import MissingExtraError, missing_extra, require

LITE = "milvus-lite"
SERVER = "milvus"
SCHEMES = (LITE, SERVER)
DEFAULT_PORT = 19530
#: What Milvus Lite accepts as a database file name (its own rule).
_LITE_NAME = re.compile(r"[A-Za-z0-9.\-_]{1,36}")
_COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")
#: Tries of one call to Milvus before it fails. pymilvus's own 75, waiting up to 3 s between
#: them, take ~210 s to report a stopped server; 6 wait 3.6 s in all (0.01 s, then x3 each).
#: Slow work (an index build, a load) is waited for by polling, each poll a call of its own.
TRIES = 6
#: pymilvus's back-off between those tries (0.01 s, then x3, at most 3 s each): 3.64 s.
BACK_OFF_S = sum(min(0.01 * 3**i, 3.0) for i in range(TRIES))
#: Seconds one call may wait for the server's answer (``?timeout=`` in the URI): a server that
#: accepts connections but never answers (frozen, or swapping) blocked glimpse for ever. Calls
#: that wait on slow work (an index build, a load) return at once and are polled.
DEFAULT_TIMEOUT_S = 30.0


class ServerUnreachableError(ValueError):
    """The Milvus server of a URI cannot be reached (a ValueError: the URI may be wrong)."""


class Bounded:
    """A pymilvus ``MilvusClient`` (or ORM ``Collection``, or a query iterator) whose calls give
    up after TRIES tries, each within ``timeout`` seconds; a call past its deadline is a
    ``MilvusException`` that names the server and what to check.

    Options reach only the call glimpse makes: pymilvus's calls inside it take no ``retry_times``
    (75 tries: minutes, once gRPC dropped the channel of a frozen server), some no timeout either
    (the query iterator's ``describe_collection``). So each call runs on a thread of its own and
    is waited for at most ``timeout`` plus the back-off between its tries; one still running then
    is abandoned and its channel replaced (:class:`_Channel`), which ends it."""

    _LOCAL = frozenset({"create_schema", "prepare_index_params", "close"})  # they call no server

    def __init__(self, inner, address: str, timeout: float, options: bool = True,
                 channel: _Channel | None = None) -> None:
        self._inner, self._address, self._timeout = inner, address, timeout
        self._options = options  # whether calls take pymilvus's retry_times and timeout (an iterator's do not)
        self._channel = channel or _Channel(inner._using)

    def __getattr__(self, name: str):
        value = getattr(self._inner, name)
        if name.startswith("_") or name in self._LOCAL or not callable(value):
            return value
        return functools.partial(self._call, name, value)

    def _call(self, name: str, method, *args, **kwargs):
        import grpc

        if self._options:
            kwargs = {"retry_times": TRIES, "timeout": self._timeout, **kwargs}
        renewals = self._channel.renewals
        answer: Future = Future()

        def run() -> None:
            try:
                answer.set_result(method(*args, **kwargs))
            except BaseException as exc:  # handed to the caller, which raises it
                answer.set_exception(exc)

        threading.Thread(target=run, name=f"milvus-{name}", daemon=True).start()
        if not wait([answer], self._timeout + BACK_OFF_S).done:
            self._channel.renew(renewals)
            raise self._unanswered(name)
        try:
            result = answer.result()
        except Exception as exc:
            late = isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            if not late and self._channel.renewals == renewals:
                raise
            # past its own deadline, or cut short: another call missed its deadline and closed the channel
            raise self._unanswered(name) from None
        if name.endswith("_iterator"):
            return Bounded(result, self._address, self._timeout, options=False, channel=self._channel)
        return result

    def _unanswered(self, name: str) -> Exception:
        from pymilvus import MilvusException

        return MilvusException(message=(
            f"{self._address} gave no answer to {name} within {self._timeout:g} s: check that the server is "
            "running and not overloaded (its logs, its machine's load), or allow longer with ?timeout=SECONDS "
            "in the collection URI"))

    def columns(self, name: str) -> Bounded:
        """The ORM ``Collection`` ``name`` on this connection: it writes by columns."""
        from pymilvus import Collection

        return Bounded(self._call("Collection", Collection, name, using=self._inner._using), self._address,
                       self._timeout, channel=self._channel)


class _Channel:
    """The pymilvus connection (an alias) that a client and the collections and iterators made
    from it share. A call that missed its deadline leaves a thread waiting on its gRPC channel:
    :meth:`renew` closes that channel, and the abandoned call's next try fails at once and ends
    it, after the alias got a fresh channel for the calls that follow (it connects on their first
    try, within their deadline: nothing waits here, so the lock is held for an instant)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.renewals = 0  # calls running across a renewal fail for the same reason as the one that caused it
        self._lock = threading.Lock()

    def renew(self, seen: int) -> None:
        """A fresh channel, unless another call renewed it after ``seen`` renewals (its channel then is new)."""
        from pymilvus import connections

        with self._lock:
            handlers = connections._alias_handlers  # pymilvus 2.5 has no public way to replace a channel
            stale = handlers.get(self.alias)
            if self.renewals != seen or stale is None:  # renewed already, or the client closed
                return
            fresh = copy.copy(stale)  # the same address, credentials and schema cache
            fresh._channel, fresh.callbacks = None, []
            fresh._setup_grpc_channel()
            handlers[self.alias] = fresh
            self.renewals += 1
        stale.close()  # cancels what waits on it


@dataclass(frozen=True)
class MilvusTarget:
    """A parsed collection URI."""

    uri: str  # as given
    scheme: str  # LITE or SERVER
    address: str  # the db file (LITE) or host:port (SERVER)
    name: str  # the Milvus collection name glimpse's collections start with
    index: str | None = None  # ``?index=``: Milvus's index on the searched field (glimpse.milvus.index.INDEXES)
    consistency: str = "strong"  # ``?consistency=``: what searches wait for (glimpse.milvus.index.CONSISTENCY)
    timeout: float = DEFAULT_TIMEOUT_S  # ``?timeout=``: seconds a call waits for the server's answer

    @property
    def local_dir(self) -> Path:
        """Where this machine keeps the collection's files besides Milvus (see glimpse.milvus)."""
        if self.scheme == LITE:
            return Path(self.address + ".glimpse")
        base = Path(os.environ.get("GLIMPSE_HOME", "~/.glimpse")).expanduser()
        return base / "milvus" / self.address.replace(":", "-") / self.name


def parse_uri(uri: str) -> MilvusTarget:
    """``milvus-lite:///path/file.db`` or ``milvus://host[:port]/NAME``; ValueError says what is wrong."""
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ValueError(f"{uri!r} is not a well-formed URI ({exc}): write milvus-lite:///path/photos.db or "
                         f"milvus://HOST:{DEFAULT_PORT}/NAME") from None
    if parts.scheme == LITE:
        if parts.netloc or not parts.path:
            raise ValueError(f"{uri!r}: write a Milvus Lite collection as milvus-lite:///absolute/path/photos.db")
        path = Path(parts.path).expanduser().absolute()
        if not _LITE_NAME.fullmatch(path.name) or not path.name.endswith(".db"):
            raise ValueError(f"{uri!r}: Milvus Lite needs a file name ending in .db, at most 36 letters, digits, "
                             f"'.', '-' or '_' (e.g. photos.db)")
        index, consistency, timeout = _options(uri, parts.query)
        if index not in (None, "flat"):
            raise ValueError(f"{uri!r}: Milvus Lite has exact indexes only (FLAT, BIN_FLAT): leave out ?index= "
                             "or use a Milvus server")
        return MilvusTarget(uri, LITE, str(path), "glimpse", index, consistency, timeout)
    if parts.scheme == SERVER:
        name = parts.path.strip("/")
        try:
            host, port = parts.hostname, parts.port  # urllib raises for a port that is no number or past 65535
        except ValueError:
            host = port = None
        if not host or not _COLLECTION_NAME.fullmatch(name) or port == 0:
            raise ValueError(f"{uri!r}: write a Milvus server collection as milvus://HOST:{DEFAULT_PORT}/NAME, "
                             f"NAME of letters, digits and '_', starting with a letter, the port from 1 to 65535")
        return MilvusTarget(uri, SERVER, f"{host}:{port or DEFAULT_PORT}", name, *_options(uri, parts.query))
    raise ValueError(f"{uri!r} is not a Milvus URI: use milvus-lite:///path/photos.db or milvus://HOST:PORT/NAME")


def _options(uri: str, query: str) -> tuple[str | None, str, float]:
    """The ``?index=`` (None when absent), ``&consistency=`` and ``&timeout=`` of a URI; ValueError
    names the choices."""
    from .index import CONSISTENCY, INDEXES

    options = parse_qs(query, keep_blank_values=True)
    index = options.pop("index", [None])[-1]
    consistency = options.pop("consistency", ["strong"])[-1]
    timeout = options.pop("timeout", [str(DEFAULT_TIMEOUT_S)])[-1]
    try:
        seconds = float(timeout)
    except ValueError:
        seconds = 0.0
    if (options or (index is not None and index not in INDEXES) or consistency not in CONSISTENCY
            or not 0 < seconds <= 86400):
        raise ValueError(f"{uri!r}: the URI options are index= (one of {', '.join(INDEXES)}: flat is exact, hnsw and "
                         f"ivf are Milvus's approximate indexes, on a server), consistency= (one of "
                         f"{', '.join(CONSISTENCY)}: strong, the default, sees every committed batch) and timeout= "
                         f"(seconds a call waits for the server's answer, more than 0 and at most 86400; "
                         f"default {DEFAULT_TIMEOUT_S:g})")
    return index, consistency, seconds


def connect(target: MilvusTarget) -> Bounded:
    """A ``pymilvus.MilvusClient`` for ``target`` (starting Milvus Lite for a LITE target), its calls bounded."""
    return Bounded(_client(target), target.address, target.timeout)


def milvus_errors() -> tuple[type[Exception], ...]:
    """pymilvus's error class once a Milvus collection imported it; none for a local collection."""
    import sys

    milvus = sys.modules.get("pymilvus")
    return (milvus.MilvusException,) if milvus is not None else ()


def _client(target: MilvusTarget):
    require("milvus", "a Milvus collection")
    from pymilvus import MilvusClient
    alias = f"glimpse-{uuid.uuid4().hex}"  # its own connection: closing it leaves other clients' open
    if target.scheme == LITE:
        return MilvusClient(uri=_lite_socket(Path(target.address)), alias=alias, timeout=target.timeout)
    from pymilvus import MilvusException

    from .index import quiet

    def unreachable(why: str) -> ServerUnreachableError:
        return ServerUnreachableError(
            f"cannot reach the Milvus server at {target.address} ({why}): start it, or correct {target.uri}; one that "
            f"is running but answers nothing within {target.timeout:g} s is frozen or overloaded (see its logs); a "
            "server that asks for credentials reads GLIMPSE_MILVUS_TOKEN, or GLIMPSE_MILVUS_USER and GLIMPSE_MILVUS_PASSWORD")

    host, _, port = target.address.rpartition(":")
    try:  # a refused port or an unknown host is known at once; pymilvus would retry for 10 s
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except (ConnectionRefusedError, socket.gaierror) as exc:
        raise unreachable(exc.strerror or str(exc)) from None
    except OSError:
        pass  # a timeout or a route error: pymilvus tries in its own way and says what it found
    if not _answers(target.address, target.timeout):
        raise unreachable(f"it accepted the connection but gave no answer within {target.timeout:g} s")
    token = os.environ.get("GLIMPSE_MILVUS_TOKEN", "")
    user, password = os.environ.get("GLIMPSE_MILVUS_USER", ""), os.environ.get("GLIMPSE_MILVUS_PASSWORD", "")
    try:
        with quiet("pymilvus.milvus_client._utils"):  # it logs the failure before raising it
            return MilvusClient(uri=f"http://{target.address}", token=token, user=user, password=password, alias=alias,
                                timeout=target.timeout)
    except MilvusException as exc:
        raise unreachable(exc.message) from None


def _answers(address: str, timeout: float) -> bool:
    """Whether the server at ``address`` answers one gRPC call within ``timeout`` seconds (any answer,
    an error too). pymilvus's first call, the Connect that ``MilvusClient()`` makes, has no deadline:
    a server that completed the handshake and then said nothing held the open for ever."""
    import grpc

    with grpc.insecure_channel(address) as channel:  # an empty request is a whole GetVersionRequest
        call = channel.unary_unary("/milvus.proto.milvus.MilvusService/GetVersion")
        try:
            call(b"", timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED
    return True


def lite_binary() -> Path:
    """The Milvus Lite server binary that the ``milvus-lite`` wheel ships (not imported: see above)."""
    spec = importlib.util.find_spec("milvus_lite")
    binary = spec and spec.submodule_search_locations and Path(spec.submodule_search_locations[0]) / "lib" / "milvus"
    if not binary or not binary.exists():
        raise MissingExtraError(missing_extra("a Milvus Lite collection", "milvus"), name="milvus_lite")
    return binary


def start_lite(db: Path, address: str, lock: Path | None = None) -> subprocess.Popen:
    """Run Milvus Lite on ``db``, listening at ``address`` (``unix:/path`` or ``host:port``).

    With ``lock``, the server stops by itself once no process holds that file locked."""
    binary = lite_binary()
    env = {**os.environ, "LD_LIBRARY_PATH": f"{binary.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    args = [str(binary), str(db), address, os.environ.get("GLIMPSE_MILVUS_LOG", "ERROR")]
    return subprocess.Popen(args + ([str(lock)] if lock else []), env=env, cwd=db.parent,
                            stdout=subprocess.DEVNULL, start_new_session=True)


@dataclass
class _Lite:
    """A Milvus Lite this process started: its socket, the held lock file, the process, its users."""

    uri: str
    lock: object
    process: subprocess.Popen
    users: int = 0


_LITE: dict[Path, _Lite] = {}


def _lite_socket(db: Path) -> str:
    """The socket of this process's Milvus Lite for ``db``, started on first use.

    Milvus Lite serves one process: the lock file beside the db is held while this process
    uses it, and the server exits once the lock is released (also on kill -9 of this process)."""
    if db not in _LITE:
        if not db.parent.is_dir():
            raise ValueError(f"folder {db.parent} does not exist: create it first, or pick another path for {db.name}")
        import fcntl  # POSIX only, like Milvus Lite itself

        holder = open(db.parent / f".{db.name}.lock", "a")
        try:
            fcntl.lockf(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder.close()
            raise ValueError(f"{db} is open in another process: Milvus Lite serves one process at a time "
                             f"(use a Milvus server, milvus://HOST:PORT/NAME, for several)") from None
        socket = f"{tempfile.mkdtemp(prefix='glimpse-milvus-')}/{db.name}.sock"
        _LITE[db] = _Lite(f"unix:{socket}", holder, start_lite(db, f"unix:{socket}", Path(holder.name)))
    _LITE[db].users += 1
    return _LITE[db].uri


def release(target: MilvusTarget) -> None:
    """One user less of this process's Milvus Lite for ``target``; the last one stops it."""
    lite = _LITE.get(Path(target.address)) if target.scheme == LITE else None
    if lite is None:
        return
    lite.users -= 1
    if lite.users == 0:
        del _LITE[Path(target.address)]
        lite.lock.close()  # unlocks: the server sees it and exits
        try:
            lite.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            lite.process.kill()
            lite.process.wait()
