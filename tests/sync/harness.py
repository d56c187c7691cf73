"""An in-memory network of sync engines for tests: links, broadcast, loss, frame counts."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Callable

from krill_crdt.metrics import Metrics
from krill_crdt.model import Node, NodeType
from krill_crdt.store import HostDoc, Origin
from krill_crdt.sync.docs import MemoryDocs
from krill_crdt.sync.engine import Authorize, PeerSeen, SyncEngine, SyncOptions
from krill_crdt.sync.link import Link, Send

KEY = b"k" * 32
SWARM = 7
LOCAL_TRANSPORTS = ("local", "store", "sweep", "ws-client", "http")


def peer_id(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=16).digest()


class SimPeer:
    """One engine with in-memory host docs, wired like the peer runtime wires it."""

    def __init__(
        self,
        net: Net,
        name: str,
        transports: dict[str, bool],
        first_seq: int = 0,
        authorize: Authorize | None = None,
    ) -> None:
        self.net = net
        self.name = name
        self.id = peer_id(name)
        self.docs = MemoryDocs(clock=lambda: net.now, client_id=int.from_bytes(self.id[:4]))
        self.metrics = Metrics()
        self.engine = SyncEngine(
            self.id,
            key=KEY,
            swarm=SWARM,
            docs=self.docs,
            now=net.now,
            endpoints=[f"http://{name}:8442"],
            transports=transports,
            options=net.options,
            metrics=self.metrics,
            first_seq=first_seq,
            authorize=authorize,
        )
        self.docs.on_new_doc = self._watch
        self.received: Counter[tuple[str, str]] = Counter()

    def _watch(self, doc: HostDoc) -> None:
        def on_update(update: bytes, origin: Origin) -> None:
            if origin.transport in LOCAL_TRANSPORTS:
                self.engine.local_update(doc.host, update, self.net.now)
            else:
                self.engine.doc_changed(doc.host)

        doc.on_update(on_update)

    def host_doc(self, host: str | None = None) -> HostDoc:
        return self.docs.doc(host or self.name)

    def write_server(self) -> None:
        self.host_doc().create(Node.new(NodeType.Server, host=self.name, id=f"srv-{self.name}"))

    def content(self) -> dict[str, object]:
        return {h: d.nodes.to_py() for h, d in sorted(self.docs.docs.items())}


class Net:
    """Peers, the links between them, and a pump that moves frames until nothing moves."""

    def __init__(self, options: SyncOptions | None = None) -> None:
        self.now = 1_000.0
        self.options = options or SyncOptions()
        self.peers: dict[bytes, SimPeer] = {}
        self.sent: Counter[str] = Counter()
        #: Frames handed to the network, by sender name and kind.
        self.sent_by: Counter[tuple[str, str]] = Counter()
        self.drop: Callable[[Send, SimPeer], bool] = lambda send, to: False
        self.partitioned: set[bytes] = set()

    def add(
        self,
        name: str,
        transports: dict[str, bool] | None = None,
        authorize: Authorize | None = None,
    ) -> SimPeer:
        wanted = transports if transports is not None else {"ws": False}
        peer = SimPeer(self, name, wanted, authorize=authorize)
        self.peers[peer.id] = peer
        return peer

    def link(self, a: SimPeer, b: SimPeer) -> None:
        a.engine.link_up(Link("ws", b.id), self.now)
        b.engine.link_up(Link("ws", a.id), self.now)

    def unlink(self, a: SimPeer, b: SimPeer) -> None:
        a.engine.link_down(Link("ws", b.id), self.now)
        b.engine.link_down(Link("ws", a.id), self.now)

    def mesh(self, peers: list[SimPeer]) -> None:
        for a, b in itertools.combinations(peers, 2):
            self.link(a, b)

    def pump(self, rounds: int = 200) -> int:
        """Flush, drain and deliver until no frame moves; return frames delivered."""
        delivered = 0
        for _ in range(rounds):
            moved = 0
            for peer in list(self.peers.values()):
                peer.engine.flush(self.now)
                sends, _events = peer.engine.drain()
                for send in sends:
                    moved += self._deliver(peer, send)
            delivered += moved
            if moved == 0:
                return delivered
        raise AssertionError("the network did not go quiet")

    def _deliver(self, sender: SimPeer, send: Send) -> int:
        self.sent[send.kind] += 1
        self.sent_by[(sender.name, send.kind)] += 1
        if sender.id in self.partitioned:
            return 0
        if send.link.peer is not None:
            targets = [self.peers[send.link.peer]] if send.link.peer in self.peers else []
            link = Link(send.link.transport, sender.id)
        else:
            targets = [
                p
                for p in self.peers.values()
                if p is not sender and send.link.transport in p.engine.transports
            ]
            link = Link(send.link.transport)
        count = 0
        for target in targets:
            if target.id in self.partitioned or self.drop(send, target):
                continue
            target.received[(send.link.transport, send.kind)] += 1
            target.engine.receive(send.data, link, self.now)
            count += 1
        return count

    def advance(self, seconds: float, step: float = 0.05) -> None:
        """Let time pass, running every engine's timers and pumping the network."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for peer in self.peers.values():
                if peer.engine.next_deadline() <= self.now:
                    peer.engine.tick(self.now)
            self.pump()

    def events(self, peer: SimPeer) -> list[PeerSeen]:
        return [e for e in peer.engine.drain()[1] if isinstance(e, PeerSeen)]
