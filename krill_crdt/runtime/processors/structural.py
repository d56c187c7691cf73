"""Structural nodes: servers, clients, projects, peers.

They shape the graph and do no work when run: their processors proceed without writing, so a
chain that passes through them (a project invoked as a whole, say) goes on.

Their status is kept by their host, which calls :func:`status_changes` when it starts and then
every :data:`STATUS_PERIOD` and writes what changed as ordinary meta updates:

* its own **Server** node: release, start time, uptime and ``last_seen`` (see
  :func:`server_status`), every time, so a stale ``last_seen`` tells every peer the host is
  gone;
* each **Peer** node: ``online`` and ``last_seen`` from what the sync engine hears of that
  peer;
* each **Client** node: ``online`` while the ``last_seen`` its client writes is recent;
* each **Project** node: WARN while a node below it is in ERROR, SEVERE or WARN, with a
  message in the host doc's ``errors`` map that counts and names them; back to NONE when they
  are fixed. A project in any other state (a cycle put it in ERROR) is left alone.

Only changes are written, apart from the server's own clock fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ... import __version__
from ...model import ClientMeta, Node, NodeState, NodeType, PeerMeta, ProjectMeta, ServerMeta
from .base import Context, Outcome

__all__ = [
    "CLIENT_STALE_AFTER",
    "STATUS_PERIOD",
    "ClientProcessor",
    "PeerProcessor",
    "ProjectProcessor",
    "ServerProcessor",
    "ServerStatus",
    "StatusWrites",
    "server_status",
    "status_changes",
]

#: How often a host writes the status of its structural nodes. Each write is a delta that
#: every follower of the host doc receives and stores, so this is as slow as a dashboard can
#: bear: a host that stopped shows a ``last_seen`` at most this old plus the sync delay.
STATUS_PERIOD = 30.0

#: A client counts as online while its own ``last_seen`` is at most this old: three status
#: periods, so one late heartbeat does not make it flicker.
CLIENT_STALE_AFTER = 3 * STATUS_PERIOD

#: Most node ids a project's status message names; the count says how many there are.
MAX_IDS_SHOWN = 5

_ERROR_STATES = frozenset({NodeState.ERROR, NodeState.SEVERE})


class _StructuralProcessor:
    """Proceeds with the invocation's value, writing nothing."""

    type: ClassVar[NodeType]
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    async def run(self, ctx: Context) -> Outcome:
        """Pass the invocation's value on.

        Returns:
            Proceeds with ``ctx.value``.
        """
        return Outcome(proceed=True, value=ctx.value)


class ServerProcessor(_StructuralProcessor):
    """A host. Its status fields are the runtime's (see :func:`server_status`)."""

    type: ClassVar[NodeType] = NodeType.Server


class ClientProcessor(_StructuralProcessor):
    """A browser, app or script that edits the graph."""

    type: ClassVar[NodeType] = NodeType.Client


class ProjectProcessor(_StructuralProcessor):
    """A folder of data points, triggers and executors."""

    type: ClassVar[NodeType] = NodeType.Project


class PeerProcessor(_StructuralProcessor):
    """Another peer of the swarm, as a server has seen it."""

    type: ClassVar[NodeType] = NodeType.Peer


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """How a server is doing, as dashboards and ``/health`` show it.

    Attributes:
        version: the krill_crdt release it runs.
        uptime_s: seconds since it started, never negative.
        last_seen: Unix time it was last heard from (its own clock for this peer, a beacon
            or frame for others); None if never.
        seen_ago_s: seconds since ``last_seen``, never negative; None if never seen.
    """

    version: str
    uptime_s: float
    last_seen: float | None
    seen_ago_s: float | None


def server_status(
    started_at: float, now: float, last_seen: float | None = None, *, version: str = __version__
) -> ServerStatus:
    """Compute a server's status fields.

    Args:
        started_at: Unix time the server started.
        now: the current Unix time (passed in, so the simulator's clock works too).
        last_seen: Unix time it was last heard from; None if never.
        version: its release; this peer's own by default.

    Returns:
        The status. Clocks of different hosts disagree a little, so a start or sighting
        stamped slightly in the future counts as zero seconds ago, not as negative.
    """
    seen_ago = None if last_seen is None else max(0.0, now - last_seen)
    return ServerStatus(version, max(0.0, now - started_at), last_seen, seen_ago)


@dataclass(slots=True)
class StatusWrites:
    """What a host writes to keep the status of its structural nodes current.

    Attributes:
        meta: node id -> the whole new meta (as :meth:`~krill_crdt.model.Meta.to_dict` gives
            it), for each node whose status fields changed.
        states: node id -> (state, message for the host doc's ``errors`` map, None to clear),
            for each project whose state changed.
    """

    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: dict[str, tuple[NodeState, str | None]] = field(default_factory=dict)


def status_changes(
    nodes: Iterable[Node],
    *,
    host: str,
    started_at: float,
    now: float,
    peers_seen: Mapping[str, float],
    errors: Mapping[str, str],
    version: str = __version__,
) -> StatusWrites:
    """Work out the status writes that bring the structural nodes of one host doc up to date.

    Args:
        nodes: every node of the host doc.
        host: the host id (its Server node has this id).
        started_at: Unix time the host started.
        now: the current Unix time.
        peers_seen: peers the host hears from now (hex peer id -> Unix time last heard).
        errors: the host doc's ``errors`` map (node id -> message).
        version: the host's release.

    Returns:
        The writes; the host's own Server node is always among them.
    """
    nodes = list(nodes)
    writes = StatusWrites()

    def change(node: Node, **fields: Any) -> None:
        before = node.meta.to_dict()
        if any(before.get(key) != value for key, value in fields.items()):
            writes.meta[node.id] = {**before, **fields}

    problems = _problems_below(nodes)
    for node in nodes:
        meta = node.meta
        if isinstance(meta, ServerMeta) and node.id == host:
            status = server_status(started_at, now, now, version=version)
            change(
                node,
                version=status.version,
                started_at=started_at,
                uptime_s=status.uptime_s,
                last_seen=now,
            )
        elif isinstance(meta, PeerMeta):
            heard = peers_seen.get(meta.peer_id)
            if heard is None:
                change(node, online=False)
            else:
                change(node, online=True, last_seen=heard)
        elif isinstance(meta, ClientMeta):
            recent = meta.last_seen is not None and now - meta.last_seen <= CLIENT_STALE_AFTER
            change(node, online=recent)
        elif isinstance(meta, ProjectMeta):
            wanted = _project_state(problems.get(node.id))
            if (node.state, errors.get(node.id)) != wanted and (
                node.state in (NodeState.NONE, NodeState.WARN)
            ):
                writes.states[node.id] = wanted
    return writes


def _project_state(below: tuple[list[str], list[str]] | None) -> tuple[NodeState, str | None]:
    """A project is in WARN while a node below it has a problem, saying which nodes."""
    if below is None:
        return NodeState.NONE, None
    failing, warning = below
    parts = []
    if failing:
        parts.append(f"{len(failing)} in ERROR ({_some(failing)})")
    if warning:
        parts.append(f"{len(warning)} in WARN ({_some(warning)})")
    return NodeState.WARN, "nodes below: " + "; ".join(parts)


def _some(ids: list[str]) -> str:
    shown = ", ".join(sorted(ids)[:MAX_IDS_SHOWN])
    return shown + (", ..." if len(ids) > MAX_IDS_SHOWN else "")


def _problems_below(nodes: list[Node]) -> dict[str, tuple[list[str], list[str]]]:
    """Node id -> (ids below it in ERROR or SEVERE, ids below it in WARN), for every node with
    any problem below it."""
    parents = {node.id: node.parent for node in nodes}
    below: dict[str, tuple[list[str], list[str]]] = {}
    for node in nodes:
        error = node.state in _ERROR_STATES
        if not error and node.state is not NodeState.WARN:
            continue
        ancestor = parents.get(node.id)
        seen: set[str] = set()
        # The host doc refuses cycles; ``seen`` only guards against a doc mid-repair.
        while ancestor is not None and ancestor not in seen:
            seen.add(ancestor)
            failing, warning = below.setdefault(ancestor, ([], []))
            (failing if error else warning).append(node.id)
            ancestor = parents.get(ancestor)
    return below
