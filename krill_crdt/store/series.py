"""Host-local time series of data point values, in their own SQLite file.

Each data point node hosted here records its values as samples ``(timestamp, value)``. Series
are not replicated: only the host runs the point's processor, and a dashboard asks that host
for the history. Retention by age and by count per node keeps the file bounded (:meth:`prune`).

Why synchronous: an append is one small insert committed to the WAL without an fsync
(``synchronous=NORMAL``), a few tens of microseconds, less than handing the work to another
thread would cost. A read with a ``limit`` walks one contiguous stretch of the ``(node, ts)``
key. Each call is its own transaction (``append_many`` puts a whole batch in one). A caller
that reads long unbounded ranges can run the call in a worker thread (``asyncio.to_thread``):
the store serialises its calls with a lock.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Final, TypeAlias, TypeGuard

from ..errors import CorruptStoreError, StoreClosedError, StoreError, ValidationError

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "DEFAULT_MAX_PER_NODE",
    "MAX_TEXT_LENGTH",
    "SCHEMA_VERSION",
    "SeriesStore",
    "Value",
]

#: A sample's value. Integers are stored as floats (as host docs do); the type of a float, a
#: bool or a str is kept on read back.
Value: TypeAlias = float | bool | str

#: Layout version of the series file (``PRAGMA user_version``); a newer one is refused.
SCHEMA_VERSION: Final = 1

#: ``PRAGMA application_id`` of a series file ("KRLS"), distinct from the update log's.
APPLICATION_ID: Final = 0x4B524C53

#: 30 days: enough history for the dashboard's longest view (a month) on every point.
DEFAULT_MAX_AGE_S: Final = 30 * 24 * 3600.0

#: 100k samples is about 3 MB per point on disk: a point sampled every second keeps a bit
#: more than a day, a point sampled every 30 s keeps its full 30 days, and a few hundred
#: points still fit the SD card of the smallest host.
DEFAULT_MAX_PER_NODE: Final = 100_000

#: A text value is a reading (a state name, a serial line), not a document: 4096 characters
#: hold any of those, and keep one faulty producer from filling the card in a few samples.
MAX_TEXT_LENGTH: Final = 4096

_SCHEMA: Final = (
    # Node ids are interned: a sample row then costs an integer, not the id string again.
    "CREATE TABLE nodes (id INTEGER PRIMARY KEY, node TEXT NOT NULL UNIQUE)",
    # The primary key (node, ts) is the index a range query on one node walks, and it stores
    # the rows in that order (WITHOUT ROWID), so a range is one contiguous read. The value
    # column has no declared type on purpose: SQLite then keeps REAL, INTEGER (bools) and
    # TEXT as given instead of converting them.
    """CREATE TABLE samples (
        node INTEGER NOT NULL,
        ts REAL NOT NULL,
        value NOT NULL,
        PRIMARY KEY (node, ts)
    ) WITHOUT ROWID""",
)


class SeriesStore:
    """Samples of data point nodes, keyed by node id and timestamp.

    A node has at most one value per timestamp: appending at a timestamp already recorded
    replaces that sample (so re-sending a sample is harmless).

    Args:
        path: the database file; created if missing.
        max_age_s: :meth:`prune` drops samples older than this many seconds; ``None`` keeps
            them regardless of age.
        max_per_node: :meth:`prune` keeps at most this many of each node's newest samples;
            ``None`` sets no count limit.

    Raises:
        ValidationError: a retention limit is not positive.
        CorruptStoreError: the file is not a series file, cannot be read, or has a newer
            schema version (``doc`` is ``""``).
        StoreError: the file cannot be opened or created.
    """

    __slots__ = ("_closed", "_conn", "_lock", "_max_age_s", "_max_per_node", "_node_ids", "_path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_age_s: float | None = DEFAULT_MAX_AGE_S,
        max_per_node: int | None = DEFAULT_MAX_PER_NODE,
    ) -> None:
        if max_age_s is not None and (
            not _is_number(max_age_s) or _finite(max_age_s) is None or max_age_s <= 0
        ):
            raise ValidationError(
                "max_age_s", "must be a positive finite number or None", max_age_s
            )
        if max_per_node is not None and (
            isinstance(max_per_node, bool) or not isinstance(max_per_node, int) or max_per_node < 1
        ):
            raise ValidationError(
                "max_per_node", "must be an int of at least 1 or None", max_per_node
            )
        self._path = os.fspath(path)
        self._max_age_s = max_age_s
        self._max_per_node = max_per_node
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: cannot open: {exc}") from None
        try:
            self._node_ids = self._prepare()
        except BaseException:
            self._conn.close()
            raise

    @property
    def path(self) -> str:
        return self._path

    # Writing.

    def append(self, node_id: str, ts: float, value: Value) -> None:
        """Record one sample (one commit).

        Raises:
            ValidationError: ``node_id`` is empty, ``ts`` is not finite, or ``value`` is not a
                finite float, a bool or a str of at most :data:`MAX_TEXT_LENGTH` characters.
            StoreClosedError: the store is closed.
            StoreError: the write failed; nothing was recorded.
        """
        self.append_many([(node_id, ts, value)])

    def append_many(self, samples: Iterable[tuple[str, float, Value]]) -> int:
        """Record ``(node_id, ts, value)`` samples, all in one commit.

        Every sample is checked before anything is written: one bad sample rejects the batch.

        Returns:
            The number of samples recorded.

        Raises:
            ValidationError: as :meth:`append`, naming the first bad sample's argument.
            StoreClosedError: the store is closed.
            StoreError: the write failed; nothing was recorded.
        """
        rows = [
            (_check_node(node_id), _check_ts("ts", ts), _encode(value))
            for node_id, ts, value in samples
        ]
        if not rows:
            self._check_open()
            return 0
        with self._transaction("append samples"):
            self._conn.executemany(
                "INSERT OR REPLACE INTO samples (node, ts, value) VALUES (?, ?, ?)",
                [(self._intern(node_id), ts, value) for node_id, ts, value in rows],
            )
        return len(rows)

    def prune(self, now: float) -> int:
        """Apply the retention limits: drop samples older than ``max_age_s`` before ``now``,
        then all but each node's ``max_per_node`` newest samples. One commit.

        Returns:
            The number of samples dropped.

        Raises:
            ValidationError: ``now`` is not finite.
            StoreClosedError: the store is closed.
            StoreError: the write failed; nothing was dropped.
        """
        now = _check_ts("now", now)
        dropped = 0
        with self._transaction("prune"):
            for node in list(self._node_ids.values()):
                if self._max_age_s is not None:
                    dropped += self._conn.execute(
                        "DELETE FROM samples WHERE node = ? AND ts < ?",
                        (node, now - self._max_age_s),
                    ).rowcount
                if self._max_per_node is not None:
                    # The timestamp of the oldest sample to keep; with fewer samples than the
                    # limit the subquery is NULL and the comparison drops nothing.
                    dropped += self._conn.execute(
                        "DELETE FROM samples WHERE node = ? AND ts < ("
                        "  SELECT ts FROM samples WHERE node = ? ORDER BY ts DESC"
                        "  LIMIT 1 OFFSET ?)",
                        (node, node, self._max_per_node - 1),
                    ).rowcount
        return dropped

    def delete_node(self, node_id: str) -> int:
        """Drop every sample of a node (when the node itself is deleted).

        Returns:
            The number of samples dropped.

        Raises:
            StoreClosedError: the store is closed.
            StoreError: the write failed; nothing was dropped.
        """
        _check_node(node_id)
        with self._transaction("delete a node's samples"):
            node = self._node_ids.get(node_id)
            if node is None:
                return 0
            dropped = self._conn.execute("DELETE FROM samples WHERE node = ?", (node,)).rowcount
            self._conn.execute("DELETE FROM nodes WHERE id = ?", (node,))
        # Only once committed: a failed delete leaves the node known.
        del self._node_ids[node_id]
        return int(dropped)

    # Reading.

    def range(
        self,
        node_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[tuple[float, Value]]:
        """Samples of a node with ``since <= ts <= until``, oldest first.

        Args:
            since: lower bound, inclusive; ``None`` for no bound.
            until: upper bound, inclusive; ``None`` for no bound.
            limit: at most this many samples, the oldest of the window first (page on by
                passing the last timestamp seen, just above it, as the next ``since``).

        Raises:
            ValidationError: a bound is not finite, ``since > until``, or ``limit`` is negative.
            StoreClosedError: the store is closed.
        """
        _check_node(node_id)
        low = -math.inf if since is None else _check_ts("since", since)
        high = math.inf if until is None else _check_ts("until", until)
        if low > high:
            raise ValidationError("since", f"must not be after until ({high!r})", since)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValidationError("limit", "must be an int of at least 0 or None", limit)
        with self._reading("read a range"):
            node = self._node_ids.get(node_id)
            if node is None:
                return []
            rows = self._conn.execute(
                "SELECT ts, value FROM samples WHERE node = ? AND ts >= ? AND ts <= ? "
                "ORDER BY ts LIMIT ?",
                (node, low, high, -1 if limit is None else limit),
            ).fetchall()
        return [(float(ts), self._decode(node_id, value)) for ts, value in rows]

    def latest(self, node_id: str) -> tuple[float, Value] | None:
        """The newest sample of a node, or ``None`` if it has none.

        Raises:
            StoreClosedError: the store is closed.
        """
        _check_node(node_id)
        with self._reading("read the latest sample"):
            node = self._node_ids.get(node_id)
            if node is None:
                return None
            row = self._conn.execute(
                "SELECT ts, value FROM samples WHERE node = ? ORDER BY ts DESC LIMIT 1", (node,)
            ).fetchone()
        return None if row is None else (float(row[0]), self._decode(node_id, row[1]))

    def nodes(self) -> list[str]:
        """Ids of the nodes that have (or had, until pruned) samples, sorted."""
        with self._reading("list nodes"):
            return sorted(self._node_ids)

    # Closing.

    def close(self) -> None:
        """Close the file. Idempotent; any later call raises :class:`StoreClosedError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                raise StoreError(f"{self._path}: close failed: {exc}") from None

    def __enter__(self) -> SeriesStore:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Helpers.

    def _prepare(self) -> dict[str, int]:
        """Check or create the schema and read the interned node ids."""
        conn = self._conn
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as exc:
            raise CorruptStoreError(self._path, "", f"cannot read the database: {exc}") from None

        if version == 0 and app_id == 0 and not tables:
            self._create()
        elif app_id != APPLICATION_ID:
            raise CorruptStoreError(
                self._path, "", f"not a series file (application_id {app_id:#x})"
            )
        elif version > SCHEMA_VERSION:
            raise CorruptStoreError(
                self._path,
                "",
                f"schema version {version} is newer than {SCHEMA_VERSION}, the newest this "
                "release reads; open it with a newer krill_crdt",
            )
        elif version != SCHEMA_VERSION or not {"nodes", "samples"} <= tables:
            raise CorruptStoreError(
                self._path, "", f"incomplete series file (schema version {version})"
            )

        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # NOTE: samples are not acknowledged writes, so commits skip the fsync
            # NOTE: (synchronous=NORMAL in WAL mode): the file always stays consistent, but a
            # NOTE: power cut can lose the samples of the last moments before it (those
            # NOTE: committed since the last checkpoint reached the disk).
            conn.execute("PRAGMA synchronous=NORMAL")
            return {str(node): int(i) for i, node in conn.execute("SELECT id, node FROM nodes")}
        except sqlite3.DatabaseError as exc:
            raise CorruptStoreError(self._path, "", f"cannot read the node index: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: cannot configure the series file: {exc}") from None

    def _create(self) -> None:
        conn = self._conn
        try:
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
            raise StoreError(f"{self._path}: cannot create the series file: {exc}") from None

    def _intern(self, node_id: str) -> int:
        """The integer id of a node, added inside the current transaction if new."""
        node = self._node_ids.get(node_id)
        if node is None:
            cur = self._conn.execute("INSERT INTO nodes (node) VALUES (?)", (node_id,))
            assert cur.lastrowid is not None
            node = self._node_ids[node_id] = cur.lastrowid
        return node

    @contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        """One commit under the lock; on any error roll back, and forget node ids that were
        interned inside it (their rows are gone with the rollback)."""
        with self._lock:
            self._check_open()
            known = set(self._node_ids)
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                for node_id in set(self._node_ids) - known:
                    del self._node_ids[node_id]
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"{self._path}: cannot {what}: {exc}") from None
                raise

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        with self._lock:
            self._check_open()
            try:
                yield
            except sqlite3.Error as exc:
                raise StoreError(f"{self._path}: cannot {what}: {exc}") from None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"series store {self._path} is closed")

    def _decode(self, node_id: str, value: object) -> Value:
        # Bools are the only values stored as INTEGER (see _encode).
        if type(value) is int:
            return bool(value)
        if isinstance(value, (float, str)):
            return value
        raise CorruptStoreError(
            self._path, "", f"a sample of node {node_id!r} holds a {type(value).__name__}"
        )


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: int | float) -> float | None:
    """The value as a float, or None if it is not finite (an int too large counts as that)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _check_node(node_id: object) -> str:
    if not isinstance(node_id, str) or not node_id:
        raise ValidationError("node_id", "must be a non-empty string", node_id)
    return node_id


def _check_ts(name: str, ts: object) -> float:
    number = _finite(ts) if _is_number(ts) else None
    if number is None:
        raise ValidationError(name, "must be a finite number of seconds", ts)
    return number


def _encode(value: object) -> float | int | str:
    """The value as SQLite should store it: bools as INTEGER 0/1, numbers as REAL."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        number = _finite(value)
        if number is None:
            raise ValidationError("value", "must be finite", value)
        return number
    if isinstance(value, str):
        if len(value) > MAX_TEXT_LENGTH:
            raise ValidationError(
                "value", f"must be at most {MAX_TEXT_LENGTH} characters", f"{len(value)} characters"
            )
        return value
    raise ValidationError("value", "must be a float, a bool or a str", type(value).__name__)
