"""Host docs: one pycrdt document per host, holding that host's node and all its children.

Layout: the doc's guid is the host id; its root map ``nodes`` maps node id -> a nested map
of the node's fields (``id, parent, host, type, name, state, meta, updated, schema``). Each
field is its own map entry, so concurrent edits of different fields of one node both survive;
``meta`` is one value, so concurrent edits of the same node's meta resolve last-writer-wins
as a whole (Yjs orders them by client id).

Concurrency model:
    One asyncio event loop owns a host doc; pycrdt transactions, subscriptions and events must
    never cross threads. Every public write method runs synchronously from validation to
    commit, without awaiting, so no other task can interleave between the check (the node
    exists, the parent accepts this child, no cycle) and the act: check-then-act is atomic by
    construction, with no lock.

Deletes and the orphan rule:
    A delete removes the node and its whole subtree in one transaction, and records a
    tombstone (node id -> time of deletion) for each of them in the root map ``deleted``. When
    one peer deletes a node while another concurrently creates (or moves) a child beneath it,
    merging leaves a node whose parent is tombstoned. The rule, applied on every peer right
    after a remote update: **delete wins** — such an orphan and its subtree are removed (and
    tombstoned), in a transaction tagged :data:`~krill_crdt.store.origin.SWEEP`. Removing a
    map key is idempotent and commutes with every other removal, so all peers end with the
    same doc whichever order the updates arrive in.

    The tombstone is what tells a deleted parent from one that has not arrived yet: a peer
    that receives a child before its parent (deltas travel independently) keeps the child
    and waits; only a parent known to be deleted condemns it.

Parent cycles:
    Two peers that concurrently move two nodes under each other create a parent cycle that
    neither made alone. The rule: the node on the cycle with the smallest id is re-attached
    under the host's root node (the root with the smallest id), or, if the doc has no root,
    made a root itself. Every peer computes the same fix and writes the same value, so
    concurrent repairs agree.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map, MapEvent, TransactionEvent

from .._core import graph
from ..errors import (
    NodeExistsError,
    NodeNotFoundError,
    StoreClosedError,
    UpdateRejectedError,
    ValidationError,
)
from ..model import Node, NodeState, NodeType, check_parent
from .changes import DEFAULT_STREAM_CAPACITY, Change, ChangeKind, ChangeStream
from .origin import LOCAL, SWEEP, Origin

__all__ = [
    "ERRORS_ROOT",
    "NODES_ROOT",
    "TOMBSTONES_ROOT",
    "Create",
    "Delete",
    "HostDoc",
    "Operation",
    "Update",
    "UpdateListener",
    "trial_apply",
]

log = logging.getLogger("krill.store")

#: Name of the root map holding the nodes; part of the replication contract with Yjs clients.
NODES_ROOT = "nodes"
#: Name of the root map of tombstones: node id -> Unix time it was deleted.
# NOTE: tombstones are never pruned, so the map grows by one small entry per deleted node.
# NOTE: Pruning old ones is safe only once no peer can still hold a child created under the
# NOTE: deleted node, which needs a bound on how long a peer may stay cut off.
TOMBSTONES_ROOT = "deleted"
#: Name of the root map of processor errors: node id -> the message of its last failure.
ERRORS_ROOT = "errors"

#: Fields a partial update may set. ``id``, ``host`` and ``schema`` are fixed at creation and
#: ``updated`` is stamped by the host doc itself.
UPDATABLE_FIELDS = frozenset({"parent", "name", "state", "meta"})

#: Receives every committed update of a host doc (Yjs v1 bytes) with its origin.
UpdateListener = Callable[[bytes, Origin], None]


@dataclass(frozen=True, slots=True)
class Create:
    """Batch operation: create ``node`` (its id must not exist yet)."""

    node: Node


@dataclass(frozen=True, slots=True)
class Update:
    """Batch operation: set some fields of node ``node_id`` (a partial update)."""

    node_id: str
    changes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Delete:
    """Batch operation: delete node ``node_id`` and its whole subtree."""

    node_id: str


Operation = Create | Update | Delete


@dataclass(slots=True)
class _Staged:
    """The doc as a batch will leave it, built up before anything is written."""

    doc: HostDoc
    nodes: dict[str, Node | None] = field(default_factory=dict)  # None: deleted in the batch
    writes: dict[str, dict[str, Any]] = field(default_factory=dict)  # fields to write per id
    created: set[str] = field(default_factory=set)
    deleted: list[str] = field(default_factory=list)

    def get(self, node_id: str) -> Node | None:
        if node_id in self.nodes:
            return self.nodes[node_id]
        return self.doc.find(node_id)

    def parents(self) -> dict[str, str | None]:
        view = dict(self.doc._parent_index())
        for node_id, node in self.nodes.items():
            if node is None:
                view.pop(node_id, None)
            else:
                view[node_id] = node.parent
        return view


class HostDoc:
    """One host's nodes in a pycrdt document, with validated, origin-tagged writes.

    Args:
        host: the host id; also the guid of the pycrdt doc.
        clock: returns the current Unix time in seconds; stamps ``updated`` on every write.
        client_id: the Yjs client id for this peer's writes (random if not given).
        initial: updates to apply before the doc is observed (stored state being reloaded);
            call :meth:`repair` afterwards.

    Raises:
        UpdateRejectedError: an ``initial`` update cannot be applied.

    All methods must be called from the event loop thread that owns the doc.
    """

    def __init__(
        self,
        host: str,
        *,
        clock: Callable[[], float] = time.time,
        client_id: int | None = None,
        initial: Iterable[bytes] = (),
    ) -> None:
        if not host:
            raise ValidationError("host", "must not be empty", host)
        self.host = host
        self.doc: Doc[Any] = Doc(guid=host, client_id=client_id)
        # Create the root on open: a root a remote peer made reads as absent until the
        # receiver asks for it by name and type.
        self.nodes: Map[Any] = self.doc.get(NODES_ROOT, type=Map)
        self.tombstones: Map[Any] = self.doc.get(TOMBSTONES_ROOT, type=Map)
        self.errors: Map[Any] = self.doc.get(ERRORS_ROOT, type=Map)
        # Stored state goes in before anyone observes the doc: replaying it raises no events.
        for number, update in enumerate(initial):
            try:
                self.doc.apply_update(update)
            except ValueError as exc:
                raise UpdateRejectedError(
                    f"host doc {host!r}: stored update {number} rejected: {exc}"
                ) from None
        self._clock = clock
        self._origin: Origin = LOCAL
        self._closed = False
        self._streams: list[ChangeStream] = []
        self._update_listeners: list[UpdateListener] = []
        self._parents: dict[str, str | None] | None = None
        # Decoded nodes by id; the node observer drops an entry whenever that node changes,
        # whoever changed it, so a hit is always current.
        self._cache: dict[str, Node] = {}
        self._structure_changed = False
        # One long-lived observer of each kind per doc: pycrdt does not free callbacks on
        # unobserve, so subscribers are fanned out here instead of subscribing themselves.
        self._doc_sub = self.doc.observe(self._on_transaction)
        self._nodes_sub = self.nodes.observe_deep(self._on_node_events)

    # ----------------------------------------------------------------------------- reads

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, str) and node_id in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def ids(self) -> list[str]:
        """Return the ids of all nodes in this host doc, sorted."""
        return sorted(self.nodes.keys())

    def find(self, node_id: str) -> Node | None:
        """Return the node, or None if this doc has no such node.

        Raises:
            ValidationError: the stored fields are invalid (for example written by a newer
                schema major: :class:`~krill_crdt.errors.SchemaVersionError`).
        """
        cached = self._cache.get(node_id)
        if cached is not None:
            return cached
        # One transaction for the whole read: pycrdt otherwise opens one per field.
        with self.doc.transaction():
            entry = self.nodes.get(node_id)
            if entry is None:
                return None
            fields = entry.to_py() if isinstance(entry, Map) else entry
        if not isinstance(fields, dict):
            raise ValidationError("", "a node must be a map of fields", node_id=node_id)
        node = Node.from_fields(fields)
        self._cache[node_id] = node
        return node

    def get(self, node_id: str) -> Node:
        """Return the node.

        Raises:
            NodeNotFoundError: no such node in this host doc.
            ValidationError: the stored fields are invalid.
        """
        node = self.find(node_id)
        if node is None:
            raise NodeNotFoundError(f"no node {node_id!r} in host doc {self.host!r}")
        return node

    def list_nodes(self, *, type: NodeType | None = None) -> list[Node]:
        """Return every readable node (optionally of one type), sorted by id.

        A node this release cannot read (see :meth:`unreadable`) is left out of the list and
        logged once; it stays in the doc untouched.
        """
        result = []
        for node_id in self.ids():
            node = self._read_or_report(node_id)
            if node is not None and (type is None or node.type == type):
                result.append(node)
        return result

    def unreadable(self) -> dict[str, ValidationError]:
        """Return the nodes whose stored fields this release cannot read, with the reason."""
        bad = {}
        for node_id in self.ids():
            try:
                self.find(node_id)
            except ValidationError as exc:
                bad[node_id] = exc
        return bad

    def children(self, node_id: str) -> list[Node]:
        """Return the direct children of a node, sorted by id.

        Raises:
            NodeNotFoundError: no such node in this host doc.
        """
        if node_id not in self.nodes:
            raise NodeNotFoundError(f"no node {node_id!r} in host doc {self.host!r}")
        kids = [cid for cid, parent in self._parent_index().items() if parent == node_id]
        return [n for n in (self._read_or_report(cid) for cid in sorted(kids)) if n is not None]

    def subtree_ids(self, node_id: str) -> list[str]:
        """Return the node's id and the ids of everything below it, breadth first.

        Raises:
            NodeNotFoundError: no such node in this host doc.
        """
        if node_id not in self.nodes:
            raise NodeNotFoundError(f"no node {node_id!r} in host doc {self.host!r}")
        return _subtree(self._parent_index(), node_id)

    def _read_or_report(self, node_id: str) -> Node | None:
        try:
            return self.find(node_id)
        except ValidationError as exc:
            log.warning(
                "host doc %s: node %s is unreadable and skipped: %s", self.host, node_id, exc
            )
            return None

    # ---------------------------------------------------------------------------- writes

    def create(self, node: Node, *, origin: Origin = LOCAL) -> Node:
        """Create a node in this host doc and return it as stored (``updated`` stamped).

        Raises:
            NodeExistsError: a node with this id exists.
            ValidationError: the node belongs to another host, its parent is missing or does
                not accept this type; nothing is written.
        """
        return self.batch([Create(node)], origin=origin)[0]

    def update(self, node_id: str, changes: Mapping[str, Any], *, origin: Origin = LOCAL) -> Node:
        """Set some fields of a node (a partial update) and return the node as stored.

        Only the fields that change are written, so concurrent edits of other fields survive.

        Raises:
            NodeNotFoundError: no such node.
            ValidationError: a field is unknown, fixed, or its value breaks a rule; a new
                parent would close a cycle; nothing is written.
        """
        return self.batch([Update(node_id, changes)], origin=origin)[0]

    def delete(self, node_id: str, *, origin: Origin = LOCAL) -> list[str]:
        """Delete a node and its whole subtree in one transaction.

        Returns:
            The ids removed, the node first, then its descendants breadth first.

        Raises:
            NodeNotFoundError: no such node; nothing is written.
        """
        return self._run([Delete(node_id)], origin)[1]

    def batch(self, operations: Iterable[Operation], *, origin: Origin = LOCAL) -> list[Node]:
        """Apply creates, updates and deletes as one transaction: all or nothing.

        Every operation is validated against the doc as the earlier operations of the batch
        leave it, before anything is written; one failure leaves the doc untouched.

        Returns:
            For each create and update, the node as stored, in operation order.

        Raises:
            NodeExistsError, NodeNotFoundError, ValidationError: naming the operation's node.
            StoreClosedError: the host doc is closed.
        """
        return self._run(operations, origin)[0]

    def _run(self, operations: Iterable[Operation], origin: Origin) -> tuple[list[Node], list[str]]:
        self._check_open()
        now = self._clock()
        staged = _Staged(self)
        results: list[Node] = []

        # Step 1: validate every operation against the staged view; nothing is written yet.
        for op in operations:
            if isinstance(op, Create):
                results.append(self._stage_create(staged, op.node, now))
            elif isinstance(op, Update):
                results.append(self._stage_update(staged, op.node_id, op.changes, now))
            elif isinstance(op, Delete):
                self._stage_delete(staged, op.node_id)
            else:
                raise TypeError(f"not a batch operation: {op!r}")

        # Step 2: write the net effect in one transaction.
        if staged.writes or staged.deleted:
            with self._transaction(origin):
                for node_id in staged.deleted:
                    if node_id in self.nodes:
                        del self.nodes[node_id]
                    self.tombstones[node_id] = now
                for node_id, fields in staged.writes.items():
                    if node_id in staged.created:
                        if node_id in self.tombstones:
                            del self.tombstones[node_id]
                        self.nodes[node_id] = Map(fields)
                    else:
                        entry = self.nodes[node_id]
                        for key, value in fields.items():
                            entry[key] = value
            # The observer dropped the written nodes from the cache; what was just written is
            # exactly what a read would decode, so put it back.
            for node_id, node in staged.nodes.items():
                if node is not None:
                    self._cache[node_id] = node
        # A local write never leaves orphans or cycles behind, so there is nothing to repair.
        self._structure_changed = False
        return results, staged.deleted

    def _stage_create(self, staged: _Staged, node: Node, now: float) -> Node:
        if node.host != self.host:
            raise ValidationError(
                "host", f"must be {self.host!r} in this host doc", node.host, node_id=node.id
            )
        if staged.get(node.id) is not None:
            raise NodeExistsError(f"node {node.id!r} already exists in host doc {self.host!r}")
        self._check_parent(staged, node)
        stored = node.evolve(updated=now)
        staged.nodes[stored.id] = stored
        staged.created.add(stored.id)
        staged.writes[stored.id] = stored.to_fields()
        return stored

    def _stage_update(
        self, staged: _Staged, node_id: str, changes: Mapping[str, Any], now: float
    ) -> Node:
        current = staged.get(node_id)
        if current is None:
            raise NodeNotFoundError(f"no node {node_id!r} in host doc {self.host!r}")
        for key in changes:
            if key not in UPDATABLE_FIELDS:
                rule = "is set by the host doc" if key == "updated" else "cannot be changed"
                if key not in ("id", "host", "schema", "updated", "type"):
                    rule = (
                        f"is not a field; updatable fields: {', '.join(sorted(UPDATABLE_FIELDS))}"
                    )
                raise ValidationError(key or '""', rule, node_id=node_id)
        new = current.evolve(**changes, updated=now)
        if new.parent != current.parent:
            self._check_parent(staged, new)
            self._check_no_cycle(staged, new)
        staged.nodes[node_id] = new
        old_fields = current.to_fields()
        new_fields = new.to_fields()
        if node_id in staged.created:
            staged.writes[node_id] = new_fields
        else:
            diff = {k: v for k, v in new_fields.items() if old_fields.get(k) != v or k == "updated"}
            staged.writes.setdefault(node_id, {}).update(diff)
        return new

    def _stage_delete(self, staged: _Staged, node_id: str) -> None:
        if staged.get(node_id) is None:
            raise NodeNotFoundError(f"no node {node_id!r} in host doc {self.host!r}")
        for doomed in _subtree(staged.parents(), node_id):
            staged.nodes[doomed] = None
            staged.writes.pop(doomed, None)
            if doomed in staged.created:
                staged.created.discard(doomed)
            else:
                staged.deleted.append(doomed)

    def _check_parent(self, staged: _Staged, node: Node) -> None:
        if node.parent is None:
            check_parent(node.type, None)
            return
        parent = staged.get(node.parent)
        if parent is None:
            raise ValidationError(
                "parent",
                f"must name a node of host doc {self.host!r}",
                node.parent,
                node_id=node.id,
            )
        check_parent(node.type, parent.type)

    def _check_no_cycle(self, staged: _Staged, node: Node) -> None:
        parents = staged.parents()
        parents[node.id] = node.parent
        ancestor = node.parent
        for _ in range(len(parents) + 1):
            if ancestor is None or ancestor not in parents:
                return
            if ancestor == node.id:
                raise ValidationError(
                    "parent",
                    "must not be the node itself or one of its descendants",
                    node.parent,
                    node_id=node.id,
                )
            ancestor = parents[ancestor]

    def set_error(
        self,
        node_id: str,
        state: NodeState,
        message: str | None,
        *,
        origin: Origin = LOCAL,
    ) -> None:
        """Set a node's state and its error message (None clears it) in one transaction.

        Raises:
            NodeNotFoundError: no such node.
        """
        self._check_open()
        node = self.get(node_id)
        with self._transaction(origin):
            if node.state != state:
                entry = self.nodes[node_id]
                entry["state"] = state.value
                entry["updated"] = self._clock()
            if message is None:
                if node_id in self.errors:
                    del self.errors[node_id]
            elif self.errors.get(node_id) != message:
                self.errors[node_id] = message

    # ------------------------------------------------------------------ replication hooks

    def state_vector(self) -> bytes:
        """Return the doc's state vector (Yjs v1 encoding)."""
        return self.doc.get_state()

    def diff(self, state_vector: bytes | None = None) -> bytes:
        """Return the update that brings a peer at ``state_vector`` up to date.

        With no state vector, the whole doc as one update.

        Raises:
            UpdateRejectedError: the state vector cannot be decoded.
        """
        try:
            return self.doc.get_update(state_vector) if state_vector else self.doc.get_update()
        except (ValueError, RuntimeError) as exc:
            raise UpdateRejectedError(
                f"host doc {self.host!r}: undecodable state vector: {exc}"
            ) from None
        except BaseException as exc:
            if not _is_panic(exc):
                raise
            raise UpdateRejectedError(
                f"host doc {self.host!r}: undecodable state vector: {exc}"
            ) from None

    def apply(self, update: bytes, *, origin: Origin, repair: bool = True) -> None:
        """Apply a remote Yjs update, then the orphan and cycle rules (module docstring).

        ``repair=False`` defers the rules, for a caller replaying many updates that calls
        :meth:`repair` once at the end.

        Raises:
            UpdateRejectedError: the update cannot be decoded; the doc is left as it was.
            StoreClosedError: the host doc is closed.
        """
        self._check_open()
        # Step 1: a trial on an empty doc. Yrs has no rollback: an update it refuses half way
        # (RuntimeError) stays half applied, and some malformed ones panic and leave a doc on
        # which every later read panics too. The trial costs ~13 us for a small update and
        # catches every such input the fuzz campaign found, before the real doc is touched.
        trial_apply(update, f"host doc {self.host!r}: update from {origin} rejected")
        # Step 2: the real thing.
        # NOTE: an update that passes the trial yet fails against this doc's own state would
        # NOTE: still be applied in part; none has been found, and ruling it out needs a copy
        # NOTE: of the whole doc per update.
        try:
            with self._transaction(origin):
                self.doc.apply_update(update)
        except (ValueError, RuntimeError) as exc:
            raise UpdateRejectedError(
                f"host doc {self.host!r}: update from {origin} rejected: {exc}"
            ) from None
        except BaseException as exc:
            if not _is_panic(exc):
                raise
            raise UpdateRejectedError(
                f"host doc {self.host!r}: update from {origin} rejected: Yrs panicked: {exc}"
            ) from None
        if repair and self._structure_changed:
            self.repair()

    def repair(self) -> list[str]:
        """Apply the orphan and cycle rules now; return the ids removed or re-attached.

        Called after every remote update; a caller that replays updates from elsewhere (the
        durable store on open) calls it once at the end.
        """
        self._structure_changed = False
        parents = self._parent_index()
        changed: list[str] = []

        # Step 1: break parent cycles deterministically (smallest id on the cycle moves).
        ids = sorted(parents)
        cycles = graph.parent_cycles(_parent_array(ids, parents)[1])
        if cycles:
            roots = sorted(i for i in ids if parents[i] is None)
            with self._transaction(SWEEP):
                for ring in cycles:
                    mover = ids[ring[0]]
                    target = roots[0] if roots else None
                    entry = self.nodes.get(mover)
                    if not isinstance(entry, Map):
                        continue  # not a node (a remote peer's garbage): no parent to move
                    entry["parent"] = target
                    changed.append(mover)
                    log.warning(
                        "host doc %s: node %s was on a parent cycle; re-attached under %s",
                        self.host,
                        mover,
                        target,
                    )
            self._parents = None
            parents = self._parent_index()

        # Step 2: delete wins: remove nodes whose parent no longer exists, with subtrees.
        tombstones = self.tombstones
        orphans = sorted(
            n for n, p in parents.items() if p is not None and p not in parents and p in tombstones
        )
        if orphans:
            doomed: list[str] = []
            for orphan in orphans:
                doomed.extend(_subtree(parents, orphan))
            now = self._clock()
            with self._transaction(SWEEP):
                for node_id in dict.fromkeys(doomed):
                    if node_id in self.nodes:
                        del self.nodes[node_id]
                    self.tombstones[node_id] = now
            changed.extend(dict.fromkeys(doomed))
            log.info(
                "host doc %s: removed %d node(s) whose parent was deleted concurrently: %s",
                self.host,
                len(doomed),
                ", ".join(orphans),
            )
        self._structure_changed = False
        return changed

    def on_update(self, listener: UpdateListener) -> None:
        """Call ``listener(update, origin)`` for every committed transaction of this doc.

        The update is the transaction's Yjs v1 delta. The listener runs inside the commit and
        must not write to this doc.
        """
        self._update_listeners.append(listener)

    def changes(self, capacity: int = DEFAULT_STREAM_CAPACITY) -> ChangeStream:
        """Return a new stream of :class:`Change` events for every later transaction."""
        self._check_open()
        stream = ChangeStream(capacity)
        self._streams.append(stream)
        return stream

    def close(self) -> None:
        """End every change stream; later writes raise StoreClosedError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for stream in self._streams:
            stream.close()
        self._streams.clear()
        self._update_listeners.clear()

    # -------------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"host doc {self.host!r} is closed")

    @contextmanager
    def _transaction(self, origin: Origin) -> Iterator[None]:
        # The origin is also kept here because pycrdt's whole-doc observer gets the raw
        # transaction, which only carries a hash of it.
        self._origin = origin
        try:
            with self.doc.transaction(origin=origin):
                yield
        finally:
            self._origin = LOCAL

    def _parent_index(self) -> dict[str, str | None]:
        """Node id -> parent id for every node, rebuilt only after the structure changed."""
        if self._parents is None:
            parents: dict[str, str | None] = {}
            # One transaction for the whole walk: pycrdt otherwise opens one per read.
            with self.doc.transaction():
                for node_id, entry in self.nodes.items():
                    parent = entry.get("parent") if isinstance(entry, Map) else None
                    parents[node_id] = parent if isinstance(parent, str) and parent else None
            self._parents = parents
        return self._parents

    def _on_transaction(self, event: TransactionEvent) -> None:
        origin = self._origin
        if not origin.is_local:
            # Remote changes are what the node observer might not describe exactly (Yrs
            # patches over gaps in a client's history): forget every decoded node.
            self._cache.clear()
        if not self._update_listeners:
            return
        update = event.update
        for listener in self._update_listeners:
            try:
                listener(update, origin)
            except Exception:
                log.exception("host doc %s: update listener failed", self.host)

    def _on_node_events(self, events: list[Any]) -> None:
        origin = self._origin
        changes: list[Change] = []
        for event in events:
            if not isinstance(event, MapEvent):
                continue
            # pycrdt sets these attributes at run time; its stubs do not declare them.
            path: list[Any] = event.path  # type: ignore[attr-defined]
            keys: dict[str, Any] = event.keys  # type: ignore[attr-defined]
            if not path:
                self._parents = None
                self._structure_changed = True
                for node_id, info in keys.items():
                    self._cache.pop(node_id, None)
                    kind = _ROOT_ACTIONS.get(info.get("action", ""), ChangeKind.UPDATED)
                    fields = frozenset() if kind is ChangeKind.DELETED else _ALL_FIELDS
                    changes.append(Change(self.host, node_id, kind, fields, origin))
            elif len(path) == 1:
                self._cache.pop(str(path[0]), None)
                if "parent" in keys:
                    self._parents = None
                    self._structure_changed = True
                changes.append(
                    Change(self.host, str(path[0]), ChangeKind.UPDATED, frozenset(keys), origin)
                )
        if changes and self._streams:
            for stream in self._streams:
                for change in changes:
                    stream.push(change)
            self._streams = [s for s in self._streams if not s.closed]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.list_nodes())

    def __repr__(self) -> str:
        return f"HostDoc(host={self.host!r}, nodes={len(self.nodes)})"


_ROOT_ACTIONS = {
    "add": ChangeKind.CREATED,
    "delete": ChangeKind.DELETED,
    "update": ChangeKind.UPDATED,
}

_ALL_FIELDS = frozenset({"id", "parent", "host", "type", "name", "state", "meta", "updated"})


def _subtree(parents: Mapping[str, str | None], root: str) -> list[str]:
    """Ids of ``root`` and everything below it, breadth first, via the hot-path graph walk."""
    ids = list(parents)
    position, links = _parent_array(ids, parents)
    return [ids[i] for i in graph.subtree(links, position[root])]


def _parent_array(
    ids: list[str], parents: Mapping[str, str | None]
) -> tuple[dict[str, int], array[int]]:
    """Index the nodes as ``ids`` orders them; return that index and the hot path's parent
    array (-1 for a root, or for a parent that is not in this doc)."""
    position = {node_id: i for i, node_id in enumerate(ids)}
    return position, array(
        "i", (-1 if (p := parents[i]) is None else position.get(p, -1) for i in ids)
    )


def trial_apply(update: bytes, refusal: str) -> None:
    """Apply ``update`` to a scratch doc; raise UpdateRejectedError if Yrs refuses it.

    ``refusal`` starts the error's message (it says whose update, from where).
    """
    try:
        Doc().apply_update(update)
    except (ValueError, RuntimeError) as exc:
        raise UpdateRejectedError(f"{refusal}: {exc}") from None
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        raise UpdateRejectedError(f"{refusal}: malformed (Yrs panicked: {exc})") from None


def _is_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is pyo3's PanicException: a panic inside Yrs, raised as a
    BaseException so that ``except Exception`` does not catch it. pyo3 makes the class at run
    time, so it is known by name."""
    return type(exc).__name__ == "PanicException"
