"""The invariants checked at the end of every run, and the write log they read.

No lost acknowledged write, precisely:

* Every workload write W is recorded with the items it added: the Yjs client that made it
  and that client's clock after it (``client``, ``clock``), and the writer's state vector
  just before it (``seen``). Every write adds items: creates and edits write fields, deletes
  write a tombstone.
* W *reached* the final state when the final state vector holds ``clock`` for ``client``.
  W' *happened before* W when W's writer had seen W' (``W.seen[W'.client] >= W'.clock``).
* W is *acknowledged* when its peer committed after it and before any crash. A write lost in
  a crash before its commit is not owed (it may still have escaped in a frame).
* An acknowledged W is *lost* when it did not reach the final state, or when its effect is
  missing and nothing superseded it:

  - an edit of a node's field is superseded by another write of that field that reached the
    final state and did not happen before W (a later or a concurrent edit: concurrent edits
    of one field resolve to one winner), or by a delete of the node or of an ancestor;
  - a create is superseded by a delete of the node or of an ancestor (the orphan rule:
    a child created under a concurrently deleted parent goes with it);
  - a delete is never superseded (node ids are never reused), so the node must be absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Invariant", "WriteRecord", "lost_writes"]


@dataclass(frozen=True, slots=True)
class Invariant:
    """One property checked at the end of a run."""

    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "detail": self.detail}


@dataclass(slots=True)
class WriteRecord:
    """One workload write, as the lost-write check needs it."""

    index: int
    peer: int
    time: float
    doc: str
    action: str
    node: str
    value: str | None
    parent: str | None
    client: int
    clock: int
    seen: dict[int, int]
    deleted: tuple[str, ...] = ()
    acked: bool = False
    crashed: bool = False
    edit_of: str | None = field(default=None)


def _ancestors(node: str, parents: Mapping[str, str | None]) -> list[str]:
    chain = [node]
    parent = parents.get(node)
    while parent is not None and parent not in chain:
        chain.append(parent)
        parent = parents.get(parent)
    return chain


def lost_writes(
    writes: list[WriteRecord],
    final_sv: Mapping[str, Mapping[int, int]],
    final_nodes: Mapping[str, Mapping[str, Any]],
) -> list[tuple[WriteRecord, str]]:
    """Return the acknowledged writes missing from the final state, each with the reason.

    Args:
        writes: every workload write of the run.
        final_sv: per host doc, the converged state vector (client id -> clock).
        final_nodes: per host doc, the converged nodes (id -> fields).
    """

    def reached(w: WriteRecord) -> bool:
        return final_sv.get(w.doc, {}).get(w.client, 0) >= w.clock

    # Step 1: index what supersedes: deletes that reached, and field writes per node.
    parents: dict[str, str | None] = {}
    deleted: set[tuple[str, str]] = set()
    edits: dict[tuple[str, str], list[WriteRecord]] = {}
    for w in writes:
        if w.action in ("create", "create-child"):
            parents[w.node] = w.parent
        if not reached(w):
            continue
        if w.action == "delete":
            deleted.update((w.doc, node) for node in w.deleted)
        elif w.edit_of is not None:
            edits.setdefault((w.doc, w.node), []).append(w)

    def gone_by_delete(w: WriteRecord) -> bool:
        return any((w.doc, node) in deleted for node in _ancestors(w.node, parents))

    # Step 2: judge each acknowledged write.
    lost: list[tuple[WriteRecord, str]] = []
    for w in writes:
        if not w.acked:
            continue
        if not reached(w):
            lost.append((w, "its items never reached the final state"))
            continue
        present = final_nodes.get(w.doc, {}).get(w.node)
        if w.action == "delete":
            if present is not None:
                lost.append((w, "the deleted node is present"))
        elif w.edit_of is not None:
            if present is not None and present.get(w.edit_of) == w.value:
                continue
            if gone_by_delete(w):
                continue
            rivals = edits.get((w.doc, w.node), [])
            if not any(r is not w and w.seen.get(r.client, 0) < r.clock for r in rivals):
                lost.append((w, f"{w.edit_of} is {present and present.get(w.edit_of)!r}"))
        elif present is None and not gone_by_delete(w):
            lost.append((w, "the created node is absent and was not deleted"))
    return lost
