"""One simulated peer: the real sync engine over in-memory host docs, wired as the runtime.

Durability is modelled, not run: a peer's Store is asynchronous and would need an event loop
and real files, which would tie the run to wall-clock scheduling. Instead a peer that may
crash keeps, at each commit, the encoded state of every host doc it holds (what its Store
would have on disk); a restart rebuilds its host docs from that snapshot. Writes made since
the last commit are lost with the crash unless they already left in a frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ..model import Node, NodeType
from ..store.hostdoc import HostDoc
from ..store.origin import Origin
from ..sync.docs import MemoryDocs
from ..sync.engine import SyncEngine, SyncOptions, run_seq_base
from ..sync.link import Link

__all__ = ["LOCAL_TRANSPORTS", "SWARM", "SWARM_KEY", "SimPeer", "client_id", "peer_id"]

#: Origins a peer sends to the swarm as its own, exactly as the runtime decides
#: (``krill_crdt.runtime.peer.LOCAL_TRANSPORTS``; a test keeps the two equal).
LOCAL_TRANSPORTS = frozenset({"local", "sweep", "ws-client", "http"})

#: The swarm key of every simulated peer: a fixed value, as frames are never on a real wire.
SWARM_KEY = b"krill-simulated-swarm-key-32byte"
#: The swarm id carried in every simulated frame.
SWARM = 0x51A1

#: Runs per peer that get their own Yjs client id. A restarted peer must not reuse a client
#: id whose later clocks it may have lost in the crash (other peers may hold them), so every
#: run writes as a new client: index * MAX_RUNS + run keeps them unique and deterministic.
MAX_RUNS = 1024


def peer_id(index: int) -> bytes:
    """The 16-byte peer id of the simulated peer at ``index`` (stable across runs)."""
    return hashlib.blake2b(f"krill-sim-peer-{index}".encode(), digest_size=16).digest()


def client_id(index: int, run: int) -> int:
    """The Yjs client id of peer ``index`` during its ``run``-th start."""
    if not 1 <= run < MAX_RUNS:
        raise ValueError(f"run {run} is outside 1..{MAX_RUNS - 1}")
    return index * MAX_RUNS + run


@dataclass(slots=True)
class SimPeer:
    """A simulated peer and its bookkeeping.

    Attributes:
        index: position in the swarm (0-based); also what selectors pick.
        name: readable name, used in reports.
        id: the peer id its frames carry.
        skew: how far its clock is off virtual time, seconds.
        host: the host doc it owns, or None.
        run: how many times it has started.
        engine: its sync engine while it runs.
        docs: its host docs while it runs.
        durable: the encoded host docs at its last commit (only kept for peers that crash).
        changed_at: virtual time of the last change to its host docs (or of its start): a
            CRDT replica only ever grows, so a peer that ends with the final state has held
            it since then.
    """

    index: int
    name: str
    id: bytes
    skew: float
    host: str | None
    run: int = 0
    alive: bool = False
    engine: SyncEngine | None = None
    docs: MemoryDocs | None = None
    durable: dict[str, bytes] | None = None
    keeps_snapshots: bool = False
    mqtt: bool = False
    wants_flush: bool = False
    flush_at: float | None = None
    tick_at: float | None = None
    commit_at: float | None = None
    unacked: list[int] = field(default_factory=list)
    changed_at: float = 0.0
    created: int = 0

    def start(
        self,
        engine_class: type[SyncEngine],
        clock: Callable[[], float],
        transports: dict[str, bool],
        options: SyncOptions,
    ) -> None:
        """Start a new run: fresh engine, host docs from the last commit (if any)."""
        self.run += 1
        client = client_id(self.index, self.run)
        docs = MemoryDocs(clock=lambda: clock() + self.skew, client_id=client)
        restored = [] if self.durable is None else sorted(self.durable.items())
        for host, state in restored:
            doc = HostDoc(
                host, clock=lambda: clock() + self.skew, client_id=client, initial=[state]
            )
            doc.repair()
            docs.docs[host] = doc
        self.docs = docs
        self.engine = engine_class(
            self.id,
            key=SWARM_KEY,
            swarm=SWARM,
            docs=docs,
            now=clock() + self.skew,
            endpoints=[f"http://{self.name}:8442"],
            transports=transports,
            options=options,
            first_seq=run_seq_base(self.run),
        )
        for doc in docs.docs.values():
            self._watch(doc, clock)
        docs.on_new_doc = lambda doc: self._watch(doc, clock)
        self.alive = True
        self.mqtt = False
        self.flush_at = self.tick_at = self.commit_at = None
        self.wants_flush = False
        self.changed_at = clock()

    def crash(self) -> list[int]:
        """Stop at once; return the indices of the writes lost with it (not yet committed)."""
        lost, self.unacked = self.unacked, []
        self.alive = False
        self.engine = None
        self.docs = None
        self.mqtt = False
        return lost

    def commit(self) -> list[int]:
        """Make everything written so far durable; return the writes this acknowledges."""
        if self.keeps_snapshots and self.docs is not None:
            self.durable = {host: doc.diff(None) for host, doc in sorted(self.docs.docs.items())}
        acked, self.unacked = self.unacked, []
        self.commit_at = None
        return acked

    def _watch(self, doc: HostDoc, clock: Callable[[], float]) -> None:
        host = doc.host

        def on_update(update: bytes, origin: Origin) -> None:
            engine = self.engine
            if engine is None:
                return
            self.changed_at = clock()
            if origin.transport in LOCAL_TRANSPORTS:
                engine.local_update(host, update, clock() + self.skew)
                self.wants_flush = True
            else:
                engine.doc_changed(host)

        doc.on_update(on_update)

    def content(self) -> dict[str, object]:
        """Decoded content of every host doc held: nodes and tombstones."""
        if self.docs is None:
            return {}
        return {
            host: {"nodes": doc.nodes.to_py(), "deleted": doc.tombstones.to_py()}
            for host, doc in sorted(self.docs.docs.items())
        }

    def link(self, peer: bytes) -> Link:
        """The ws link to ``peer`` as this peer's engine names it."""
        return Link("ws", peer)


def server_node(host: str) -> Node:
    """The root node a host creates in its own host doc at start (its id is the host id)."""
    return Node.new(NodeType.Server, host=host, id=host, name=host)
