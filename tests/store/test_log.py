"""The update log: durable acknowledgements, order, squash, crash safety and corrupt files."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from krill_crdt.errors import CorruptStoreError, StoreClosedError, StoreError, ValidationError
from krill_crdt.store import log as log_module
from krill_crdt.store.log import SCHEMA_VERSION, DocLog, LogOptions, UpdateLog

REPO = Path(__file__).resolve().parents[2]


# Helpers.


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log.sqlite3"


@pytest.fixture
async def log(path: Path) -> AsyncIterator[UpdateLog]:
    opened = UpdateLog(path, LogOptions(batch_delay_ms=1.0))
    opened.load()
    yield opened
    await opened.close()


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every COMMIT the writer's connection executes, seen by SQLite's own statement trace."""
    seen: list[str] = []
    real_open = log_module._open_connection

    def traced_open(db_path: str) -> sqlite3.Connection:
        conn = real_open(db_path)
        conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
        return conn

    monkeypatch.setattr(log_module, "_open_connection", traced_open)
    return seen


def real_updates(count: int, keys: int = 200) -> tuple[Doc[Any], list[bytes]]:
    """A host-doc-like pycrdt doc and the ``count`` updates that built it (about 150 bytes
    each: one node of the shape host docs hold, rewritten)."""
    doc: Doc[Any] = Doc()
    nodes = doc.get("nodes", type=Map)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        with doc.transaction():
            node_id = f"node-{i % keys:04d}"
            nodes[node_id] = {
                "id": node_id,
                "parent": "srv",
                "host": "host-a",
                "type": "DataPoint",
                "name": f"point {i}",
                "state": "idle",
                "updated": 1_700_000_000.0 + i,
            }
    return doc, updates


def rebuild(doc_log: DocLog) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    if doc_log.snapshot is not None:
        doc.apply_update(doc_log.snapshot)
    for update in doc_log.tail:
        doc.apply_update(update)
    return doc


def rows_of(db: Path, doc: str) -> list[tuple[int, bytes]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT seq, blob FROM updates WHERE doc = ? ORDER BY seq", (doc,)
        ).fetchall()


async def reopen(db: Path) -> dict[str, DocLog]:
    again = UpdateLog(db)
    try:
        loaded = again.load()
        assert not loaded.corrupt
        return dict(loaded.docs)
    finally:
        await again.close()


# Options.


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fsync", "never"),
        ("batch_delay_ms", -1.0),
        ("batch_delay_ms", math.nan),
        ("squash_count", 0),
        ("squash_count", True),
        ("squash_bytes", 0),
        ("squash_age_s", -5.0),
    ],
)
def test_options_reject_a_bad_value_naming_the_option(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        LogOptions(**{field: value})  # type: ignore[arg-type]
    assert caught.value.field == field


# Acknowledgement and durability.


@pytest.mark.parametrize("policy", ["always", "batch"])
async def test_append_resolves_only_once_another_connection_sees_the_row(
    path: Path, policy: str
) -> None:
    seen_at_resolution: list[list[tuple[int, bytes]]] = []
    async with UpdateLog(path, LogOptions(fsync=policy)) as log:  # type: ignore[arg-type]
        log.load()
        fut = log.append("host-a", b"update-1")
        # Runs on the loop at the very moment the future resolves.
        fut.add_done_callback(lambda _: seen_at_resolution.append(rows_of(path, "host-a")))
        assert await fut == 1
    assert seen_at_resolution == [[(1, b"update-1")]]


async def test_batch_policy_holds_the_acknowledgement_until_its_delayed_commit(path: Path) -> None:
    async with UpdateLog(path, LogOptions(fsync="batch", batch_delay_ms=400.0)) as log:
        log.load()
        fut = log.append("host-a", b"update-1")
        await asyncio.sleep(0.1)
        assert not fut.done()
        assert rows_of(path, "host-a") == []
        assert await fut == 1
        assert rows_of(path, "host-a") == [(1, b"update-1")]


async def test_appends_to_one_doc_keep_their_call_order_and_numbering(path: Path) -> None:
    async with UpdateLog(path) as log:
        log.load()
        futures = []
        for i in range(300):
            futures.append(log.append("host-a", f"a{i}".encode()))
            if i % 3 == 0:
                futures.append(log.append("host-b", f"b{i}".encode()))
        await asyncio.gather(*futures)
    docs = await reopen(path)
    assert docs["host-a"].tail == tuple(f"a{i}".encode() for i in range(300))
    assert docs["host-b"].tail == tuple(f"b{i}".encode() for i in range(0, 300, 3))
    assert [seq for seq, _ in rows_of(path, "host-a")] == list(range(1, 301))


async def test_batch_policy_gathers_many_appends_into_few_commits(
    path: Path, commits: list[str]
) -> None:
    async with UpdateLog(path, LogOptions(fsync="batch", batch_delay_ms=20.0)) as log:
        log.load()
        commits.clear()  # the one that created the schema
        await asyncio.gather(*(log.append("host-a", b"u%d" % i) for i in range(1000)))
        assert log.stats().commits == len(commits)
    assert 1 <= len(commits) <= 5


async def test_always_policy_commits_a_lone_writer_once_per_append(
    path: Path, commits: list[str]
) -> None:
    async with UpdateLog(path, LogOptions(fsync="always")) as log:
        log.load()
        commits.clear()  # the one that created the schema
        for i in range(20):
            await log.append("host-a", b"u%d" % i)
    assert len(commits) == 20


async def test_always_policy_shares_a_commit_among_appends_already_queued(
    path: Path, commits: list[str]
) -> None:
    async with UpdateLog(path, LogOptions(fsync="always")) as log:
        log.load()
        commits.clear()  # the one that created the schema
        await asyncio.gather(*(log.append("host-a", b"u%d" % i) for i in range(1000)))
    # Group commit: while one commit is being fsynced, the appends queued meanwhile wait for
    # the next one together.
    assert len(commits) < 250


async def test_flush_returns_once_queued_appends_are_durable(path: Path) -> None:
    async with UpdateLog(path, LogOptions(batch_delay_ms=500.0)) as log:
        log.load()
        futures = [log.append("host-a", b"u%d" % i) for i in range(10)]
        started = time.monotonic()
        await log.flush()
        # A flush cuts the batch delay short instead of waiting it out.
        assert time.monotonic() - started < 0.4
        assert len(rows_of(path, "host-a")) == 10
        await asyncio.sleep(0)
        assert all(f.done() for f in futures)


async def test_close_commits_pending_appends_first(path: Path) -> None:
    log = UpdateLog(path, LogOptions(batch_delay_ms=500.0))
    log.load()
    fut = log.append("host-a", b"pending")
    await log.close()
    assert await fut == 1
    assert (await reopen(path))["host-a"].tail == (b"pending",)


async def test_a_write_that_breaks_a_constraint_fails_alone(log: UpdateLog) -> None:
    # Another writer on the same file took seq 2 of host-a.
    with sqlite3.connect(log.path) as conn:
        conn.execute(
            "INSERT INTO updates (doc, seq, appended, crc, blob) VALUES ('host-a', 2, 0, 0, x'00')"
        )
    futures = [log.append("host-a", b"u%d" % i) for i in range(1, 4)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], StoreError)
    assert "host-a" in str(results[1])


# Reading back.


async def test_new_file_loads_no_docs(log: UpdateLog) -> None:
    loaded = log.load()
    assert dict(loaded.docs) == {}
    assert dict(loaded.corrupt) == {}


async def test_reopen_loads_snapshot_then_tail_that_rebuild_the_doc(path: Path) -> None:
    source, updates = real_updates(300)
    snapshot = snapshot_of(updates[:200])
    async with UpdateLog(path) as log:
        log.load()
        await asyncio.gather(*(log.append("host-a", u) for u in updates[:200]))
        await log.squash("host-a", snapshot, 200)
        await asyncio.gather(*(log.append("host-a", u) for u in updates[200:]))

    doc_log = (await reopen(path))["host-a"]
    assert doc_log.snapshot == snapshot
    assert doc_log.tail == tuple(updates[200:])
    assert doc_log.last_seq == 300
    nodes = rebuild(doc_log).get("nodes", type=Map)
    assert nodes.to_py() == source.get("nodes", type=Map).to_py()


def snapshot_of(updates: list[bytes]) -> bytes:
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return doc.get_update()


async def test_appends_after_reopen_continue_the_numbering(path: Path) -> None:
    async with UpdateLog(path) as log:
        log.load()
        await log.append("host-a", b"one")
        await log.squash("host-a", b"snap", 1)
    async with UpdateLog(path) as log:
        assert log.load().docs["host-a"].last_seq == 1
        assert await log.append("host-a", b"two") == 2


# Squash.


async def test_squash_replaces_entries_up_to_upto_seq_and_keeps_later_ones(log: UpdateLog) -> None:
    for i in range(1, 11):
        log.append("host-a", b"u%d" % i)
    log.append("host-b", b"other")
    await log.squash("host-a", b"snapshot-through-6", 6)

    assert [seq for seq, _ in rows_of(Path(log.path), "host-a")] == [7, 8, 9, 10]
    assert rows_of(Path(log.path), "host-b") == [(1, b"other")]
    doc_log = log.load().docs["host-a"]
    assert doc_log.snapshot == b"snapshot-through-6"
    assert doc_log.tail == (b"u7", b"u8", b"u9", b"u10")
    assert doc_log.last_seq == 10


@pytest.mark.parametrize("upto_seq", [-1, 4, 2.0])
async def test_squash_rejects_upto_seq_outside_the_logged_range(
    log: UpdateLog, upto_seq: object
) -> None:
    for i in range(3):
        log.append("host-a", b"u%d" % i)
    with pytest.raises(ValidationError) as caught:
        log.squash("host-a", b"snap", upto_seq)  # type: ignore[arg-type]
    assert caught.value.field == "upto_seq"


async def test_squash_rejects_going_below_the_current_snapshot(log: UpdateLog) -> None:
    for i in range(5):
        log.append("host-a", b"u%d" % i)
    await log.squash("host-a", b"snap", 4)
    with pytest.raises(ValidationError):
        log.squash("host-a", b"older", 3)


async def test_squash_really_shrinks_the_file(path: Path) -> None:
    doc, updates = real_updates(20_000)
    assert 100 <= sum(map(len, updates)) / len(updates) <= 300
    async with UpdateLog(path) as log:
        log.load()
        await asyncio.gather(*(log.append("host-a", u) for u in updates))
        before = log.file_bytes()
        await log.squash("host-a", doc.get_update(), log.last_seq("host-a"))
        after = log.file_bytes()
    assert before > 2_000_000
    assert after < before / 4, (before, after)
    rebuilt = rebuild((await reopen(path))["host-a"])
    assert rebuilt.get("nodes", type=Map).to_py() == doc.get("nodes", type=Map).to_py()


async def test_squash_due_once_the_tail_exceeds_the_count(path: Path) -> None:
    async with UpdateLog(path, LogOptions(squash_count=5)) as log:
        log.load()
        for i in range(5):
            log.append("host-a", b"u%d" % i)
        assert not log.squash_due("host-a", time.time())
        log.append("host-a", b"u6")
        assert log.squash_due("host-a", time.time())


async def test_squash_due_once_the_tail_exceeds_the_bytes(path: Path) -> None:
    async with UpdateLog(path, LogOptions(squash_bytes=100)) as log:
        log.load()
        log.append("host-a", b"x" * 100)
        assert not log.squash_due("host-a", time.time())
        log.append("host-a", b"x")
        assert log.squash_due("host-a", time.time())


async def test_squash_due_once_the_oldest_entry_is_older_than_the_age(path: Path) -> None:
    now = [1_000.0]
    options = LogOptions(squash_age_s=60.0)
    async with UpdateLog(path, options, clock=lambda: now[0]) as log:
        log.load()
        log.append("host-a", b"u1")
        assert not log.squash_due("host-a", 1_060.0)
        assert log.squash_due("host-a", 1_060.5)
    # The age survives a restart: it comes from the time stored with the entry.
    async with UpdateLog(path, options, clock=lambda: now[0]) as log:
        log.load()
        assert log.squash_due("host-a", 1_061.0)


async def test_squash_due_counts_the_tail_found_on_disk(path: Path) -> None:
    async with UpdateLog(path) as log:
        log.load()
        await asyncio.gather(*(log.append("host-a", b"u%d" % i) for i in range(8)))
    async with UpdateLog(path, LogOptions(squash_count=7)) as log:
        log.load()
        assert log.squash_due("host-a", time.time())


async def test_squash_due_is_false_while_a_squash_is_in_flight_and_after_it(
    path: Path,
) -> None:
    async with UpdateLog(path, LogOptions(squash_count=2)) as log:
        log.load()
        for i in range(5):
            log.append("host-a", b"u%d" % i)
        squashed = log.squash("host-a", b"snap", 5)
        assert not log.squash_due("host-a", time.time())
        await squashed
        assert not log.squash_due("host-a", time.time())
        assert not log.squash_due("unknown", time.time())


# Deleting a doc.


async def test_delete_doc_forgets_it_and_restarts_its_numbering(log: UpdateLog) -> None:
    for i in range(3):
        log.append("host-a", b"u%d" % i)
    await log.squash("host-a", b"snap", 2)
    await log.delete_doc("host-a")
    assert await log.append("host-a", b"fresh") == 1
    doc_log = log.load().docs["host-a"]
    assert doc_log.snapshot is None
    assert doc_log.tail == (b"fresh",)


# Files on disk.


async def test_file_bytes_counts_the_database_wal_and_shm(log: UpdateLog) -> None:
    await log.append("host-a", b"x" * 10_000)
    on_disk = sum(
        os.path.getsize(log.path + suffix)
        for suffix in ("", "-wal", "-shm")
        if os.path.exists(log.path + suffix)
    )
    assert log.file_bytes() == on_disk
    assert os.path.getsize(log.path + "-wal") > 10_000


def test_missing_directory_is_a_store_error_not_a_sqlite_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        UpdateLog(tmp_path / "no-such-dir" / "log.sqlite3")


# Corrupt and foreign files.


def test_random_garbage_file_is_refused_as_corrupt(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(64 * 1024))
    with pytest.raises(CorruptStoreError) as caught:
        UpdateLog(path)
    assert caught.value.doc == ""
    assert caught.value.path == str(path)


async def test_file_truncated_inside_its_header_is_refused_as_corrupt(path: Path) -> None:
    async with UpdateLog(path) as log:
        log.load()
        await log.append("host-a", b"u1")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CorruptStoreError) as caught:
        UpdateLog(path)
    assert caught.value.doc == ""


async def test_file_truncated_halfway_is_refused_as_corrupt_not_read_short(path: Path) -> None:
    docs = [f"host-{i}" for i in range(20)]
    async with UpdateLog(path) as log:
        log.load()
        await asyncio.gather(
            *(log.append(doc, b"%s-%d" % (doc.encode(), i) * 20) for doc in docs for i in range(50))
        )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    # SQLite checks the page count in the header against the file's length.
    with pytest.raises(CorruptStoreError) as caught:
        UpdateLog(path)
    assert caught.value.doc == ""


async def test_flipped_byte_in_one_docs_blob_marks_only_that_doc_corrupt(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with UpdateLog(path) as log:
        log.load()
        for doc in ("host-a", "host-b", "host-c"):
            for i in range(5):
                log.append(doc, b"%s:entry-%d:" % (doc.encode(), i) + b"payload" * 10)
        await log.flush()
    raw = bytearray(path.read_bytes())
    where = raw.index(b"host-b:entry-3:payload")
    raw[where + 20] ^= 0x01
    path.write_bytes(bytes(raw))

    with caplog.at_level(logging.WARNING, logger="krill.store"):
        log = UpdateLog(path)
        loaded = log.load()
        log.load()
        await log.close()

    assert set(loaded.docs) == {"host-a", "host-c"}
    assert set(loaded.corrupt) == {"host-b"}
    error = loaded.corrupt["host-b"]
    assert (error.path, error.doc) == (str(path), "host-b")
    assert len(loaded.docs["host-a"].tail) == 5
    # Reported once, naming file and doc, without the blob's bytes.
    warnings = [r.getMessage() for r in caplog.records if r.name == "krill.store"]
    assert len(warnings) == 1
    assert str(path) in warnings[0] and "host-b" in warnings[0]
    assert "payload" not in warnings[0]
    # Nothing was dropped: the damaged rows are still in the file.
    assert len(rows_of(path, "host-b")) == 5


async def test_appends_to_a_corrupt_doc_continue_after_its_highest_seq(path: Path) -> None:
    async with UpdateLog(path) as log:
        log.load()
        for i in range(3):
            log.append("host-a", b"u%d" % i)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE updates SET crc = crc + 1 WHERE doc = 'host-a' AND seq = 2")
    async with UpdateLog(path) as log:
        assert set(log.load().corrupt) == {"host-a"}
        assert await log.append("host-a", b"u3") == 4
        # A squash over all of it is how a repaired doc replaces the damaged rows.
        await log.squash("host-a", b"repaired", 4)
        assert log.load().docs["host-a"].snapshot == b"repaired"


async def test_newer_schema_version_is_refused_with_a_clear_error(path: Path) -> None:
    async with UpdateLog(path) as log:
        log.load()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(CorruptStoreError) as caught:
        UpdateLog(path)
    assert caught.value.doc == ""
    assert f"schema version {SCHEMA_VERSION + 1} is newer" in str(caught.value)


def test_another_programs_sqlite_file_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE other (x)")
    with pytest.raises(CorruptStoreError, match="not an update log"):
        UpdateLog(path)


# Misuse and shutdown.


@pytest.mark.parametrize(
    ("doc", "update", "field"),
    [("", b"u", "doc"), ("host-a", b"", "update"), ("host-a", "text", "update")],
)
async def test_append_rejects_bad_arguments(
    log: UpdateLog, doc: str, update: bytes, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        log.append(doc, update)
    assert caught.value.field == field


async def test_a_mutable_buffer_is_copied_when_appended(log: UpdateLog) -> None:
    buffer = bytearray(b"before")
    fut = log.append("host-a", buffer)  # type: ignore[arg-type]
    buffer[:] = b"AFTER!"
    await fut
    assert rows_of(Path(log.path), "host-a") == [(1, b"before")]


async def test_every_call_after_close_raises_store_closed(path: Path) -> None:
    log = UpdateLog(path)
    log.load()
    await log.close()
    await log.close()  # idempotent
    calls: list[Callable[[], object]] = [
        log.load,
        lambda: log.append("host-a", b"u"),
        lambda: log.squash("host-a", b"s", 0),
        lambda: log.delete_doc("host-a"),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            call()
    with pytest.raises(StoreClosedError):
        await log.flush()
    with pytest.raises(StoreClosedError):
        async with log:
            pass


async def test_writer_thread_is_a_daemon_and_ends_on_close(path: Path) -> None:
    before = set(threading.enumerate())
    log = UpdateLog(path)
    (writer,) = set(threading.enumerate()) - before
    assert writer.daemon
    await log.close()
    assert not writer.is_alive()


def test_futures_of_a_closed_loop_are_left_alone(path: Path) -> None:
    """A loop that closes with appends in flight gets no callbacks afterwards."""
    errors: list[BaseException] = []
    previous_hook = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        errors.append(args.exc_value or Exception(str(args.exc_type)))

    threading.excepthook = hook
    try:
        log = UpdateLog(path, LogOptions(batch_delay_ms=200.0))

        async def append_and_leave() -> asyncio.Future[int]:
            log.load()
            return log.append("host-a", b"in-flight")

        fut = asyncio.run(append_and_leave())
        asyncio.run(log.close())
    finally:
        threading.excepthook = previous_hook
    assert errors == []
    assert not fut.done()
    assert rows_of(path, "host-a") == [(1, b"in-flight")]


# Crash safety.

CRASH_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pycrdt import Doc, Map
    from krill_crdt.store.log import LogOptions, UpdateLog

    async def main(path):
        log = UpdateLog(path, LogOptions(fsync="batch", batch_delay_ms=1.0))
        loaded = log.load()
        assert not loaded.corrupt, loaded.corrupt
        doc = Doc()
        nodes = doc.get("nodes", type=Map)
        if "h" in loaded.docs:
            stored = loaded.docs["h"]
            if stored.snapshot is not None:
                doc.apply_update(stored.snapshot)
            for update in stored.tail:
                doc.apply_update(update)
        updates = []
        doc.observe(lambda event: updates.append(event.update))
        counter = int(nodes.get("counter", 0.0))
        while True:
            for _ in range(40):
                counter += 1
                with doc.transaction():
                    nodes["counter"] = float(counter)
                    nodes[f"k{counter % 300}"] = "value " * 10 + str(counter)
                last = log.append("h", updates.pop())
            await last
            print(counter, flush=True)
            await log.squash("h", doc.get_update(), log.last_seq("h"))

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.slow
async def test_squash_survives_sigkill_at_any_point(path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*filter(None, sys.path), str(REPO)])}
    rng = random.Random(2024)
    acknowledged = 0
    for _ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", CRASH_CHILD, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert child.stdout is not None
        # Wait until the child is in its append/squash loop, then let it run a little.
        first = child.stdout.readline()
        assert first, child.stderr.read() if child.stderr else ""
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        printed = [int(line) for line in [first, *out.splitlines()] if line.strip()]
        acknowledged = max(acknowledged, printed[-1])

        docs = await reopen(path)
        nodes = rebuild(docs["h"]).get("nodes", type=Map)
        counter = int(nodes["counter"])
        # Nothing acknowledged is lost, and the state is the one the child built.
        assert counter >= acknowledged
        assert nodes[f"k{counter % 300}"] == "value " * 10 + str(counter)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# Properties.

_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"), st.sampled_from(["a", "b"]), st.binary(min_size=1, max_size=40)
        ),
        st.tuples(st.just("squash"), st.sampled_from(["a", "b"]), st.floats(0.0, 1.0)),
        st.tuples(st.just("delete"), st.sampled_from(["a", "b"]), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_reopened_log_matches_a_model_of_appends_squashes_and_deletes(
    ops: list[tuple[str, str, object]],
) -> None:
    # Model per doc: (snapshot, its seq, [(seq, blob)] after it, last seq).
    model: dict[str, tuple[bytes | None, int, list[tuple[int, bytes]], int]] = {}

    async def run(db: Path) -> dict[str, DocLog]:
        async with UpdateLog(db, LogOptions(fsync="always")) as log:
            log.load()
            pending: list[asyncio.Future[object]] = []
            for kind, doc, arg in ops:
                snapshot, snap_seq, tail, last = model.get(doc, (None, 0, [], 0))
                if kind == "append":
                    assert isinstance(arg, bytes)
                    pending.append(log.append(doc, arg))  # type: ignore[arg-type]
                    model[doc] = (snapshot, snap_seq, [*tail, (last + 1, arg)], last + 1)
                elif kind == "squash":
                    assert isinstance(arg, float)
                    upto = snap_seq + round(arg * (last - snap_seq))
                    blob = f"snapshot {doc} {upto}".encode()
                    pending.append(log.squash(doc, blob, upto))  # type: ignore[arg-type]
                    model[doc] = (blob, upto, [e for e in tail if e[0] > upto], last)
                else:
                    pending.append(log.delete_doc(doc))  # type: ignore[arg-type]
                    model.pop(doc, None)
            await asyncio.gather(*pending)
        return await reopen(db)

    with tempfile.TemporaryDirectory() as tmp:
        docs = asyncio.run(run(Path(tmp) / "log.sqlite3"))
    expected = {
        doc: DocLog(doc, snapshot, tuple(blob for _, blob in tail), last)
        for doc, (snapshot, _, tail, last) in model.items()
        if snapshot is not None or tail
    }
    assert docs == expected
