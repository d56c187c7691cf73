"""Who is linked to whom, and which links a relayed delta takes.

Every peer announces its point-to-point links (its *neighbours*) in PRESENCE frames, so every
peer holds the same picture of the link graph once announcements have spread. A delta from
an origin then travels along one spanning tree of that graph: the breadth-first tree rooted
at the origin, neighbours taken in peer id order. Every peer computes the same tree, so each
peer receives the delta once per transport and forwards it only to its own children in the
tree; nobody floods. While pictures disagree (a link just came up), a delta may take a
redundant path or miss one: the dedup window drops the first, anti-entropy heals the second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["MAX_NEIGHBOURS", "Topology", "decode_neighbours", "encode_neighbours"]

#: Neighbours one PRESENCE frame may list. A LAN swarm links every pair of peers it sees,
#: so this is also the largest full mesh supported without partial views; 255 peer ids are
#: about 4 KiB, well inside one WebSocket message.
MAX_NEIGHBOURS = 255

_ID_SIZE = 16


def encode_neighbours(neighbours: Iterable[bytes]) -> bytes:
    """Return a PRESENCE payload listing these peer ids (sorted).

    Raises:
        ValueError: more than :data:`MAX_NEIGHBOURS` ids, or an id that is not 16 bytes.
    """
    ids = sorted(set(neighbours))
    if len(ids) > MAX_NEIGHBOURS:
        raise ValueError(f"{len(ids)} neighbours, over the limit of {MAX_NEIGHBOURS}")
    if any(len(peer) != _ID_SIZE for peer in ids):
        raise ValueError("a peer id must be 16 bytes")
    return bytes([len(ids)]) + b"".join(ids)


def decode_neighbours(payload: bytes) -> frozenset[bytes]:
    """Read a PRESENCE payload.

    Raises:
        ValueError: the length does not match the count it announces.
    """
    if not payload:
        raise ValueError("an empty presence payload")
    count = payload[0]
    if len(payload) != 1 + count * _ID_SIZE:
        raise ValueError(f"a presence payload for {count} peers must be {1 + count * 16} bytes")
    return frozenset(payload[1 + i * _ID_SIZE : 1 + (i + 1) * _ID_SIZE] for i in range(count))


class Topology:
    """The link graph as announced, and the relay trees over it."""

    __slots__ = ("_announced", "_edges", "_me", "_trees")

    def __init__(self, me: bytes) -> None:
        self._me = me
        self._announced: dict[bytes, frozenset[bytes]] = {me: frozenset()}
        self._edges: dict[bytes, set[bytes]] | None = None
        self._trees: dict[bytes, dict[bytes, bytes]] = {}

    def announce(self, peer: bytes, neighbours: frozenset[bytes]) -> bool:
        """Record the neighbours a peer announced; return True if that changed the graph."""
        if self._announced.get(peer) == neighbours:
            return False
        self._announced[peer] = neighbours
        self._edges = None
        self._trees.clear()
        return True

    def forget(self, peer: bytes) -> None:
        """Drop what a peer announced (it went offline)."""
        if self._announced.pop(peer, None) is not None:
            self._edges = None
            self._trees.clear()

    def neighbours(self, peer: bytes) -> frozenset[bytes]:
        """Return what ``peer`` last announced (empty if nothing)."""
        return self._announced.get(peer, frozenset())

    def knows(self, peer: bytes) -> bool:
        return peer in self._announced

    def relay_children(self, origin: bytes, linked: Iterable[bytes]) -> list[bytes] | None:
        """Return the linked peers this peer forwards a delta of ``origin`` to.

        Returns None when the graph does not place this peer in the origin's tree (the
        origin's links are not known yet): the caller then falls back to forwarding to every
        link but the one the delta came from.
        """
        parents = self._tree(origin)
        if self._me not in parents and self._me != origin:
            return None
        return sorted(p for p in linked if parents.get(p) == self._me)

    def _graph(self) -> dict[bytes, set[bytes]]:
        if self._edges is None:
            edges: dict[bytes, set[bytes]] = {}
            # A link counts when either end announces it: announcements cross in flight.
            for peer, neighbours in self._announced.items():
                for other in neighbours:
                    if other != peer:
                        edges.setdefault(peer, set()).add(other)
                        edges.setdefault(other, set()).add(peer)
            self._edges = edges
        return self._edges

    def _tree(self, origin: bytes) -> dict[bytes, bytes]:
        tree = self._trees.get(origin)
        if tree is None:
            graph = self._graph()
            tree = {}
            queue = deque([origin])
            seen = {origin}
            while queue:
                node = queue.popleft()
                for other in sorted(graph.get(node, ())):
                    if other not in seen:
                        seen.add(other)
                        tree[other] = node
                        queue.append(other)
            self._trees[origin] = tree
        return tree
