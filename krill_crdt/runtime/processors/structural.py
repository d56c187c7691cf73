"""Structural nodes: servers, clients, projects, peers.

They shape the graph and do no work when run: their processors proceed without writing, so a
chain that passes through them (a project invoked as a whole, say) goes on. A server's status
(version, uptime, when it was last heard from) is kept by the runtime; :func:`server_status`
computes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ... import __version__
from ...model import NodeType
from .base import Context, Outcome

__all__ = [
    "ClientProcessor",
    "PeerProcessor",
    "ProjectProcessor",
    "ServerProcessor",
    "ServerStatus",
    "server_status",
]


class _StructuralProcessor:
    """Proceeds with the invocation's value, writing nothing."""

    type: ClassVar[NodeType]

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
