"""The durable store: host docs that survive a restart, squash, and isolate corruption."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from krill_crdt.errors import (
    CorruptStoreError,
    NodeNotFoundError,
    StoreClosedError,
    StoreError,
)
from krill_crdt.model import Node, NodeType
from krill_crdt.store import Create, HostDoc, LogOptions, Origin, Store
from krill_crdt.store.store import DOCS_FILE

HOST = "host-a"


def server(host: str = HOST) -> Node:
    return Node.new(NodeType.Server, host=host, id=f"srv-{host}", name="server")


def project(node_id: str, host: str = HOST) -> Node:
    return Node.new(NodeType.Project, host=host, parent=f"srv-{host}", id=node_id, name=node_id)


async def test_a_reopened_store_holds_every_acknowledged_write(tmp_path: Path) -> None:
    async with Store(tmp_path) as store:
        await store.create(server())
        await store.create(project("p1"))
        await store.update("p1", {"name": "renamed"})
        await store.create(project("p2"))
        await store.delete("p2")
        expected = store.doc(HOST).nodes.to_py()

    async with Store(tmp_path) as store:
        assert store.doc(HOST).nodes.to_py() == expected
        assert store.get("p1").name == "renamed"
        with pytest.raises(NodeNotFoundError):
            store.get("p2")


async def test_every_host_doc_is_stored_separately(tmp_path: Path) -> None:
    async with Store(tmp_path) as store:
        for host in ("host-a", "host-b"):
            await store.create(server(host))
            await store.create(project(f"p-{host}", host=host))
    async with Store(tmp_path) as store:
        assert store.hosts() == ["host-a", "host-b"]
        assert store.host_of("p-host-b") == "host-b"


async def test_remote_updates_are_persisted_too(tmp_path: Path) -> None:
    remote = HostDoc(HOST)
    remote.create(server())
    remote.create(project("from-peer"))
    async with Store(tmp_path) as store:
        store.apply(HOST, remote.diff(), origin=Origin("peer-b", "udp"))
        await store.flush()
    async with Store(tmp_path) as store:
        assert store.get("from-peer").name == "from-peer"


async def test_the_log_is_squashed_once_it_passes_the_count_threshold(tmp_path: Path) -> None:
    options = LogOptions(squash_count=20)
    async with Store(tmp_path, options=options) as store:
        await store.create(server())
        for i in range(60):
            await store.create(project(f"p{i}"))
    # 61 writes, squashed every 20: the tail left in the file is shorter than one threshold
    # plus the writes that landed while the last squash was written.
    assert len(_rows(tmp_path, HOST)) < 40
    async with Store(tmp_path, options=options) as store:
        assert len(store.doc(HOST)) == 61


async def test_squash_keeps_the_content_and_shrinks_the_log(tmp_path: Path) -> None:
    options = LogOptions(squash_count=10**9, squash_bytes=1 << 40, squash_age_s=1e9)
    async with Store(tmp_path, options=options) as store:
        doc = store.doc(HOST, create=True)
        doc.batch([Create(server()), *(Create(project(f"p{i}")) for i in range(50))])
        for i in range(3000):
            doc.update(f"p{i % 50}", {"name": f"v{i}"})
        await store.flush()
        before = store.log.file_bytes()
        await store.squash(HOST)
        await store.flush()
        assert store.log.file_bytes() < before / 3
        expected = doc.nodes.to_py()
    async with Store(tmp_path) as store:
        assert store.doc(HOST).nodes.to_py() == expected


@pytest.mark.slow
async def test_after_100k_updates_and_a_squash_the_file_is_at_most_twice_a_fresh_one(
    tmp_path: Path,
) -> None:
    options = LogOptions(squash_count=10**9, squash_bytes=1 << 40, squash_age_s=1e9)
    async with Store(tmp_path / "grown", options=options) as store:
        doc = store.doc(HOST, create=True)
        doc.batch([Create(server()), *(Create(project(f"p{i:04d}")) for i in range(999))])
        for i in range(100_000):
            doc.update(f"p{i % 999:04d}", {"name": f"v{i}"})
        await store.flush()
        await store.squash(HOST)
        await store.flush()
        grown = store.log.file_bytes()
        state = doc.diff()
    async with Store(tmp_path / "fresh") as fresh:
        fresh.apply(HOST, state, origin=Origin("seed", "test"))
        await fresh.flush()
        fresh_size = fresh.log.file_bytes()
    assert grown <= 2 * fresh_size, (grown, fresh_size)


async def test_a_corrupt_doc_is_reported_and_the_others_still_load(tmp_path: Path) -> None:
    async with Store(tmp_path) as store:
        for host in ("host-a", "host-b"):
            await store.create(server(host))
            await store.create(project(f"p-{host}", host=host))
    with sqlite3.connect(tmp_path / DOCS_FILE) as conn:
        conn.execute("UPDATE updates SET blob = CAST(X'00FF' || blob AS BLOB) WHERE doc = 'host-b'")
    rows_before = _rows(tmp_path, "host-b")

    async with Store(tmp_path) as store:
        assert set(store.corrupt) == {"host-b"}
        error = store.corrupt["host-b"]
        assert "host-b" in str(error) and DOCS_FILE in str(error)
        assert store.get("p-host-a").name == "p-host-a"
        with pytest.raises(CorruptStoreError):
            store.doc("host-b")
        await store.create(project("p-more"))

    assert _rows(tmp_path, "host-b") == rows_before


async def test_an_update_that_pycrdt_refuses_marks_its_doc_corrupt(tmp_path: Path) -> None:
    async with Store(tmp_path) as store:
        await store.create(server())
        store.log.append("host-z", b"\xffnot a yjs update")
        await store.create(server("host-z2"))
    async with Store(tmp_path) as store:
        assert set(store.corrupt) == {"host-z"}
        assert "stored update 0" in str(store.corrupt["host-z"])
        assert store.get(f"srv-{HOST}").type is NodeType.Server


async def test_a_repair_found_on_load_is_written_back(tmp_path: Path) -> None:
    a = HostDoc(HOST, client_id=1)
    a.create(server())
    a.create(project("parent"))
    b = HostDoc(HOST, client_id=2)
    b.apply(a.diff(), origin=Origin("a", "test"))
    a.delete("parent")
    b.create(Node.new(NodeType.Project, host=HOST, parent="parent", id="child"))
    async with Store(tmp_path) as store:
        # Both sides' updates land in the log without meeting in a host doc first.
        store.log.append(HOST, a.diff())
        store.log.append(HOST, b.diff())
        await store.flush()
    async with Store(tmp_path) as store:
        assert "child" not in store.doc(HOST)
    async with Store(tmp_path) as store:
        assert "child" not in store.doc(HOST)


async def test_a_closed_store_refuses_use(tmp_path: Path) -> None:
    store = await Store(tmp_path).open()
    await store.close()
    await store.close()
    with pytest.raises(StoreClosedError):
        store.doc(HOST, create=True)


async def test_the_store_keeps_data_point_series(tmp_path: Path) -> None:
    async with Store(tmp_path) as store:
        store.series.append("dp", 100.0, 21.5)
        store.series.append("dp", 101.0, 22.0)
    async with Store(tmp_path) as store:
        assert store.series.range("dp") == [(100.0, 21.5), (101.0, 22.0)]


def _rows(path: Path, doc: str) -> list[tuple[int, bytes]]:
    with sqlite3.connect(path / DOCS_FILE) as conn:
        return conn.execute(
            "SELECT seq, blob FROM updates WHERE doc = ? ORDER BY seq", (doc,)
        ).fetchall()


async def test_a_second_store_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    async with Store(tmp_path):
        with pytest.raises(StoreError, match="in use"):
            await Store(tmp_path).open()
    async with Store(tmp_path) as again:
        assert again.hosts() == []
