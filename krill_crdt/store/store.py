"""The durable store: host docs kept in memory, every update appended to the SQLite log.

Opening loads each host doc from its snapshot and log tail. Every later transaction on a
host doc, local or remote, is appended to the log by the doc's update listener, and the async
write methods return only once that append is durable: an acknowledged write survives a crash
or power cut. When a doc's log tail grows past the squash thresholds (count, bytes, age), the
doc's current state replaces the tail as its new snapshot, in the background.

A host doc whose stored updates cannot be read is reported in :attr:`Store.corrupt` and not
opened: its rows stay in the file untouched, nothing is written over them, and every other
host doc loads and works as usual.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ..errors import (
    CorruptStoreError,
    NodeNotFoundError,
    StoreClosedError,
    StoreError,
    UpdateRejectedError,
)
from ..model import Node
from .hostdoc import HostDoc, Operation
from .log import LogOptions, UpdateLog
from .origin import LOAD, LOCAL, Origin
from .series import SeriesStore

__all__ = ["DOCS_FILE", "LOCK_FILE", "SERIES_FILE", "Store"]

log = logging.getLogger("krill.store")

#: File names inside the data directory.
DOCS_FILE = "docs.sqlite3"
SERIES_FILE = "series.sqlite3"
#: Held with an exclusive lock while a store is open: two processes appending to one log
#: would collide on sequence numbers, so the second one is refused up front.
LOCK_FILE = "lock"


def _lock(path: Path) -> IO[bytes]:
    handle = path.open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StoreError(
            f"{path.parent} is in use by another process (it holds {path.name})"
        ) from None
    return handle


class Store:
    """Durable host docs and the host-local time series, under one data directory.

    Args:
        data_dir: directory for the database files; created if missing.
        options: fsync policy and squash thresholds of the update log.
        clock: returns the current Unix time in seconds (stamps node writes, ages log tails).
        client_id: Yjs client id for this peer's writes; random if not given.

    Use as ``async with Store(path) as store:``. All methods must be called from the event
    loop that opened the store, which owns its host docs.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        options: LogOptions | None = None,
        clock: Callable[[], float] = time.time,
        client_id: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.options = options or LogOptions()
        self._clock = clock
        self._client_id = client_id
        self._docs: dict[str, HostDoc] = {}
        self._new_doc_listeners: list[Callable[[HostDoc], None]] = []
        self._pending: dict[str, asyncio.Future[int]] = {}
        self._squashing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.corrupt: dict[str, CorruptStoreError] = {}
        self._log: UpdateLog | None = None
        self._series: SeriesStore | None = None
        self._lock_file: IO[bytes] | None = None
        self._opened = False
        self._closed = False

    # --------------------------------------------------------------------------- lifecycle

    async def open(self) -> Store:
        """Open the files and load every host doc.

        Raises:
            CorruptStoreError: the database file itself cannot be read (a single unreadable
                host doc is reported in :attr:`corrupt` instead).
            StoreError: the files cannot be created or opened.
        """
        if self._opened:
            raise StoreClosedError("a Store can be opened once; create a new one to reopen")
        self._opened = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock(self.data_dir / LOCK_FILE)
        self._log = UpdateLog(self.data_dir / DOCS_FILE, self.options, clock=self._clock)
        self._series = SeriesStore(self.data_dir / SERIES_FILE)
        loaded = self._log.load()
        self.corrupt.update(loaded.corrupt)
        for doc_log in loaded.docs.values():
            self._load_doc(doc_log.doc, doc_log.snapshot, doc_log.tail)
        for host, error in self.corrupt.items():
            log.warning("host doc %s not opened: %s", host, error)
        return self

    def _load_doc(self, host: str, snapshot: bytes | None, tail: Iterable[bytes]) -> None:
        updates = ([snapshot] if snapshot is not None else []) + list(tail)
        try:
            doc = HostDoc(host, clock=self._clock, client_id=self._client_id, initial=updates)
        except UpdateRejectedError as exc:
            self.corrupt[host] = CorruptStoreError(str(self.data_dir / DOCS_FILE), host, str(exc))
            return
        self._attach(doc)
        # Orphans or cycles left by updates that met only on this peer are repaired now,
        # with the listener attached so the repair itself is persisted.
        doc.repair()

    def _attach(self, doc: HostDoc) -> None:
        host = doc.host

        def persist(update: bytes, origin: Origin) -> None:
            if origin == LOAD or self._log is None:
                return
            self._pending[host] = self._log.append(host, update)

        doc.on_update(persist)
        self._docs[host] = doc
        for listener in self._new_doc_listeners:
            listener(doc)

    def on_new_doc(self, listener: Callable[[HostDoc], None]) -> None:
        """Call ``listener(doc)`` for every host doc created or loaded from now on."""
        self._new_doc_listeners.append(listener)

    async def close(self) -> None:
        """Wait for every pending write to be durable, then close the files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for doc in self._docs.values():
            doc.close()
        if self._log is not None:
            await self._log.close()
        if self._series is not None:
            self._series.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------------- host docs

    @property
    def series(self) -> SeriesStore:
        """The host-local time series of data points."""
        self._check_open()
        assert self._series is not None
        return self._series

    @property
    def log(self) -> UpdateLog:
        """The update log behind the host docs."""
        self._check_open()
        assert self._log is not None
        return self._log

    def hosts(self) -> list[str]:
        """Return the ids of the open host docs, sorted."""
        return sorted(self._docs)

    def docs(self) -> Mapping[str, HostDoc]:
        """Return the open host docs by host id."""
        return dict(self._docs)

    def doc(self, host: str, *, create: bool = False) -> HostDoc:
        """Return the host doc of ``host``, creating an empty one if asked.

        Raises:
            CorruptStoreError: that host doc is corrupt in the store; it is never overwritten.
            NodeNotFoundError: no such host doc and ``create`` is false.
        """
        self._check_open()
        if host in self.corrupt:
            raise self.corrupt[host]
        doc = self._docs.get(host)
        if doc is None:
            if not create:
                raise NodeNotFoundError(f"no host doc {host!r}")
            doc = HostDoc(host, clock=self._clock, client_id=self._client_id)
            self._attach(doc)
        return doc

    def host_of(self, node_id: str) -> str:
        """Return the host whose doc holds ``node_id``.

        Raises:
            NodeNotFoundError: no open host doc holds it.
        """
        for host, doc in self._docs.items():
            if node_id in doc:
                return host
        raise NodeNotFoundError(f"no node {node_id!r} in any host doc")

    # ---------------------------------------------------------------------------- writes

    async def create(self, node: Node, *, origin: Origin = LOCAL) -> Node:
        """Create a node in its host's doc (made if missing); return once durable."""
        doc = self.doc(node.host, create=True)
        self._pending.pop(doc.host, None)
        stored = doc.create(node, origin=origin)
        await self._durable(doc.host)
        return stored

    async def update(
        self, node_id: str, changes: Mapping[str, Any], *, origin: Origin = LOCAL
    ) -> Node:
        """Partially update a node wherever it lives; return it once durable."""
        doc = self._docs[self.host_of(node_id)]
        self._pending.pop(doc.host, None)
        stored = doc.update(node_id, changes, origin=origin)
        await self._durable(doc.host)
        return stored

    async def delete(self, node_id: str, *, origin: Origin = LOCAL) -> list[str]:
        """Delete a node and its subtree; return the removed ids once durable."""
        doc = self._docs[self.host_of(node_id)]
        self._pending.pop(doc.host, None)
        removed = doc.delete(node_id, origin=origin)
        await self._durable(doc.host)
        return removed

    async def batch(
        self, host: str, operations: Iterable[Operation], *, origin: Origin = LOCAL
    ) -> list[Node]:
        """Apply operations to one host doc as one all-or-nothing transaction, durably."""
        doc = self.doc(host, create=True)
        self._pending.pop(host, None)
        results = doc.batch(operations, origin=origin)
        await self._durable(host)
        return results

    def apply(self, host: str, update: bytes, *, origin: Origin) -> None:
        """Apply a remote update to a host doc (made if missing); persisted in the background.

        Call :meth:`flush` to wait until it is durable.

        Raises:
            UpdateRejectedError: the update is undecodable; nothing changes.
        """
        self.doc(host, create=True).apply(update, origin=origin)
        self._maybe_squash(host)

    def get(self, node_id: str) -> Node:
        """Return a node from whichever host doc holds it."""
        return self._docs[self.host_of(node_id)].get(node_id)

    async def flush(self) -> None:
        """Wait until every write so far is durable."""
        self._check_open()
        assert self._log is not None
        await self._log.flush()

    # ------------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if not self._opened or self._closed:
            raise StoreClosedError(f"store {self.data_dir} is not open")

    async def _durable(self, host: str) -> None:
        # The write just made (synchronously, after the caller cleared the slot) left its own
        # append here; appends are durable in order, so that also covers every earlier one.
        # Waiting for this write's append rather than the newest keeps a writer from queueing
        # behind appends that other tasks made after it.
        pending = self._pending.pop(host, None)
        if pending is not None:
            await asyncio.shield(pending)
        self._maybe_squash(host)

    def _maybe_squash(self, host: str) -> None:
        if host in self._squashing or self._log is None or self._closed:
            return
        if not self._log.squash_due(host, self._clock()):
            return
        self._squashing.add(host)
        task = asyncio.get_running_loop().create_task(self._squash(host))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _squash(self, host: str) -> None:
        try:
            await self.squash(host)
        except Exception:
            log.exception("host doc %s: squash failed; the log tail is kept", host)
        finally:
            self._squashing.discard(host)

    async def squash(self, host: str) -> None:
        """Replace a host doc's log with one snapshot of its current state.

        The snapshot covers every update appended so far; later updates stay in the tail.
        """
        doc = self.doc(host)
        assert self._log is not None
        # Taken together, without awaiting: the snapshot holds exactly the updates numbered
        # up to upto_seq (and those are the ones the squash replaces).
        upto_seq = self._log.last_seq(host)
        if upto_seq == 0:
            return
        await self._log.squash(host, doc.diff(), upto_seq)
        log.debug("host doc %s: squashed the log up to seq %d", host, upto_seq)
