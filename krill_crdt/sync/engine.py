"""The sans-I/O sync engine: frames in, frames out.

The engine never touches a socket, a task or a clock. A driver (the peer runtime, or the
swarm simulator) feeds it what arrived (:meth:`SyncEngine.receive`), what this peer wrote
(:meth:`SyncEngine.local_update`), which links are up (:meth:`SyncEngine.link_up`) and the
time (``now``, seconds); it then collects what to send (:meth:`SyncEngine.drain`) and hands
each :class:`~krill_crdt.sync.link.Send` to the transport it names. Calling
:meth:`SyncEngine.tick` at :meth:`SyncEngine.next_deadline` runs the timers (beacons,
presence expiry).

Replication, in short:

* Handshake: when a link comes up, each side sends SYNC_STEP1 (its state vector) for every
  followed doc and answers the other's with SYNC_STEP2 (the diff): one round trip brings a
  peer fully up to date on each host doc, children included.
* Deltas: every local write becomes one UPDATE frame with this peer as origin and the next
  sequence number. Writes queued before the next :meth:`flush` are merged into one frame.
* No echo, no storm: a frame whose (origin, seq) was seen is dropped by the replay window; a
  delta is never sent back to where it came from; broadcast transports (multicast, MQTT)
  reach every listener directly and are never relayed onto; over point-to-point links a
  delta follows the origin's spanning tree (see :mod:`.topology`).
* Anti-entropy: beacons carry a digest of each followed doc (state vector and delete set). A
  peer whose digest differs from ours is asked for a diff with our state vector (SYNC_STEP1),
  at most once per doc and peer per ``resync_interval``. This also heals deltas lost on the
  way.
* Access control: ``authorize(peer, doc, write)`` is asked before a diff is sent and before an
  update is applied; a refusal leaves the doc untouched and is counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from pycrdt import merge_updates

from .._core.codec import (
    DATAGRAM_BUDGET,
    FLAG_RELAYED,
    FLAG_RESPONSE,
    MAX_BEACON_DOCS,
    Frame,
    Kind,
    decode_beacon,
    decode_frame,
    encode_beacon,
    encode_frame,
)
from .._core.dedup import ReplayWindow
from ..errors import FrameError, NodeNotFoundError, UpdateRejectedError
from ..metrics import Metrics
from ..store.origin import Origin
from .digest import doc_digest, read_state_vector, starts_after
from .link import PEER_ID_SIZE, Link, Send
from .pacing import BeaconPacer, PacingOptions
from .topology import Topology, decode_neighbours, encode_neighbours

__all__ = [
    "DocSource",
    "Event",
    "InvokeRequest",
    "PeerLost",
    "PeerSeen",
    "SyncEngine",
    "SyncOptions",
    "run_seq_base",
]

log = logging.getLogger("krill.sync")

#: The state vector of an empty doc: what we send when we have nothing of a doc yet.
EMPTY_STATE_VECTOR = b"\x00"


class DocSource(Protocol):
    """The host docs the engine replicates (the durable store, or an in-memory set)."""

    def hosts(self) -> list[str]:
        """Ids of the host docs held here."""
        ...

    def state_vector(self, doc: str) -> bytes:
        """The doc's state vector; raises NodeNotFoundError if it is not held here."""
        ...

    def diff(self, doc: str, state_vector: bytes | None) -> bytes:
        """The update a replica at ``state_vector`` lacks; NodeNotFoundError if not held."""
        ...

    def apply(self, doc: str, update: bytes, origin: Origin) -> None:
        """Apply a remote update (creating the doc if needed); UpdateRejectedError if bad."""
        ...


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """Timing and limits of the engine, in seconds where they are times.

    Attributes:
        pacing: beacon intervals.
        presence_ttl: a peer silent for this long is offline (30 s: almost four idle beacon
            intervals, so a single lost beacon does not flap a peer).
        resync_interval: at most one SYNC_STEP1 per doc and peer per this interval (1 s: one
            active beacon interval; a diff in flight is not asked for twice).
        window: sequence numbers the replay window remembers behind the highest per origin.
        max_origins: origins the replay window tracks before evicting the least recent.
    """

    pacing: PacingOptions = field(default_factory=PacingOptions)
    presence_ttl: float = 30.0
    resync_interval: float = 1.0
    window: int = 1024
    max_origins: int = 1024


#: Bits of a sequence number left to the frames of one run (see :func:`run_seq_base`): a
#: trillion frames, more than a peer sends in its lifetime, leaving 2**24 runs.
RUN_SEQ_BITS = 40


def run_seq_base(run: int) -> int:
    """The first sequence number of a peer's ``run``-th start (counting from 1).

    Frames of each run are numbered above every number of the runs before it, so a restarted
    peer is never mistaken for a replay of itself. The run counter is kept on disk by the
    caller; a clock would not do, since a Raspberry Pi without a real-time clock can boot
    with its time behind.
    """
    if not 0 <= run < 2 ** (64 - RUN_SEQ_BITS):
        raise ValueError(f"run {run} is outside 0..{2 ** (64 - RUN_SEQ_BITS) - 1}")
    return run << RUN_SEQ_BITS


@dataclass(frozen=True, slots=True)
class PeerSeen:
    """A peer appeared, or its endpoints changed: the driver may dial it."""

    peer: bytes
    endpoints: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PeerLost:
    """A peer fell silent for longer than the presence TTL."""

    peer: bytes


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    """Another peer asks this host to run a node's chain."""

    peer: bytes
    doc: str
    payload: bytes


Event = PeerSeen | PeerLost | InvokeRequest


@dataclass(slots=True)
class _Peer:
    last_seen: float
    endpoints: tuple[str, ...] = ()
    digests: dict[str, bytes] = field(default_factory=dict)


Authorize = Callable[[bytes, str, bool], bool]


def _allow_all(peer: bytes, doc: str, write: bool) -> bool:
    return True


class SyncEngine:
    """Replicates host docs with other peers through frames; performs no I/O.

    Args:
        peer_id: this peer's 16-byte id, the origin of its frames.
        key: the swarm key that MACs every frame.
        swarm: the swarm id carried in every frame.
        docs: the host docs to replicate.
        now: the current time, seconds.
        endpoints: URLs where this peer serves HTTP (announced in beacons).
        follow: host docs to replicate; None for all that are announced.
        transports: names of the transports this peer runs, mapped to True for broadcast
            ones (``{"udp": True, "mqtt": True, "ws": False}``).
        options: timing and limits.
        metrics: where frames are counted.
        authorize: access decision per peer, doc and direction (write = apply its update).
        first_seq: the sequence number after which this run numbers its frames. It must be
            higher than any number an earlier run of the same peer id used, or the other
            peers' replay windows drop this run's frames as replays (see :func:`run_seq_base`).
        served: the host docs this peer is the host of (it runs their nodes' chains).
    """

    def __init__(
        self,
        peer_id: bytes,
        *,
        key: bytes,
        swarm: int,
        docs: DocSource,
        now: float,
        endpoints: Iterable[str] = (),
        follow: Iterable[str] | None = None,
        transports: dict[str, bool] | None = None,
        options: SyncOptions | None = None,
        metrics: Metrics | None = None,
        authorize: Authorize | None = None,
        first_seq: int = 0,
        served: Iterable[str] = (),
    ) -> None:
        if len(peer_id) != PEER_ID_SIZE:
            raise ValueError(f"a peer id must be {PEER_ID_SIZE} bytes")
        self.peer_id = peer_id
        self._key = key
        self._swarm = swarm
        self._docs = docs
        self.endpoints = tuple(endpoints)
        self.follow = None if follow is None else frozenset(follow)
        self.transports = dict(transports or {})
        self.options = options or SyncOptions()
        self.metrics = metrics or Metrics()
        self._authorize = authorize or _allow_all
        #: Host docs whose nodes this peer runs: INVOKE frames for them become events.
        self.served = frozenset(served)

        self._seq = first_seq
        self._window = ReplayWindow(self.options.max_origins, self.options.window)
        self._pacer = BeaconPacer(self.options.pacing, now)
        self._topology = Topology(peer_id)
        self._peers: dict[bytes, _Peer] = {}
        self._links: set[Link] = set()
        self._pending: dict[str, list[bytes]] = {}
        self._digests: dict[str, bytes] = {}
        self._asked: dict[tuple[bytes, str], float] = {}
        self._warned: set[tuple[str, str]] = set()
        self._outbox: list[Send] = []
        self._events: list[Event] = []
        self.stats: dict[str, int] = {"applied": 0, "relayed": 0, "resyncs": 0, "gaps": 0}

    # --------------------------------------------------------------------------- output

    def drain(self) -> tuple[list[Send], list[Event]]:
        # Frames are counted as sent by the transports, when they really go out; the engine
        # counts what it receives and accepts, and what it rejects.
        """Return and clear everything to send and every event since the last drain."""
        sends, self._outbox = self._outbox, []
        events, self._events = self._events, []
        return sends, events

    def next_deadline(self) -> float:
        """When :meth:`tick` should next be called."""
        deadline = self._pacer.next_due
        for peer in self._peers.values():
            deadline = min(deadline, peer.last_seen + self.options.presence_ttl)
        return deadline

    # ---------------------------------------------------------------------------- input

    def follows(self, doc: str) -> bool:
        """True if this peer replicates ``doc``."""
        return self.follow is None or doc in self.follow

    def peers(self) -> dict[bytes, float]:
        """Peers currently online, with when each was last heard from."""
        return {peer: state.last_seen for peer, state in self._peers.items()}

    def links(self) -> set[Link]:
        """Point-to-point links currently up."""
        return set(self._links)

    def doc_changed(self, doc: str) -> None:
        """A doc changed (any origin): its digest must be computed again."""
        self._digests.pop(doc, None)

    def local_update(self, doc: str, update: bytes, now: float) -> None:
        """This peer (or a client attached to it) wrote ``update`` to ``doc``.

        The update is queued; :meth:`flush` turns what is queued per doc into one frame.
        """
        self._digests.pop(doc, None)
        self._pending.setdefault(doc, []).append(update)
        self._pacer.changed(now)

    def flush(self, now: float) -> None:
        """Send every queued local update, one merged UPDATE frame per doc."""
        pending, self._pending = self._pending, {}
        for doc, updates in pending.items():
            update = updates[0] if len(updates) == 1 else merge_updates(*updates)
            self._originate(doc, update, now)

    def link_up(self, link: Link, now: float) -> None:
        """A point-to-point link came up: announce it and sync every followed doc over it."""
        if link.peer is None:
            raise ValueError("link_up takes point-to-point links")
        self._links.add(link)
        self._touch(link.peer, now)
        self._announce_links(now)
        for doc in self._followed_docs():
            self._ask(link.peer, doc, now, link=link, force=True)

    def link_down(self, link: Link, now: float) -> None:
        """A point-to-point link went down."""
        if link in self._links:
            self._links.discard(link)
            self._announce_links(now)

    def invoke(self, doc: str, payload: bytes, now: float) -> None:
        """Ask the host of ``doc`` to run a chain: an INVOKE frame to every peer reachable.

        Every transport may deliver it; the replay window makes the host act on it once.
        """
        self._everywhere(self._encode(Kind.INVOKE, doc, payload, now), "invoke", doc)

    def resync(self, now: float) -> None:
        """Compare digests with every peer soon: after a reconnect, frames may have been missed.

        The next beacon goes out within the pacing floor, and earlier requests no longer hold
        back new ones.
        """
        self._asked.clear()
        self._pacer.changed(now)

    def tick(self, now: float) -> None:
        """Run the timers: expire silent peers, send a beacon when one is due."""
        ttl = self.options.presence_ttl
        for peer in [p for p, s in self._peers.items() if now - s.last_seen > ttl]:
            del self._peers[peer]
            self._topology.forget(peer)
            self._events.append(PeerLost(peer))
            log.info("peer %s is offline (silent for %.0f s)", peer.hex()[:8], ttl)
        self.metrics.peers.labels("online").set(len(self._peers))
        self.metrics.peers.labels("linked").set(len(self._links))
        if self._pacer.due(now):
            self._beacon(now)

    def receive(self, data: bytes, link: Link, now: float) -> None:
        """Take one frame that arrived on ``link``.

        Invalid, foreign, replayed and unauthorized frames are dropped and counted by reason
        in ``krill_frames_rejected_total``; nothing they carry is applied. Never raises for
        bad input.
        """
        # Step 1: decode and verify; nothing of the payload is exposed before the MAC holds.
        try:
            frame = decode_frame(data, self._key)
        except FrameError as exc:
            self._reject(link, type(exc).__name__, str(exc))
            return
        if frame.origin == self.peer_id:
            return  # our own frame, looped back by multicast or a broker
        if frame.swarm != self._swarm:
            self._reject(link, "swarm", f"frame of swarm {frame.swarm}")
            return

        # Step 2: drop duplicates and replays, whatever the transport.
        if not self._window.check_and_mark(frame.origin, frame.seq):
            self._reject(link, "duplicate", "")
            return
        kind = Kind(frame.kind)
        self.metrics.received(link.transport, kind.name.lower())
        sender = link.peer if link.peer is not None else frame.origin
        self._touch(frame.origin, now)

        # Step 3: act on it.
        if kind is Kind.UPDATE:
            self._on_update(frame, link, now)
        elif kind is Kind.BEACON:
            self._on_beacon(frame, link, now)
        elif kind is Kind.SYNC_STEP1:
            self._on_step1(frame, sender, link, now)
        elif kind is Kind.SYNC_STEP2:
            self._apply(frame.doc, frame.payload, frame.origin, link, now)
        elif kind is Kind.PRESENCE:
            self._on_presence(frame, link, now)
        elif kind is Kind.INVOKE and frame.doc in self.served:
            # Only a node's host runs it; every other peer ignores the request.
            self._events.append(InvokeRequest(frame.origin, frame.doc, frame.payload))

    def identify(self, data: bytes, challenge: bytes = b"") -> bytes | None:
        """Return the origin of a link's hello, else None.

        The hello must be a valid PRESENCE frame of this swarm from another peer, made for
        ``challenge`` (see :meth:`hello`): a hello recorded from another handshake is refused.
        """
        try:
            frame = decode_frame(data, self._key)
        except FrameError:
            return None
        if frame.swarm != self._swarm or frame.origin == self.peer_id:
            return None
        if frame.kind is not Kind.PRESENCE or frame.doc != challenge.hex():
            return None
        return bytes(frame.origin)

    def hello(self, now: float, challenge: bytes = b"") -> bytes:
        """Return a PRESENCE frame that introduces this peer on a new link.

        The other end's ``challenge`` rides in the frame's doc field, under the MAC.
        """
        return self._encode(Kind.PRESENCE, challenge.hex(), self._neighbour_payload(), now)

    # ------------------------------------------------------------------------- handlers

    def _on_update(self, frame: Frame, link: Link, now: float) -> None:
        if self.follows(frame.doc) and self._has_gap(frame.doc, frame.payload):
            # An earlier delta of this origin never arrived (or is still on its way): fetch
            # everything missing in one diff rather than apply a delta with a hole before it.
            sender = link.peer if link.peer is not None else frame.origin
            self.stats["gaps"] += 1
            log.debug("doc %s: delta from %s has a gap; asking for a diff", frame.doc, link)
            self._ask(sender, frame.doc, now, link=link if link.peer is not None else None)
            self._relay(frame, link)
            return
        applied = self._apply(frame.doc, frame.payload, frame.origin, link, now)
        if not applied:
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "doc %s: delta origin %s seq %d applied, via %s",
                frame.doc,
                frame.origin.hex()[:8],
                frame.seq,
                link,
            )
        if frame.ts_ms:
            self.metrics.propagation.observe(max(0.0, now - frame.ts_ms / 1000))
        self._relay(frame, link)

    def _on_beacon(self, frame: Frame, link: Link, now: float) -> None:
        try:
            beacon = decode_beacon(frame.payload)
        except (FrameError, ValueError) as exc:
            self._reject(link, "beacon", str(exc))
            return
        peer = self._peers[frame.origin]
        if beacon.endpoints != peer.endpoints:
            peer.endpoints = beacon.endpoints
            self._events.append(PeerSeen(frame.origin, beacon.endpoints))
            # Answer a newcomer with our own beacon soon (within the floor), so that it
            # learns of us now rather than when our idle interval runs out.
            self._pacer.changed(now)
        peer.digests = dict(beacon.digests)
        if beacon.delta is not None:
            doc, update = beacon.delta
            self._apply(doc, update, frame.origin, link, now)
        # Anti-entropy: ask for what differs, including docs we do not hold yet.
        for doc, digest in beacon.digests.items():
            if self.follows(doc) and digest != self._digest(doc):
                self._ask(frame.origin, doc, now)

    def _on_step1(self, frame: Frame, sender: bytes, link: Link, now: float) -> None:
        doc = frame.doc
        if not self._authorize(sender, doc, False):
            self._reject(link, "forbidden", f"read of {doc}")
            return
        try:
            diff = self._docs.diff(doc, frame.payload or None)
            ours = self._docs.state_vector(doc)
        except NodeNotFoundError:
            # The asker holds a doc we do not: ask for all of it, if we follow it.
            if self.follows(doc):
                self._ask(sender, doc, now, link=link if link.peer is not None else None)
            return
        except UpdateRejectedError as exc:
            self._reject(link, "state-vector", str(exc))
            return
        self._send_to(sender, Kind.SYNC_STEP2, doc, diff, now, flags=FLAG_RESPONSE, via=link)
        # If the asker holds something we lack, ask back in the same round trip.
        try:
            theirs = read_state_vector(frame.payload) if frame.payload else {}
            mine = read_state_vector(ours)
        except FrameError:
            return
        if any(clock > mine.get(client, 0) for client, clock in theirs.items()):
            self._ask(sender, doc, now, link=link if link.peer is not None else None)

    def _on_presence(self, frame: Frame, link: Link, now: float) -> None:
        try:
            neighbours = decode_neighbours(frame.payload)
        except ValueError as exc:
            self._reject(link, "presence", str(exc))
            return
        self._topology.announce(bytes(frame.origin), neighbours)
        # Everyone needs every announcement to compute the same relay trees: flood it over
        # point-to-point links (once per link, thanks to the replay window).
        if not self.transports.get(link.transport, False):
            for other in self._links:
                if other != link and other.peer != frame.origin:
                    self._emit(other, frame, Kind.PRESENCE, relayed=True)

    # ------------------------------------------------------------------------- internals

    def _has_gap(self, doc: str, update: bytes) -> bool:
        try:
            clocks = read_state_vector(self._docs.state_vector(doc))
        except NodeNotFoundError:
            clocks = {}
        try:
            return starts_after(update, clocks)
        except FrameError:
            return False  # let the apply refuse it, with the reason

    def _apply(self, doc: str, update: bytes, origin: bytes, link: Link, now: float) -> bool:
        if not self.follows(doc):
            return False
        sender = link.peer if link.peer is not None else origin
        if not (self._authorize(origin, doc, True) and self._authorize(sender, doc, True)):
            self._reject(link, "forbidden", f"write to {doc}")
            return False
        try:
            self._docs.apply(doc, update, Origin(origin.hex(), link.transport))
        except UpdateRejectedError as exc:
            self._reject(link, "update", str(exc))
            return False
        self._digests.pop(doc, None)
        self.stats["applied"] += 1
        return True

    def _relay(self, frame: Frame, came_from: Link) -> None:
        linked = {lk.peer: lk for lk in self._links if lk.peer is not None}
        children = self._topology.relay_children(frame.origin, linked)
        if children is None:
            # The origin's links are unknown: forward to every link but the way it came.
            children = [p for p in linked if p not in (came_from.peer, frame.origin)]
        for peer in children:
            if peer not in (came_from.peer, frame.origin):
                self._emit(linked[peer], frame, Kind.UPDATE, relayed=True)
                self.stats["relayed"] += 1

    def _originate(self, doc: str, update: bytes, now: float) -> None:
        data = self._encode(Kind.UPDATE, doc, update, now)
        if log.isEnabledFor(logging.DEBUG):
            # Origin and sequence number follow one delta across every peer's log.
            log.debug(
                "doc %s: delta origin %s seq %d (%d bytes) sent",
                doc,
                self.peer_id.hex()[:8],
                self._seq,
                len(update),
            )
        sent_p2p = False
        for link in sorted(self._links, key=str):
            self._outbox.append(Send(link, data, "update", doc))
            sent_p2p = True
        for name, broadcast in self.transports.items():
            if not broadcast:
                continue
            if name == "udp" and (len(data) > DATAGRAM_BUDGET or not self._needs_udp()):
                continue
            self._outbox.append(Send(Link(name), data, "update", doc))
        if not sent_p2p:
            log.debug("doc %s: update seq %d has no point-to-point link to go on", doc, self._seq)

    def _needs_udp(self) -> bool:
        # Multicast deltas are redundant where every peer we know has a link to us.
        linked = {lk.peer for lk in self._links}
        return any(peer not in linked for peer in self._peers)

    def _beacon(self, now: float) -> None:
        digests: dict[str, bytes] = {}
        for doc in self._followed_docs()[:MAX_BEACON_DOCS]:
            digests[doc] = self._digest(doc)
        payload = encode_beacon(self.endpoints[:4], digests)
        data = self._encode(Kind.BEACON, "", payload, now)
        broadcast = [name for name, is_broadcast in self.transports.items() if is_broadcast]
        targets = [Link(name) for name in broadcast] or sorted(self._links, key=str)
        for link in targets:
            self._outbox.append(Send(link, data, "beacon"))
        self._pacer.sent(now)

    def _announce_links(self, now: float) -> None:
        if not self._topology.announce(self.peer_id, self._neighbours()):
            return
        data = self._encode(Kind.PRESENCE, "", self._neighbour_payload(), now)
        self._everywhere(data, "presence", "")

    def _everywhere(self, data: bytes, kind: str, doc: str) -> None:
        """Send a frame on every peer link and every broadcast transport (multicast only
        when it fits one datagram)."""
        targets = sorted(self._links, key=str) + [
            Link(name)
            for name, broadcast in self.transports.items()
            if broadcast and (name != "udp" or len(data) <= DATAGRAM_BUDGET)
        ]
        for link in targets:
            self._outbox.append(Send(link, data, kind, doc))

    def _neighbours(self) -> frozenset[bytes]:
        return frozenset(lk.peer for lk in self._links if lk.peer is not None)

    def _neighbour_payload(self) -> bytes:
        return encode_neighbours(self._neighbours())

    def _ask(
        self, peer: bytes, doc: str, now: float, *, link: Link | None = None, force: bool = False
    ) -> None:
        last = self._asked.get((peer, doc))
        if not force and last is not None and now - last < self.options.resync_interval:
            return
        self._asked[(peer, doc)] = now
        try:
            state_vector = self._docs.state_vector(doc)
        except NodeNotFoundError:
            state_vector = EMPTY_STATE_VECTOR
        self.stats["resyncs"] += 1
        self._send_to(peer, Kind.SYNC_STEP1, doc, state_vector, now, via=link)

    def _send_to(
        self,
        peer: bytes,
        kind: Kind,
        doc: str,
        payload: bytes,
        now: float,
        *,
        flags: int = 0,
        via: Link | None = None,
    ) -> None:
        """Send a point-to-point frame by the best way to reach ``peer``."""
        link = via if via is not None and via.peer == peer else self._route(peer)
        if link is None:
            log.debug("no way to reach peer %s for a %s frame", peer.hex()[:8], kind.name)
            return
        data = self._encode(kind, doc, payload, now, flags=flags)
        self._outbox.append(Send(link, data, kind.name.lower(), doc))

    def _route(self, peer: bytes) -> Link | None:
        for link in self._links:
            if link.peer == peer:
                return link
        # Broadcast transports that can also address one peer (the broker's inbox topics).
        if "mqtt" in self.transports:
            return Link("mqtt", peer)
        return None

    def _emit(self, link: Link, frame: Frame, kind: Kind, *, relayed: bool) -> None:
        data = frame.encode(self._key) if not relayed else self._reencode(frame)
        self._outbox.append(Send(link, data, kind.name.lower(), frame.doc))

    def _reencode(self, frame: Frame) -> bytes:
        # A relayed frame keeps its origin and sequence number, so every peer's replay
        # window knows it; the relayed flag only tells it took more than one hop.
        return encode_frame(
            frame.kind,
            frame.origin,
            frame.swarm,
            frame.seq,
            frame.ts_ms,
            frame.doc,
            frame.payload,
            self._key,
            frame.flags | FLAG_RELAYED,
        )

    def _encode(self, kind: Kind, doc: str, payload: bytes, now: float, *, flags: int = 0) -> bytes:
        self._seq += 1
        return encode_frame(
            kind,
            self.peer_id,
            self._swarm,
            self._seq,
            int(now * 1000),
            doc,
            payload,
            self._key,
            flags,
        )

    def _digest(self, doc: str) -> bytes:
        digest = self._digests.get(doc)
        if digest is None:
            try:
                state_vector = self._docs.state_vector(doc)
                delete_set = self._docs.diff(doc, state_vector)
            except NodeNotFoundError:
                return b"\x00" * 8
            digest = doc_digest(state_vector, delete_set)
            self._digests[doc] = digest
        return digest

    def _followed_docs(self) -> list[str]:
        return [doc for doc in sorted(self._docs.hosts()) if self.follows(doc)]

    def _touch(self, peer: bytes, now: float) -> None:
        state = self._peers.get(peer)
        if state is None:
            self._peers[peer] = _Peer(last_seen=now)
            log.info("peer %s is online", peer.hex()[:8])
        else:
            state.last_seen = now

    def _reject(self, link: Link, reason: str, detail: str) -> None:
        self.metrics.rejected(link.transport, reason)
        source = (str(link), reason)
        # A duplicate is routine (the same delta by two transports); anything else is
        # worth one warning per source and reason.
        if reason == "duplicate" or source in self._warned:
            log.debug("frame from %s rejected (%s): %s", link, reason, detail)
        else:
            self._warned.add(source)
            log.warning("frame from %s rejected (%s): %s", link, reason, detail)
