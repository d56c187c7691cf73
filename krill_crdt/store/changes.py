"""Change events of host docs and the bounded async streams that deliver them."""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..errors import ChangeStreamOverflowError, StoreClosedError
from .origin import Origin

__all__ = ["DEFAULT_STREAM_CAPACITY", "Change", "ChangeKind", "ChangeStream"]

#: Events a subscriber may fall behind by before its stream overflows. Large enough to ride
#: out a burst such as a catch-up sync of a few thousand nodes, small enough that a stalled
#: dashboard cannot hold an unbounded backlog in memory.
DEFAULT_STREAM_CAPACITY = 10_000


class ChangeKind(str, enum.Enum):
    """What happened to a node."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Change:
    """One node changed in one transaction.

    Attributes:
        host: the host doc the node lives in.
        node_id: the node's id.
        kind: created, updated or deleted.
        fields: names of the fields written (all fields for a create, none for a delete).
        origin: where the transaction came from; tells a relay its own writes from remote ones.
    """

    host: str
    node_id: str
    kind: ChangeKind
    fields: frozenset[str]
    origin: Origin


class ChangeStream:
    """An async iterator over :class:`Change` events, with bounded memory.

    Events are queued by the host doc's observer as transactions commit, in commit order. If the
    consumer falls more than ``capacity`` events behind, further events are dropped and, once
    the consumer has read every event queued before the loss, iteration raises
    :class:`~krill_crdt.errors.ChangeStreamOverflowError`: the consumer knows it missed
    something and should re-read the nodes it cares about. Closing the stream (or the host doc)
    ends the iteration normally.
    """

    __slots__ = ("_buffer", "_capacity", "_closed", "_overflowed", "_unsubscribe", "_waiter")

    def __init__(self, capacity: int = DEFAULT_STREAM_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._buffer: deque[Change] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        self._closed = False
        self._unsubscribe: list[object] = []

    def push(self, change: Change) -> None:
        """Queue one event; called by the host doc's observer, never blocks."""
        if self._closed or self._overflowed:
            return
        if len(self._buffer) >= self._capacity:
            self._overflowed = True
        else:
            self._buffer.append(change)
        self._wake()

    def close(self) -> None:
        """End the stream: iteration stops after the events already queued."""
        self._closed = True
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[Change]:
        return self

    async def __anext__(self) -> Change:
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._overflowed:
                self._closed = True
                self._overflowed = False
                raise ChangeStreamOverflowError(
                    f"change stream fell more than {self._capacity} events behind; "
                    "events were dropped, re-read the nodes to resynchronise"
                )
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get(self, timeout: float | None = None) -> Change:
        """Return the next event, waiting at most ``timeout`` seconds.

        Raises:
            TimeoutError: nothing arrived in time.
            StoreClosedError: the stream ended.
            ChangeStreamOverflowError: events were dropped (see the class docstring).
        """
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except StopAsyncIteration:
            raise StoreClosedError("the change stream is closed") from None
