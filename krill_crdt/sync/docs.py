"""Doc sources for the sync engine: the durable store, or host docs held in memory."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..errors import CorruptStoreError, NodeNotFoundError
from ..store.hostdoc import HostDoc
from ..store.origin import Origin
from ..store.store import Store

__all__ = ["MemoryDocs", "StoreDocs"]

log = logging.getLogger("krill.sync")


class StoreDocs:
    """The host docs of a durable :class:`~krill_crdt.store.Store`, as the engine sees them.

    A host doc the store found corrupt is treated as absent: it is neither served nor
    overwritten, so its rows stay as they are for an operator to inspect.
    """

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    def hosts(self) -> list[str]:
        return self.store.hosts()

    def _doc(self, doc: str) -> HostDoc:
        try:
            return self.store.doc(doc)
        except CorruptStoreError:
            raise NodeNotFoundError(f"host doc {doc!r} is corrupt here") from None

    def state_vector(self, doc: str) -> bytes:
        return self._doc(doc).state_vector()

    def diff(self, doc: str, state_vector: bytes | None) -> bytes:
        return self._doc(doc).diff(state_vector)

    def apply(self, doc: str, update: bytes, origin: Origin) -> None:
        if doc in self.store.corrupt:
            raise NodeNotFoundError(f"host doc {doc!r} is corrupt here")
        self.store.apply(doc, update, origin=origin)


class MemoryDocs:
    """Host docs held in memory only (tests and the simulator)."""

    __slots__ = ("_client_id", "_clock", "docs", "on_new_doc")

    def __init__(
        self, *, clock: Callable[[], float] = time.time, client_id: int | None = None
    ) -> None:
        self.docs: dict[str, HostDoc] = {}
        self._clock = clock
        self._client_id = client_id
        #: Called with each host doc this source creates (to attach listeners to it).
        self.on_new_doc: Callable[[HostDoc], None] | None = None

    def doc(self, host: str) -> HostDoc:
        """Return the host doc of ``host``, created empty if missing."""
        found = self.docs.get(host)
        if found is None:
            found = HostDoc(host, clock=self._clock, client_id=self._client_id)
            self.docs[host] = found
            if self.on_new_doc is not None:
                self.on_new_doc(found)
        return found

    def hosts(self) -> list[str]:
        return sorted(self.docs)

    def state_vector(self, doc: str) -> bytes:
        if doc not in self.docs:
            raise NodeNotFoundError(f"no host doc {doc!r}")
        return self.docs[doc].state_vector()

    def diff(self, doc: str, state_vector: bytes | None) -> bytes:
        if doc not in self.docs:
            raise NodeNotFoundError(f"no host doc {doc!r}")
        return self.docs[doc].diff(state_vector)

    def apply(self, doc: str, update: bytes, origin: Origin) -> None:
        self.doc(doc).apply(update, origin=origin)
