"""What every transport offers the peer runtime: start, send, stop.

A transport moves encoded frames (``bytes``) and nothing else: it never decodes, verifies or
applies one. Received bytes go to the ``deliver`` callback with the link they came in on; the
sync engine does the rest. ``send`` never blocks the caller: each transport queues into a
bounded queue and counts what it has to drop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..sync.link import Link, Send

__all__ = ["Deliver", "Transport"]

#: Called by a transport for every frame it receives: ``deliver(data, link)``.
Deliver = Callable[[bytes, Link], None]


class Transport(Protocol):
    """A thin adapter between bytes on the network and the sync engine."""

    #: ``"udp"``, ``"ws"``, ``"mqtt"`` or ``"http"``: the ``transport`` of its links.
    name: str

    async def start(self, deliver: Deliver) -> None:
        """Open sockets or connections; from now on received frames go to ``deliver``."""

    def send(self, send: Send) -> None:
        """Queue one frame for sending; never blocks, never raises for a full queue."""

    async def stop(self) -> None:
        """Close everything; idempotent. Queued frames may be dropped."""
