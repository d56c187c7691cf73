"""Links (ways to reach peers) and the sends the sync engine asks transports to make."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PEER_ID_SIZE", "Link", "Send"]

#: Peer ids are 16 random bytes: the origin field of every frame.
PEER_ID_SIZE = 16


@dataclass(frozen=True, slots=True)
class Link:
    """One way to reach peers.

    Attributes:
        transport: ``"udp"``, ``"ws"``, ``"mqtt"`` or ``"http"``.
        peer: the peer id at the other end for a point-to-point link; ``None`` for a broadcast
            link that reaches every peer listening on the transport (the multicast group, the
            broker's topics).
    """

    transport: str
    peer: bytes | None = None

    @property
    def is_broadcast(self) -> bool:
        return self.peer is None

    def __str__(self) -> str:
        return f"{self.transport}:{self.peer.hex()[:8] if self.peer else '*'}"


@dataclass(frozen=True, slots=True)
class Send:
    """One encoded frame to hand to a transport.

    Attributes:
        link: where it goes.
        data: the whole frame, MAC included.
        kind: the frame kind's name in lower case (``"update"``, ``"beacon"``, ...), for
            metrics and logs.
        doc: the host doc the frame concerns (``""`` for frames about no single doc).
    """

    link: Link
    data: bytes
    kind: str
    doc: str = ""
