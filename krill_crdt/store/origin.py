"""Where a write came from: every transaction on a host doc is tagged with an :class:`Origin`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LOAD", "LOCAL", "SWEEP", "Origin"]


@dataclass(frozen=True, slots=True)
class Origin:
    """The source of one transaction on a host doc.

    Attributes:
        peer: id of the peer whose write this is; ``""`` for this peer's own writes.
        transport: how it arrived (``"local"``, ``"udp"``, ``"ws"``, ``"mqtt"``, ``"http"``,
            ``"store"`` for replay from disk, ``"sweep"`` for the orphan rule).

    Origins are hashable, as pycrdt requires of transaction origins, and compare by value.
    """

    peer: str
    transport: str

    @property
    def is_local(self) -> bool:
        """True for writes made on this peer (by its API, its processors or the orphan rule)."""
        return self.peer == ""

    def __str__(self) -> str:
        return self.transport if self.is_local else f"{self.peer}/{self.transport}"


#: Writes made through this peer's own API.
LOCAL = Origin("", "local")
#: Updates replayed from the durable store when a host doc is opened.
LOAD = Origin("", "store")
#: Deletions made by the deterministic orphan rule after a remote update (see HostDoc).
SWEEP = Origin("", "sweep")
