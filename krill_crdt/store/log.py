"""Append-only SQLite log of Yjs updates, one numbered sequence per host doc.

Every update applied to a host doc is appended here as an opaque blob; on start the host doc is
rebuilt from its snapshot plus the updates logged after it. A *squash* writes the doc's whole
state as the new snapshot and drops the entries it covers, so the log stays short.

Durability
----------
A write is acknowledged (its future resolves) only once the SQLite commit holding it is on
stable storage. The database runs in WAL mode with ``PRAGMA synchronous=FULL`` under both
policies, so every commit ends with an fsync of the WAL file; what the policies change is how
long the writer waits before committing:

``fsync="always"``
    The writer commits as soon as it sees work. Everything already queued at that moment shares
    the commit (group commit), so concurrent writers still get fewer fsyncs than appends, but a
    lone writer pays one fsync per append. Lowest latency (one fsync, a few milliseconds on an
    SD card); the most fsyncs, hence the most flash wear, under a trickle of writes.

``fsync="batch"`` (default)
    The writer waits up to ``batch_delay_ms`` after the first queued write to gather more into
    the same commit (a flush, a load or a close ends the wait early). Each acknowledgement comes
    up to ``batch_delay_ms`` later, in exchange for far fewer fsyncs when writes arrive in
    bursts, which is how host docs change (one edit fans out into several updates).

A power cut or a crash loses nothing that was acknowledged under either policy: an
acknowledged update is in a committed, fsynced WAL frame, and SQLite replays the WAL on the
next open. What can be lost is whatever was queued or in flight but not yet acknowledged; the
caller still holds it in its in-memory host doc and peers heal the rest by anti-entropy.

Threads
-------
All blocking SQLite work runs on one dedicated writer thread that owns its own connection.
Only bytes, strings and numbers cross to it; pycrdt objects never leave the event loop thread.
Results come back as :class:`asyncio.Future` objects resolved on the loop through
``loop.call_soon_threadsafe``. Every public method is meant to be called from the event loop
thread that owns the host docs.

Integrity
---------
Each row carries a CRC-32 over its doc id, sequence number and bytes. :meth:`UpdateLog.load`
reads each doc on its own: a row that fails its checksum, or a read error confined to one
doc, marks only that doc corrupt (reported, logged once, its rows left untouched in the file);
the other docs still load. The log does not parse the blobs: the host doc layer checks that an
update applies before it logs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import queue
import sqlite3
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, Final, Literal

from ..errors import CorruptStoreError, StoreClosedError, StoreError, ValidationError

__all__ = ["SCHEMA_VERSION", "DocLog", "LoadResult", "LogOptions", "LogStats", "UpdateLog"]

logger = logging.getLogger("krill.store")

#: Layout version of the log file, kept in ``PRAGMA user_version``. A file with a higher number
#: was written by a newer release and is refused rather than misread.
SCHEMA_VERSION: Final = 1

#: ``PRAGMA application_id`` of an update log ("KRLL"), so another program's SQLite file given
#: by mistake is refused instead of being extended with our tables.
APPLICATION_ID: Final = 0x4B524C4C

#: A commit holds at most this many queued commands: it bounds how long the first of them
#: waits for the others and how far one transaction grows the WAL. A commit of 4096 small
#: updates takes a few milliseconds, well under one fsync on flash.
_BATCH_MAX_COMMANDS: Final = 4096

#: ... and at most about this many bytes of blobs, for the same reasons with large updates.
_BATCH_MAX_BYTES: Final = 8 << 20

#: Once a checkpoint has run, SQLite truncates a WAL larger than this. 4 MiB is about SQLite's
#: own auto-checkpoint size (1000 pages): a burst does not leave a huge idle WAL behind, and
#: ordinary traffic does not regrow the file from zero after every checkpoint.
_WAL_SIZE_LIMIT: Final = 4 << 20

_SCHEMA: Final = (
    # Rows are keyed by (doc, seq); the blob goes last so the small columns stay on the b-tree
    # page and only large blobs spill into overflow pages.
    """CREATE TABLE updates (
        doc TEXT NOT NULL,
        seq INTEGER NOT NULL,
        appended REAL NOT NULL,
        crc INTEGER NOT NULL,
        blob BLOB NOT NULL,
        PRIMARY KEY (doc, seq)
    )""",
    """CREATE TABLE snapshots (
        doc TEXT PRIMARY KEY NOT NULL,
        upto_seq INTEGER NOT NULL,
        taken REAL NOT NULL,
        crc INTEGER NOT NULL,
        blob BLOB NOT NULL
    )""",
)


@dataclass(frozen=True, slots=True)
class LogOptions:
    """How the update log trades latency, fsyncs and log length.

    Raises:
        ValidationError: an option is out of range; ``field`` names it.
    """

    #: "batch" by default: host doc edits come in bursts, and gathering them into one fsync
    #: saves flash wear on SD cards at the cost of a few milliseconds of acknowledgement delay.
    fsync: Literal["always", "batch"] = "batch"
    #: 10 ms is below what a person notices on a dashboard and above the time one edit takes to
    #: fan out into its updates, so a burst usually lands in one commit.
    batch_delay_ms: float = 10.0
    #: 1000 entries replay in a few milliseconds on open (pycrdt applies ~290k small updates a
    #: second) while squashing that rarely keeps the snapshot rewrites cheap.
    squash_count: int = 1000
    #: 1 MiB of tail: a few thousand typical updates, or a handful of bulk imports, and a
    #: small share of the flash of the smallest host we run on.
    squash_bytes: int = 1 << 20
    #: 10 minutes: a doc that changes slowly still gets a compact log before the host is
    #: likely to restart, without rewriting its snapshot on every quiet edit.
    squash_age_s: float = 600.0

    def __post_init__(self) -> None:
        if self.fsync not in ("always", "batch"):
            raise ValidationError("fsync", 'must be "always" or "batch"', self.fsync)
        _require_number("batch_delay_ms", self.batch_delay_ms, minimum=0.0, maximum=1000.0)
        _require_int("squash_count", self.squash_count, minimum=1)
        _require_int("squash_bytes", self.squash_bytes, minimum=1)
        _require_number("squash_age_s", self.squash_age_s, minimum=0.0, maximum=math.inf)


@dataclass(frozen=True, slots=True)
class DocLog:
    """What the log holds for one host doc.

    Apply ``snapshot`` (when not ``None``) and then every entry of ``tail`` in order to rebuild
    the doc. ``last_seq`` is the highest sequence number the doc has used, covered by the
    snapshot or the tail; the next append gets ``last_seq + 1``.
    """

    doc: str
    snapshot: bytes | None
    tail: tuple[bytes, ...]
    last_seq: int


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Everything :meth:`UpdateLog.load` read back.

    Attributes:
        docs: host doc id -> its log, for every doc that read back whole.
        corrupt: host doc id -> why it could not be read. Its rows stay in the file untouched
            until a :meth:`UpdateLog.squash` covers them or :meth:`UpdateLog.delete_doc`
            drops them.
    """

    docs: Mapping[str, DocLog]
    corrupt: Mapping[str, CorruptStoreError]


@dataclass(frozen=True, slots=True)
class LogStats:
    """Counters of the writer since the log was opened (for metrics and tests)."""

    appends: int
    commits: int
    squashes: int
    deletes: int


# What crosses from the event loop to the writer thread.

_APPEND: Final = 1
_SQUASH: Final = 2
_DELETE: Final = 3
_FLUSH: Final = 4
_LOAD: Final = 5
_STOP: Final = 6
_WRITES: Final = frozenset({_APPEND, _SQUASH, _DELETE})


class _Command:
    """One request for the writer. Holds only plain values, never pycrdt objects."""

    __slots__ = ("blob", "doc", "future", "kind", "landed", "loop", "reply", "seq", "when")

    def __init__(
        self,
        kind: int,
        *,
        doc: str = "",
        blob: bytes = b"",
        seq: int = 0,
        when: float = 0.0,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[Any] | None = None,
    ) -> None:
        self.kind = kind
        self.doc = doc
        self.blob = blob
        self.seq = seq
        self.when = when
        self.loop = loop
        self.future = future
        # Run on the loop thread once the command is settled, with whether it succeeded: keeps
        # the in-memory bookkeeping right even when the caller cancelled the future.
        self.landed: _Landed | None = None
        # For the synchronous load: a thread-safe future the loop thread blocks on.
        self.reply: concurrent.futures.Future[Any] | None = None


class _Landed:
    """Bookkeeping to run on the loop thread after a squash settles."""

    __slots__ = ("state", "upto_seq")

    def __init__(self, state: _DocState, upto_seq: int) -> None:
        self.state = state
        self.upto_seq = upto_seq

    def __call__(self, ok: bool) -> None:
        state = self.state
        state.squashing -= 1
        if ok:
            state.drop_through(self.upto_seq)


_Outcome = tuple[_Command, object, BaseException | None]


@dataclass(slots=True)
class _Loaded:
    """One doc as read by the writer, plus what the loop side needs for :meth:`squash_due`."""

    log: DocLog
    snapshot_seq: int
    tail_meta: list[tuple[int, int, float]]


class _DocState:
    """Loop-side bookkeeping of one doc: sequence numbers and the tail's size and age."""

    __slots__ = ("last_seq", "snapshot_seq", "squashing", "tail", "tail_bytes")

    def __init__(self, last_seq: int = 0, snapshot_seq: int = 0) -> None:
        self.last_seq = last_seq
        self.snapshot_seq = snapshot_seq
        self.squashing = 0
        # (seq, size, time appended) of every entry after the snapshot, oldest first.
        # NOTE: grows by one small tuple per update until a squash; it stays small as long as
        # NOTE: the caller squashes when squash_due() says so.
        self.tail: deque[tuple[int, int, float]] = deque()
        self.tail_bytes = 0

    def drop_through(self, upto_seq: int) -> None:
        tail = self.tail
        while tail and tail[0][0] <= upto_seq:
            self.tail_bytes -= tail.popleft()[1]


# The writer thread.


def _open_connection(path: str) -> sqlite3.Connection:
    """Open the writer's connection in autocommit mode: transactions are explicit."""
    return sqlite3.connect(path, isolation_level=None)


def _checksum(doc: str, seq: int, blob: bytes) -> int:
    # Covering the key as well as the bytes also catches a row that moved to another doc or seq.
    return zlib.crc32(blob, zlib.crc32(f"{doc}\x00{seq}".encode()))


def _prepare(conn: sqlite3.Connection, path: str) -> dict[str, tuple[int, int]]:
    """Check or create the schema, set the pragmas, and read each doc's sequence numbers.

    Returns:
        doc -> (highest seq used, seq its snapshot covers).

    Raises:
        CorruptStoreError: not an update log, unreadable, or written by a newer release.
        StoreError: the file cannot be opened or configured.
    """
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise CorruptStoreError(path, "", f"cannot read the database: {exc}") from None

    if version == 0 and app_id == 0 and not tables:
        _create(conn, path)
    elif app_id != APPLICATION_ID:
        raise CorruptStoreError(path, "", f"not an update log (application_id {app_id:#x})")
    elif version > SCHEMA_VERSION:
        raise CorruptStoreError(
            path,
            "",
            f"schema version {version} is newer than {SCHEMA_VERSION}, the newest this release "
            "reads; open it with a newer krill_crdt",
        )
    elif version != SCHEMA_VERSION or not {"updates", "snapshots"} <= tables:
        raise CorruptStoreError(path, "", f"incomplete update log (schema version {version})")

    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode (journal_mode is {mode})")
        # FULL: in WAL mode every commit fsyncs the WAL, which is what makes an acknowledged
        # write durable. fullfsync only matters on macOS, where plain fsync skips the drive cache.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA fullfsync=ON")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        seqs: dict[str, tuple[int, int]] = {}
        for doc, last in conn.execute("SELECT doc, MAX(seq) FROM updates GROUP BY doc"):
            seqs[str(doc)] = (int(last), 0)
        for doc, upto in conn.execute("SELECT doc, upto_seq FROM snapshots"):
            last, _ = seqs.get(str(doc), (0, 0))
            seqs[str(doc)] = (max(last, int(upto)), int(upto))
    except sqlite3.DatabaseError as exc:
        raise CorruptStoreError(path, "", f"cannot read the log index: {exc}") from None
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot configure the update log: {exc}") from None
    return seqs


def _create(conn: sqlite3.Connection, path: str) -> None:
    try:
        # Must precede the first table: it makes freed pages reclaimable after a squash
        # (PRAGMA incremental_vacuum) without a full VACUUM that would rewrite the whole file.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.rollback()
        raise StoreError(f"{path}: cannot create the update log: {exc}") from None


def _post(loop: asyncio.AbstractEventLoop | None, outcomes: list[_Outcome]) -> None:
    """Hand outcomes to their loop; a loop that has closed gets nothing."""
    if loop is None or loop.is_closed():
        return
    # The loop may close between the check and the call: then nobody is left to tell.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, outcomes)


def _resolve(outcomes: list[_Outcome]) -> None:
    """Runs on the loop thread: bookkeeping first, then the futures nobody cancelled."""
    for cmd, result, exc in outcomes:
        if cmd.landed is not None:
            cmd.landed(exc is None)
        fut = cmd.future
        if fut is None or fut.done():
            continue
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)


class _Writer:
    """Owns the connection and the thread. Holds no reference to the :class:`UpdateLog`, so
    an abandoned log can be collected (its finalizer then stops this writer)."""

    def __init__(self, path: str, options: LogOptions) -> None:
        self.path = path
        self.delay = options.batch_delay_ms / 1000.0 if options.fsync == "batch" else 0.0
        self.queue: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self.ready: concurrent.futures.Future[dict[str, tuple[int, int]]] = (
            concurrent.futures.Future()
        )
        self.failure: StoreError | None = None
        self._last_failure = ""
        self.appends = self.commits = self.squashes = self.deletes = 0
        self._conn: sqlite3.Connection | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"krill-store-writer:{os.path.basename(path)}", daemon=True
        )

    def submit(self, cmd: _Command) -> None:
        self.queue.put(cmd)

    def stop(self) -> None:
        self.queue.put(_Command(_STOP))

    # The thread's life.

    def _run(self) -> None:
        try:
            conn = _open_connection(self.path)
        except sqlite3.Error as exc:
            self.ready.set_exception(StoreError(f"{self.path}: cannot open: {exc}"))
            return
        try:
            self.ready.set_result(_prepare(conn, self.path))
        except BaseException as exc:
            conn.close()
            self.ready.set_exception(exc)
            return

        self._conn = conn
        try:
            self._serve()
        except BaseException as exc:
            # A bug, not an SQLite error (those are handled per commit): fail everything that
            # waits rather than leave it hanging, and refuse new work.
            logger.exception("update log writer for %s stopped", self.path)
            self.failure = StoreError(f"{self.path}: the update log writer stopped: {exc!r}")
            self._fail_queued(self.failure)
        finally:
            try:
                conn.close()
            except sqlite3.Error as exc:
                logger.warning("closing update log %s failed: %s", self.path, exc)

    def _serve(self) -> None:
        while True:
            batch = self._gather()
            if self._execute(batch):
                return

    def _gather(self) -> list[_Command]:
        """Block for the next command, then collect the ones that may share its commit."""
        q = self.queue
        first = q.get()
        batch = [first]
        size = len(first.blob)

        # Step 1: under the batch policy, wait a little for more writes to share the fsync.
        if self.delay > 0.0 and first.kind in _WRITES:
            deadline = time.monotonic() + self.delay
            while size < _BATCH_MAX_BYTES and len(batch) < _BATCH_MAX_COMMANDS:
                remaining = deadline - time.monotonic()
                if remaining <= 0.0:
                    break
                try:
                    cmd = q.get(timeout=remaining)
                except queue.Empty:
                    break
                batch.append(cmd)
                size += len(cmd.blob)
                if cmd.kind not in _WRITES:
                    break  # someone waits on a flush, load or close: do not make them wait more

        # Step 2: group commit: whatever is queued already rides along, under both policies.
        while size < _BATCH_MAX_BYTES and len(batch) < _BATCH_MAX_COMMANDS:
            try:
                cmd = q.get_nowait()
            except queue.Empty:
                break
            batch.append(cmd)
            size += len(cmd.blob)
        return batch

    def _execute(self, batch: list[_Command]) -> bool:
        """Run a batch in order; returns whether it held the command to stop."""
        writes: list[_Command] = []
        for i, cmd in enumerate(batch):
            if cmd.kind in _WRITES:
                writes.append(cmd)
                continue
            # A flush, load or close must see every write queued before it committed.
            self._commit(writes)
            writes = []
            if cmd.kind == _FLUSH:
                _post(cmd.loop, [(cmd, None, None)])
            elif cmd.kind == _LOAD:
                assert cmd.reply is not None
                try:
                    cmd.reply.set_result(self._load())
                except BaseException as exc:
                    cmd.reply.set_exception(exc)
            else:
                closed = StoreClosedError(f"update log {self.path} is closed")
                self._fail(batch[i + 1 :], closed)
                self._fail_queued(closed)
                return True
        self._commit(writes)
        return False

    def _fail(self, cmds: list[_Command], exc: StoreError) -> None:
        for cmd in cmds:
            if cmd.reply is not None:
                cmd.reply.set_exception(exc)
            else:
                _post(cmd.loop, [(cmd, None, exc)])

    def _fail_queued(self, exc: StoreError) -> None:
        while True:
            try:
                cmd = self.queue.get_nowait()
            except queue.Empty:
                return
            self._fail([cmd], exc)

    # Writing.

    def _commit(self, writes: list[_Command]) -> None:
        """Commit writes, acknowledge them, and reclaim space if anything was dropped."""
        if not writes:
            return
        outcomes = self._transact(writes)

        # Appends are durable now; acknowledge them before the slower space reclaim.
        by_loop: dict[asyncio.AbstractEventLoop | None, list[_Outcome]] = {}
        later: list[_Outcome] = []
        for outcome in outcomes:
            if outcome[0].kind == _APPEND:
                by_loop.setdefault(outcome[0].loop, []).append(outcome)
            else:
                later.append(outcome)
        for loop, items in by_loop.items():
            _post(loop, items)
        if not later:
            return

        if any(exc is None for _, _, exc in later):
            self._reclaim()
        for cmd, result, exc in later:
            _post(cmd.loop, [(cmd, result, exc)])

    def _transact(self, writes: list[_Command]) -> list[_Outcome]:
        try:
            self._write(writes)
        except sqlite3.IntegrityError as exc:
            if len(writes) > 1:
                # A constraint is broken by one write (a second writer on the file took its
                # key): retry each alone, so the others that shared the transaction succeed.
                return [outcome for cmd in writes for outcome in self._transact([cmd])]
            failure: sqlite3.Error = exc
        except sqlite3.Error as exc:
            # The file or the disk failed: all of them fail together, with no retry storm.
            failure = exc
        else:
            return [(cmd, cmd.seq if cmd.kind == _APPEND else None, None) for cmd in writes]

        # A failing disk fails every commit: warn when the reason changes, not every time.
        reason = str(failure)
        level = logging.DEBUG if reason == self._last_failure else logging.WARNING
        self._last_failure = reason
        logger.log(level, "commit of %d writes to %s failed: %s", len(writes), self.path, reason)
        return [
            (cmd, None, StoreError(f"{self.path}: write to host doc {cmd.doc!r} failed: {reason}"))
            for cmd in writes
        ]

    def _write(self, writes: list[_Command]) -> None:
        """One transaction, one fsync (the commit)."""
        assert self._conn is not None
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for cmd in writes:
                doc, seq, blob = cmd.doc, cmd.seq, cmd.blob
                if cmd.kind == _APPEND:
                    conn.execute(
                        "INSERT INTO updates (doc, seq, appended, crc, blob) VALUES (?,?,?,?,?)",
                        (doc, seq, cmd.when, _checksum(doc, seq, blob), blob),
                    )
                elif cmd.kind == _SQUASH:
                    # Both statements share the transaction: a crash leaves the old snapshot
                    # with its entries, or the new snapshot without them, never a mix.
                    conn.execute("DELETE FROM updates WHERE doc = ? AND seq <= ?", (doc, seq))
                    conn.execute(
                        "INSERT OR REPLACE INTO snapshots (doc, upto_seq, taken, crc, blob) "
                        "VALUES (?,?,?,?,?)",
                        (doc, seq, cmd.when, _checksum(doc, seq, blob), blob),
                    )
                else:
                    conn.execute("DELETE FROM updates WHERE doc = ?", (doc,))
                    conn.execute("DELETE FROM snapshots WHERE doc = ?", (doc,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    logger.warning("rollback in %s failed: %s", self.path, exc)
            raise

        self.commits += 1
        self._last_failure = ""
        for cmd in writes:
            if cmd.kind == _APPEND:
                self.appends += 1
            elif cmd.kind == _SQUASH:
                self.squashes += 1
            else:
                self.deletes += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("committed %d writes to %s", len(writes), self.path)

    def _reclaim(self) -> None:
        """Give the pages a squash or delete freed back to the file system."""
        assert self._conn is not None
        try:
            # Moves free pages to the end of the file and cuts them off (at the checkpoint, in
            # WAL mode). executescript, because execute() steps this pragma once, which frees
            # a single page.
            self._conn.executescript("PRAGMA incremental_vacuum;")
            # Copies the WAL into the database and truncates both files.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            # The squash itself is committed; only the space stays allocated until next time.
            logger.warning("reclaiming space in %s failed: %s", self.path, exc)

    # Reading everything back.

    def _load(self) -> tuple[dict[str, _Loaded], dict[str, CorruptStoreError]]:
        assert self._conn is not None
        conn = self._conn
        try:
            docs = [
                str(r[0])
                for r in conn.execute(
                    "SELECT doc FROM snapshots UNION SELECT DISTINCT doc FROM updates"
                )
            ]
        except sqlite3.Error as exc:
            raise CorruptStoreError(self.path, "", f"cannot list the host docs: {exc}") from None

        loaded: dict[str, _Loaded] = {}
        corrupt: dict[str, CorruptStoreError] = {}
        for doc in docs:
            try:
                loaded[doc] = self._load_doc(conn, doc)
            except _UnreadableDocError as exc:
                corrupt[doc] = CorruptStoreError(self.path, doc, str(exc))
            except sqlite3.Error as exc:
                corrupt[doc] = CorruptStoreError(self.path, doc, f"read failed: {exc}")
        return loaded, corrupt

    def _load_doc(self, conn: sqlite3.Connection, doc: str) -> _Loaded:
        snapshot: bytes | None = None
        snapshot_seq = 0
        row = conn.execute(
            "SELECT upto_seq, crc, blob FROM snapshots WHERE doc = ?", (doc,)
        ).fetchone()
        if row is not None:
            snapshot_seq, crc, blob = row
            if not isinstance(blob, bytes) or _checksum(doc, snapshot_seq, blob) != crc:
                raise _UnreadableDocError(f"snapshot up to seq {snapshot_seq} fails its checksum")
            snapshot = blob

        tail: list[bytes] = []
        meta: list[tuple[int, int, float]] = []
        rows = conn.execute(
            "SELECT seq, appended, crc, blob FROM updates WHERE doc = ? ORDER BY seq", (doc,)
        )
        for seq, appended, crc, blob in rows:
            if not isinstance(blob, bytes) or _checksum(doc, seq, blob) != crc:
                raise _UnreadableDocError(f"log entry {seq} fails its checksum")
            if seq <= snapshot_seq:
                raise _UnreadableDocError(
                    f"log entry {seq} is covered by the snapshot (seq {snapshot_seq})"
                )
            tail.append(blob)
            meta.append((int(seq), len(blob), float(appended)))

        last_seq = meta[-1][0] if meta else snapshot_seq
        log = DocLog(doc=doc, snapshot=snapshot, tail=tuple(tail), last_seq=last_seq)
        return _Loaded(log=log, snapshot_seq=snapshot_seq, tail_meta=meta)


class _UnreadableDocError(Exception):
    """One doc's rows do not read back as written (internal; becomes CorruptStoreError)."""


# The event loop side.


class UpdateLog:
    """Durable, append-only log of Yjs updates per host doc, in one SQLite file.

    Opening reads the header and each doc's sequence numbers; call :meth:`load` once right
    after, before any write, to get the docs back and to let :meth:`squash_due` see the
    entries already on disk. Close with ``await log.close()`` or ``async with``.

    Example::

        async with UpdateLog(data_dir / "log.sqlite3") as log:
            loaded = log.load()
            seq = await log.append("host-a", update)

    Args:
        path: the database file; created with the schema if missing or empty.
        options: fsync policy and squash thresholds.
        clock: seconds since the epoch, stamped on each entry and compared with the ``now``
            given to :meth:`squash_due`; the stamps survive a restart, so the clock must too.

    NOTE: one UpdateLog per file. Nothing locks the file against a second writer, whose
    NOTE: appends would collide on sequence numbers and fail as StoreError.

    Raises:
        CorruptStoreError: the file is not an update log, cannot be read, or was written by a
            newer release (``doc`` is ``""``).
        StoreError: the file cannot be opened or configured (missing directory, permissions).
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_closed",
        "_corrupt_seen",
        "_docs",
        "_options",
        "_path",
        "_writer",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: LogOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = os.fspath(path)
        self._options = options if options is not None else LogOptions()
        self._clock = clock
        self._writer = _Writer(self._path, self._options)
        self._writer.thread.start()
        try:
            seqs = self._writer.ready.result()
        finally:
            if self._writer.ready.exception() is not None:
                self._writer.thread.join()
        self._docs = {doc: _DocState(last, snap) for doc, (last, snap) in seqs.items()}
        self._corrupt_seen: set[str] = set()
        self._closed = False
        # An abandoned log still stops its thread: the writer commits what is queued and exits.
        weakref.finalize(self, self._writer.stop)

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def options(self) -> LogOptions:
        return self._options

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> LogStats:
        """Counters of committed work so far (a commit is one transaction, one fsync)."""
        w = self._writer
        return LogStats(
            appends=w.appends, commits=w.commits, squashes=w.squashes, deletes=w.deletes
        )

    def last_seq(self, doc: str) -> int:
        """The sequence number of the doc's latest append (queued or durable); 0 if none.

        A snapshot taken now covers exactly the entries up to this number.
        """
        state = self._docs.get(doc)
        return state.last_seq if state is not None else 0

    # Reading back.

    def load(self) -> LoadResult:
        """Read every host doc back: snapshot, tail and last sequence number.

        Synchronous (it blocks the calling thread while the writer reads): call it once, right
        after opening and before the first write. A doc whose rows fail their checksum or
        cannot be read is reported in ``corrupt`` and logged once at warning; its rows stay in
        the file. Appends to such a doc continue after its highest sequence number.

        Raises:
            CorruptStoreError: the list of docs itself cannot be read (``doc`` is ``""``).
            StoreClosedError: the log is closed.
        """
        self._check_open()
        cmd = _Command(_LOAD)
        reply: concurrent.futures.Future[
            tuple[dict[str, _Loaded], dict[str, CorruptStoreError]]
        ] = concurrent.futures.Future()
        cmd.reply = reply
        self._writer.submit(cmd)
        loaded, corrupt = reply.result()

        for doc, item in loaded.items():
            state = self._docs.setdefault(doc, _DocState())
            state.last_seq = max(state.last_seq, item.log.last_seq)
            state.snapshot_seq = max(state.snapshot_seq, item.snapshot_seq)
            state.tail = deque(m for m in item.tail_meta if m[0] > state.snapshot_seq)
            state.tail_bytes = sum(m[1] for m in state.tail)
        for doc, err in corrupt.items():
            if doc not in self._corrupt_seen:
                self._corrupt_seen.add(doc)
                logger.warning("host doc %r in %s is corrupt: %s", doc, self._path, err.reason)

        return LoadResult(
            docs=MappingProxyType({doc: item.log for doc, item in loaded.items()}),
            corrupt=MappingProxyType(dict(corrupt)),
        )

    # Writing.

    def append(self, doc: str, update: bytes) -> asyncio.Future[int]:
        """Queue one update of a host doc.

        Returns:
            A future resolved with the update's sequence number once it is durable, or failed
            with :class:`StoreError` if the write failed. Appends to one doc are written, and
            numbered, in call order.

        Raises:
            ValidationError: ``doc`` is not a non-empty string or ``update`` is empty.
            StoreClosedError: the log is closed.
        """
        self._check_open()
        _require_doc(doc)
        blob = _require_blob("update", update)
        loop = asyncio.get_running_loop()

        state = self._state(doc)
        state.last_seq += 1
        now = self._clock()
        state.tail.append((state.last_seq, len(blob), now))
        state.tail_bytes += len(blob)

        fut: asyncio.Future[int] = loop.create_future()
        self._writer.submit(
            _Command(
                _APPEND, doc=doc, blob=blob, seq=state.last_seq, when=now, loop=loop, future=fut
            )
        )
        return fut

    def squash(self, doc: str, snapshot: bytes, upto_seq: int) -> asyncio.Future[None]:
        """Replace the doc's snapshot and its entries up to ``upto_seq`` with ``snapshot``.

        ``snapshot`` must hold the doc's whole state as of ``upto_seq`` (``doc.get_update()``
        right after the append numbered ``upto_seq``, see :meth:`last_seq`). Entries after
        ``upto_seq`` stay. The swap is one transaction: after a crash the file holds either
        the old snapshot and entries or the new snapshot, never a mix. Afterwards the freed
        pages are returned to the file system, so the file shrinks.

        Returns:
            A future resolved once the new snapshot is durable and the space is reclaimed.

        Raises:
            ValidationError: ``upto_seq`` is below the current snapshot's or above the last
                appended sequence number, or ``snapshot`` is empty.
            StoreClosedError: the log is closed.
        """
        self._check_open()
        _require_doc(doc)
        blob = _require_blob("snapshot", snapshot)
        state = self._state(doc)
        if (
            not isinstance(upto_seq, int)
            or isinstance(upto_seq, bool)
            or not state.snapshot_seq <= upto_seq <= state.last_seq
        ):
            raise ValidationError(
                "upto_seq",
                f"must be an int from {state.snapshot_seq} (the current snapshot) to "
                f"{state.last_seq} (the last append) for host doc {doc!r}",
                upto_seq,
            )
        loop = asyncio.get_running_loop()

        state.snapshot_seq = upto_seq
        state.squashing += 1
        fut: asyncio.Future[None] = loop.create_future()
        cmd = _Command(
            _SQUASH, doc=doc, blob=blob, seq=upto_seq, when=self._clock(), loop=loop, future=fut
        )
        cmd.landed = _Landed(state, upto_seq)
        self._writer.submit(cmd)
        return fut

    def squash_due(self, doc: str, now: float) -> bool:
        """Whether the doc's tail since its snapshot should be squashed.

        True when the tail has more than ``squash_count`` entries or ``squash_bytes`` bytes, or
        its oldest entry was appended more than ``squash_age_s`` before ``now`` (seconds on the
        log's clock, :func:`time.time` unless another was given). False while a squash of the
        doc is in flight. Reads only memory.
        """
        state = self._docs.get(doc)
        if state is None or not state.tail or state.squashing:
            return False
        opts = self._options
        return (
            len(state.tail) > opts.squash_count
            or state.tail_bytes > opts.squash_bytes
            or now - state.tail[0][2] > opts.squash_age_s
        )

    def delete_doc(self, doc: str) -> asyncio.Future[None]:
        """Forget a host doc: its snapshot and every entry. Appends made after this call start
        again at sequence number 1.

        Returns:
            A future resolved once the deletion is durable and the space is reclaimed.

        Raises:
            ValidationError: ``doc`` is not a non-empty string.
            StoreClosedError: the log is closed.
        """
        self._check_open()
        _require_doc(doc)
        loop = asyncio.get_running_loop()
        self._docs.pop(doc, None)
        self._corrupt_seen.discard(doc)
        fut: asyncio.Future[None] = loop.create_future()
        self._writer.submit(_Command(_DELETE, doc=doc, loop=loop, future=fut))
        return fut

    async def flush(self) -> None:
        """Return once everything queued before the call is durable (or has failed).

        Raises:
            StoreClosedError: the log is closed.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._writer.submit(_Command(_FLUSH, loop=loop, future=fut))
        await fut

    def file_bytes(self) -> int:
        """Bytes the log takes on disk: the database plus its ``-wal`` and ``-shm`` files.

        Works after close too.
        """
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(self._path + suffix).st_size
        return total

    # Closing.

    async def close(self) -> None:
        """Commit everything queued, then close the file and stop the writer thread.

        Idempotent. Futures of writes queued before the call resolve first (on their loop, if
        it is still open). The wait runs off the event loop, which keeps serving meanwhile.
        """
        if not self._closed:
            self._closed = True
            self._writer.stop()
        await asyncio.to_thread(self._writer.thread.join)

    async def __aenter__(self) -> UpdateLog:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Helpers.

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"update log {self._path} is closed")
        if self._writer.failure is not None:
            raise self._writer.failure

    def _state(self, doc: str) -> _DocState:
        state = self._docs.get(doc)
        if state is None:
            state = self._docs[doc] = _DocState()
        return state


def _require_doc(doc: object) -> None:
    if not isinstance(doc, str) or not doc:
        raise ValidationError("doc", "must be a non-empty string", doc)


def _require_blob(name: str, value: object) -> bytes:
    # A bytearray or memoryview could change under the writer thread: copy it into bytes.
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if not isinstance(value, bytes) or not value:
        raise ValidationError(name, "must be non-empty bytes", type(value).__name__)
    return value


def _require_number(name: str, value: object, *, minimum: float, maximum: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not minimum <= value <= maximum
    ):
        upper = "" if math.isinf(maximum) else f" and at most {maximum:g}"
        raise ValidationError(name, f"must be a number of at least {minimum:g}{upper}", value)


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(name, f"must be an int of at least {minimum}", value)
