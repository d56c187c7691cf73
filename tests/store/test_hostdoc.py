"""Host docs: validated, origin-tagged, all-or-nothing writes and deterministic merges."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from pycrdt import Map

from krill_crdt.errors import (
    ChangeStreamOverflowError,
    NodeExistsError,
    NodeNotFoundError,
    SchemaVersionError,
    UpdateRejectedError,
    ValidationError,
)
from krill_crdt.model import Node, NodeState, NodeType
from krill_crdt.store import ChangeKind, Create, Delete, HostDoc, Origin, Update
from krill_crdt.sync.digest import read_state_vector

HOST = "host-a"
REMOTE = Origin("peer-b", "ws")


def make_clock(start: float = 1_700_000_000.0) -> object:
    ticks = itertools.count()
    return lambda: start + next(ticks)


@pytest.fixture
def doc() -> HostDoc:
    host_doc = HostDoc(HOST, clock=make_clock())  # type: ignore[arg-type]
    host_doc.create(Node.new(NodeType.Server, host=HOST, id="srv", name="server"))
    return host_doc


def project(node_id: str, parent: str = "srv", host: str = HOST) -> Node:
    return Node.new(NodeType.Project, host=host, parent=parent, id=node_id, name=node_id)


def exchange(first: HostDoc, second: HostDoc) -> None:
    """Bring two replicas of one host doc together, as a sync round trip would."""
    to_second = first.diff(second.state_vector())
    to_first = second.diff(first.state_vector())
    second.apply(to_second, origin=Origin("first", "test"))
    first.apply(to_first, origin=Origin("second", "test"))


def replica_of(doc: HostDoc, client_id: int) -> HostDoc:
    copy = HostDoc(doc.host, clock=make_clock(), client_id=client_id)  # type: ignore[arg-type]
    copy.apply(doc.diff(), origin=Origin("seed", "test"))
    return copy


def content(doc: HostDoc) -> dict[str, object]:
    return doc.nodes.to_py() or {}


# ------------------------------------------------------------------------------ reads/writes


def test_create_stores_the_node_and_stamps_updated(doc: HostDoc) -> None:
    stored = doc.create(project("p1"))
    assert doc.get("p1") == stored
    assert stored.updated > 0
    assert stored.host == HOST and stored.parent == "srv"


def test_create_refuses_an_existing_id_and_writes_nothing(doc: HostDoc) -> None:
    before = doc.state_vector()
    with pytest.raises(NodeExistsError, match="srv"):
        doc.create(Node.new(NodeType.Server, host=HOST, id="srv"))
    assert doc.state_vector() == before


def test_create_refuses_a_missing_parent(doc: HostDoc) -> None:
    with pytest.raises(ValidationError, match="parent"):
        doc.create(project("p1", parent="nowhere"))
    assert "p1" not in doc


def test_create_refuses_a_parent_of_the_wrong_type(doc: HostDoc) -> None:
    doc.create(project("p1"))
    with pytest.raises(ValidationError) as caught:
        doc.create(Node.new(NodeType.Pin, host=HOST, parent="p1", id="pin", meta={"pin": 4}))
    assert caught.value.field == "parent"


def test_create_refuses_a_node_of_another_host(doc: HostDoc) -> None:
    with pytest.raises(ValidationError, match="host"):
        doc.create(project("p1", host="host-z"))


def test_get_of_a_missing_node_raises_node_not_found(doc: HostDoc) -> None:
    with pytest.raises(NodeNotFoundError):
        doc.get("missing")
    assert doc.find("missing") is None


def test_children_lists_direct_children_only(doc: HostDoc) -> None:
    doc.create(project("p1"))
    doc.create(project("p2"))
    doc.create(project("p3", parent="p1"))
    assert [n.id for n in doc.children("srv")] == ["p1", "p2"]
    assert [n.id for n in doc.children("p1")] == ["p3"]


def test_list_nodes_filters_by_type(doc: HostDoc) -> None:
    doc.create(project("p1"))
    assert [n.id for n in doc.list_nodes(type=NodeType.Project)] == ["p1"]
    assert [n.id for n in doc.list_nodes()] == ["p1", "srv"]


def test_update_writes_only_the_changed_fields(doc: HostDoc) -> None:
    doc.create(project("p1"))
    stream = doc.changes()
    doc.update("p1", {"name": "renamed", "state": NodeState.PAUSED})
    change = stream._buffer[0]
    assert change.kind is ChangeKind.UPDATED
    assert change.fields == {"name", "state", "updated"}
    assert doc.get("p1").name == "renamed"


@pytest.mark.parametrize("field", ["id", "host", "schema", "updated", "type", "colour"])
def test_update_refuses_fixed_and_unknown_fields(doc: HostDoc, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        doc.update("srv", {field: "x"})
    assert caught.value.field == field


def test_update_refuses_a_parent_below_the_node_itself(doc: HostDoc) -> None:
    doc.create(project("p1"))
    doc.create(project("p2", parent="p1"))
    with pytest.raises(ValidationError, match="descendants"):
        doc.update("p1", {"parent": "p2"})
    assert doc.get("p1").parent == "srv"


def test_concurrent_edits_of_different_fields_both_survive(doc: HostDoc) -> None:
    doc.create(project("p1"))
    other = replica_of(doc, client_id=2)
    doc.update("p1", {"name": "from-a"})
    other.update("p1", {"state": NodeState.WARN})
    exchange(doc, other)
    for replica in (doc, other):
        node = replica.get("p1")
        assert (node.name, node.state) == ("from-a", NodeState.WARN)


def test_delete_removes_the_subtree_in_one_transaction(doc: HostDoc) -> None:
    doc.create(project("p1"))
    doc.create(project("p2", parent="p1"))
    doc.create(project("p3", parent="p2"))
    doc.create(project("keep"))
    updates: list[bytes] = []
    doc.on_update(lambda update, origin: updates.append(update))
    stream = doc.changes()

    removed = doc.delete("p1")

    assert removed == ["p1", "p2", "p3"]
    assert len(updates) == 1
    assert doc.ids() == ["keep", "srv"]
    kinds = {(c.node_id, c.kind) for c in stream._buffer}
    assert kinds == {(n, ChangeKind.DELETED) for n in ("p1", "p2", "p3")}


def test_delete_of_a_missing_node_raises_and_writes_nothing(doc: HostDoc) -> None:
    before = doc.state_vector()
    with pytest.raises(NodeNotFoundError):
        doc.delete("missing")
    assert doc.state_vector() == before


# ------------------------------------------------------------------------------------ batches


def test_batch_is_all_or_nothing(doc: HostDoc) -> None:
    before = doc.state_vector()
    with pytest.raises(NodeNotFoundError):
        doc.batch([Create(project("p1")), Update("missing", {"name": "x"})])
    assert doc.state_vector() == before
    assert "p1" not in doc


def test_batch_sees_its_own_earlier_operations(doc: HostDoc) -> None:
    results = doc.batch(
        [
            Create(project("p1")),
            Create(project("p2", parent="p1")),
            Update("p2", {"name": "second"}),
            Create(project("gone")),
            Delete("gone"),
        ]
    )
    assert [n.id for n in results] == ["p1", "p2", "p2", "gone"]
    assert doc.get("p2").name == "second"
    assert "gone" not in doc


def test_batch_commits_as_one_update(doc: HostDoc) -> None:
    updates: list[bytes] = []
    doc.on_update(lambda update, origin: updates.append(update))
    doc.batch([Create(project(f"p{i}")) for i in range(20)])
    assert len(updates) == 1


# ------------------------------------------------------------------------------ change stream


async def test_change_stream_reports_kind_fields_and_origin(doc: HostDoc) -> None:
    stream = doc.changes()
    other = replica_of(doc, client_id=2)
    other.create(project("p1"))

    doc.apply(other.diff(doc.state_vector()), origin=REMOTE)
    doc.update("p1", {"name": "local edit"})
    doc.delete("p1")

    created = await stream.get(timeout=1)
    updated = await stream.get(timeout=1)
    deleted = await stream.get(timeout=1)
    assert (created.kind, created.origin, created.node_id) == (ChangeKind.CREATED, REMOTE, "p1")
    assert (updated.kind, updated.origin.is_local) == (ChangeKind.UPDATED, True)
    assert "name" in updated.fields
    assert (deleted.kind, deleted.node_id) == (ChangeKind.DELETED, "p1")


async def test_change_stream_ends_when_the_doc_closes(doc: HostDoc) -> None:
    stream = doc.changes()
    doc.create(project("p1"))
    doc.close()
    seen = [change.node_id async for change in stream]
    assert seen == ["p1"]


async def test_a_stalled_change_stream_overflows_instead_of_growing(doc: HostDoc) -> None:
    stream = doc.changes(capacity=3)
    for i in range(5):
        doc.create(project(f"p{i}"))
    received = [(await stream.get(timeout=1)).node_id for _ in range(3)]
    assert received == ["p0", "p1", "p2"]
    with pytest.raises(ChangeStreamOverflowError):
        await stream.get(timeout=1)


async def test_many_tasks_writing_at_once_lose_nothing_and_duplicate_nothing(
    doc: HostDoc,
) -> None:
    for i in range(10):
        doc.create(project(f"shared{i}"))
    created: list[str] = []

    async def writer(worker: int) -> None:
        for step in range(5):
            await asyncio.sleep(0)
            doc.update(f"shared{worker % 10}", {"name": f"w{worker}-s{step}"})
            try:
                doc.create(project(f"contested{worker % 7}"))
                created.append(f"contested{worker % 7}")
            except NodeExistsError:
                pass
            doc.create(project(f"own-{worker}-{step}"))

    await asyncio.gather(*(writer(w) for w in range(300)))

    assert sorted(created) == [f"contested{i}" for i in range(7)]
    own = [n for n in doc.ids() if n.startswith("own-")]
    assert len(own) == 300 * 5
    # The last writer of each shared node wrote step 4; its value must be what is stored.
    for i in range(10):
        assert doc.get(f"shared{i}").name.endswith("-s4")


# -------------------------------------------------------------------------- merge rules


@pytest.mark.parametrize("order", ["delete-first", "create-first"])
def test_child_created_under_a_concurrently_deleted_parent_is_removed(
    doc: HostDoc, order: str
) -> None:
    doc.create(project("parent"))
    other = replica_of(doc, client_id=2)
    doc.delete("parent")
    other.create(project("child", parent="parent"))
    other.create(project("grandchild", parent="child"))
    deleting, creating = doc.diff(), other.diff()

    a = HostDoc(HOST, clock=make_clock(), client_id=3)  # type: ignore[arg-type]
    b = HostDoc(HOST, clock=make_clock(), client_id=4)  # type: ignore[arg-type]
    first, second = (deleting, creating) if order == "delete-first" else (creating, deleting)
    a.apply(first, origin=REMOTE)
    a.apply(second, origin=REMOTE)
    b.apply(second, origin=REMOTE)
    b.apply(first, origin=REMOTE)
    exchange(a, b)

    assert a.ids() == b.ids() == ["srv"]
    assert content(a) == content(b)
    # Yrs encodes state vectors in hash-map order: compare them decoded.
    assert read_state_vector(a.state_vector()) == read_state_vector(b.state_vector())


def test_a_child_whose_parent_has_not_arrived_yet_is_kept(doc: HostDoc) -> None:
    other = replica_of(doc, client_id=2)
    updates: list[bytes] = []
    other.on_update(lambda update, origin: updates.append(update))
    other.create(project("parent"))
    other.create(project("child", parent="parent"))
    parent_update, child_update = updates

    # The child's delta arrives first: deltas travel independently and may overtake.
    doc.apply(child_update, origin=REMOTE)
    assert "child" in doc
    doc.apply(parent_update, origin=REMOTE)
    assert doc.get("child").parent == "parent"
    assert [n.id for n in doc.children("parent")] == ["child"]


def test_both_orders_of_a_delete_create_race_give_the_same_doc(doc: HostDoc) -> None:
    doc.create(project("parent"))
    other = replica_of(doc, client_id=2)
    doc.delete("parent")
    other.create(project("child", parent="parent"))
    exchange(doc, other)
    exchange(doc, other)
    assert content(doc) == content(other)
    assert doc.ids() == other.ids() == ["srv"]


def test_concurrent_moves_into_a_cycle_are_repaired_the_same_way_everywhere(
    doc: HostDoc,
) -> None:
    doc.create(project("x"))
    doc.create(project("y"))
    other = replica_of(doc, client_id=2)
    doc.update("x", {"parent": "y"})
    other.update("y", {"parent": "x"})
    exchange(doc, other)
    exchange(doc, other)

    assert content(doc) == content(other)
    assert doc.get("x").parent == "srv"  # the smallest id on the cycle moves to the root
    assert doc.get("y").parent == "x"


def test_a_garbage_update_is_rejected_and_changes_nothing(doc: HostDoc) -> None:
    before = (doc.state_vector(), content(doc))
    with pytest.raises(UpdateRejectedError):
        doc.apply(b"\xff\x01garbage", origin=REMOTE)
    assert (doc.state_vector(), content(doc)) == before


def test_a_node_from_a_newer_schema_major_is_refused_not_half_read(doc: HostDoc) -> None:
    fields = project("future").to_fields()
    fields["schema"] = "9.0"
    fields["meta"] = {"whatever": "a newer release writes"}
    with doc.doc.transaction():
        doc.nodes["future"] = Map(fields)
    with pytest.raises(SchemaVersionError):
        doc.get("future")
    assert "future" not in [n.id for n in doc.list_nodes()]
    assert set(doc.unreadable()) == {"future"}
