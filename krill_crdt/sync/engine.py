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
* No duplicates: a delta goes out by multicast when some peer is not linked to us, and then
  not over the links of peers that hear our multicast; a delta that arrived by multicast is
  not relayed to peers that hear the same multicast.
* Anti-entropy: beacons carry a digest of each followed doc (state vector and delete set). A
  peer whose digest differs from ours is asked for a diff with our state vector
  (SYNC_STEP1) once the difference outlived the deltas in flight: its digest stood still
  from one beacon to the next, or ours stood still for ``repair_grace``. At most one such
  request per doc per ``resync_interval``, to a peer we can reach; an unanswered one is
  retried with the next differing peer. This also heals deltas lost on the way. Digests are
  computed once per change of a doc, when first needed.
* Gaps: a delta with a hole before it is held, not applied, and a diff is asked for; it is
  applied as soon as the hole closes.
* News travels: a link handshake that brings news to a doc already held (a partition
  healing) pushes it on to the other linked peers at once, and each peer it is news to does
  the same, so a sparse link graph catches up at link speed rather than one beacon interval
  per hop.
* Access control: ``authorize(peer, doc, write)`` is asked before a diff is sent and before an
  update is applied; a refusal leaves the doc untouched and is counted.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Counter
from pycrdt import merge_updates

from .._core.codec import (
    DATAGRAM_BUDGET,
    FLAG_RELAYED,
    FLAG_RESPONSE,
    MAX_BEACON_DOCS,
    Beacon,
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
from .digest import DIGEST_SIZE, doc_digest, read_state_vector, update_start
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


@functools.lru_cache(maxsize=256)
def _replica_digest(state_vector: bytes, delete_set: bytes) -> bytes:
    """The digest of a replica, remembering the last few: replicas that hold the same
    content mostly encode it alike, and every engine in one process (the simulator, tests)
    then computes it once rather than once each. The key is the encoded bytes, so a cached
    digest is always the digest of exactly those bytes."""
    return doc_digest(state_vector, delete_set)


@functools.lru_cache(maxsize=512)
def _decode_beacon(payload: bytes) -> Beacon:
    """Decode a beacon payload, remembering the last few: an idle peer repeats its payload,
    and every engine in one process (the simulator, tests) sees each multicast beacon alike.
    The result is shared: it is read, never changed."""
    return decode_beacon(payload)


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
        resync_interval: at most one SYNC_STEP1 per doc and peer, and one per doc to repair a
            differing digest, per this interval (1 s: one active beacon interval; a diff in
            flight is not asked for twice, and a swarm that heals does not ask every peer).
        repair_grace: a difference must last this long before we ask for a diff (0.2 s: a
            beacon often overtakes the delta it reports, but a delta crosses a LAN in
            milliseconds; below the 250 ms beacon floor, so a second beacon in a row that
            differs is enough).
        presence_floor: at most one PRESENCE announcement of our links per this interval
            (0.5 s: links come up in bursts when a peer starts or a partition heals, and every
            announcement floods the link graph; one per burst is enough).
        window: sequence numbers the replay window remembers behind the highest per origin.
        max_origins: origins the replay window tracks before evicting the least recent.
    """

    pacing: PacingOptions = field(default_factory=PacingOptions)
    presence_ttl: float = 30.0
    resync_interval: float = 1.0
    repair_grace: float = 0.2
    presence_floor: float = 0.5
    window: int = 1024
    max_origins: int = 1024


#: Deltas held per doc while a gap before them is open. A delta that arrives with a gap is
#: not applied (Yrs would paper over the gap, and no diff would ever fill it), but right after
#: a partition heals most deltas from the other side arrive so, moments before the diff that
#: closes their gap: holding a few avoids asking for them all again. Beyond this many,
#: anti-entropy brings the rest.
MAX_HELD_DELTAS = 64

#: Seconds a broadcast transport is not trusted to deliver alone after it lost a delta:
#: deltas then also take the peer links, as they would without it. A loss shows at the
#: receiver as a delta with a gap before it from a peer heard there without a break, and at
#: the sender as a peer asking for a diff that lacks one of its deltas sent there a while
#: ago, though it heard that peer there all along. A lossy LAN keeps losing, so it stays
#: marked; a clean one is trusted again after one lost datagram is forgotten.
LOSS_MEMORY = 30.0
# NOTE: both signals need a peer heard on the transport without a break of two active
# beacon intervals (what tells a loss from a partition healing); an idle peer beacons up to
# 8 s apart, so on a LAN of mostly idle peers a loss is noticed only once they are busy.

#: Our own deltas remembered per doc with the broadcast transports they went out on, to tell
#: when a peer asking for a diff lacks one that should have reached it.
SENT_MEMORY = 64

#: Requests for one repair before the next beacon decides: a lost request or answer is
#: retried after a resync interval, twice, which leaves one repair in 16 to a 50% loss of
#: round trips (30% loss each way).
REPAIR_ATTEMPTS = 3

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
    #: Broadcast transports this peer's frames arrive on, with when one last did.
    heard: dict[str, float] = field(default_factory=dict)
    #: Per broadcast transport, since when this peer has been heard there without a break.
    heard_since: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _DocView:
    """What the engine derives from a doc's content: computed when first needed, dropped on
    every change (a digest walks every client that ever wrote the doc)."""

    state_vector: bytes | None = None
    clocks: dict[int, int] | None = None
    digest: bytes | None = None
    digest_at: float | None = None


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
        self._views: dict[str, _DocView] = {}
        #: The last digest computed of each doc that changed since, and when it was computed.
        self._stale: dict[str, tuple[bytes, float]] = {}
        #: ``krill_frames_received_total`` children by (transport, kind), looked up once.
        self._received: dict[tuple[str, str], Counter] = {}
        #: Per broadcast transport, the peers heard on it and until when that set holds.
        self._hearing_cache: dict[str, tuple[frozenset[bytes], float]] = {}
        #: Per broadcast transport, until when it is taken to lose deltas.
        self._lossy_until: dict[str, float] = {}
        #: Per doc, our recent deltas sent by broadcast: (client, first clock, when, transports).
        self._broadcast_sent: dict[str, deque[tuple[int, int, float, tuple[str, ...]]]] = {}
        self._asked: dict[tuple[bytes, str], float] = {}
        #: Per doc, when we last asked a peer to repair it.
        self._repaired: dict[str, float] = {}
        #: Per doc, the peers whose last beacon showed another digest: since when, and the
        #: digest of the beacon before (a peer whose digest stands still has a real difference).
        self._differing: dict[str, dict[bytes, tuple[float, bytes]]] = {}
        #: Per doc, the earliest ``since`` of ``_differing`` (None: to be found again).
        self._unsynced_from: dict[str, float | None] = {}
        #: Per doc, deltas that arrived with a gap before them: (update, origin, link).
        self._held: dict[str, list[tuple[bytes, bytes, Link]]] = {}
        self._retrying = False
        #: (peer, doc) of link handshakes whose SYNC_STEP2 has not arrived yet.
        self._handshakes: set[tuple[bytes, str]] = set()
        #: No silent peer can expire before this (the earliest last_seen plus the TTL).
        self._expiry_due = float("inf")
        self._presence_last: float | None = None
        self._presence_due: float | None = None
        #: Per doc, when to look again at a peer whose beacon showed another digest: (when,
        #: peer, our digest then, requests made so far).
        self._rechecks: dict[str, tuple[float, bytes, bytes, int]] = {}
        self._warned: set[tuple[str, str]] = set()
        self._outbox: list[Send] = []
        self._events: list[Event] = []
        self.stats: dict[str, int] = {
            "applied": 0,
            "relayed": 0,
            "resyncs": 0,
            "gaps": 0,
            "pushed": 0,
        }

    # --------------------------------------------------------------------------- output

    def drain(self) -> tuple[list[Send], list[Event]]:
        # Frames are counted as sent by the transports, when they really go out; the engine
        # counts what it receives and accepts, and what it rejects.
        """Return and clear everything to send and every event since the last drain."""
        sends, self._outbox = self._outbox, []
        events, self._events = self._events, []
        return sends, events

    def next_deadline(self) -> float:
        """When :meth:`tick` should next be called (cheap: no walk over the known peers).

        It may be earlier than needed (a silent peer spoke since), never later.
        """
        deadline = min(self._pacer.next_due, self._expiry_due)
        if self._presence_due is not None:
            deadline = min(deadline, self._presence_due)
        for due, *_rest in self._rechecks.values():
            deadline = min(deadline, due)
        return deadline

    def unsynced_seconds(self, now: float) -> dict[str, float]:
        """Per followed doc, seconds since it was last known to be in sync with every peer.

        A doc is out of sync while some peer's last beacon carried another digest of it than
        ours (a doc we follow but do not hold yet included); 0 when every peer agreed.
        """
        docs = set(self._followed_docs()) | {d for d in self._differing if self.follows(d)}
        result = {}
        for doc in sorted(docs):
            differing = self._differing.get(doc)
            if not differing:
                result[doc] = 0.0
                continue
            since = self._unsynced_from.get(doc)
            if since is None:
                since = self._unsynced_from[doc] = min(at for at, _digest in differing.values())
            result[doc] = max(0.0, now - since)
        return result

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
        self._changed(doc)

    def local_update(self, doc: str, update: bytes, now: float) -> None:
        """This peer (or a client attached to it) wrote ``update`` to ``doc``.

        The update is queued; :meth:`flush` turns what is queued per doc into one frame.
        """
        self._changed(doc)
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
            self._handshakes.add((link.peer, doc))
            self._ask(link.peer, doc, now, link=link, force=True)

    def link_down(self, link: Link, now: float) -> None:
        """A point-to-point link went down."""
        if link in self._links:
            self._links.discard(link)
            self._announce_links(now)
        if link.peer is not None:
            self._handshakes = {(p, d) for p, d in self._handshakes if p != link.peer}

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
        self._repaired.clear()
        self._pacer.changed(now)

    def tick(self, now: float) -> None:
        """Run the timers: expire silent peers, announce links, send a beacon when due."""
        if now >= self._expiry_due:
            self._expire(now)
        self.metrics.peers.labels("online").set(len(self._peers))
        self.metrics.peers.labels("linked").set(len(self._links))
        for doc, seconds in self.unsynced_seconds(now).items():
            self.metrics.doc_unsynced.labels(doc).set(seconds)
        if self._presence_due is not None and now >= self._presence_due:
            self._presence_due = None
            self._send_presence(now)
        for doc, (due, peer, ours, attempts) in sorted(self._rechecks.items()):
            if now >= due:
                del self._rechecks[doc]
                if self._digest(doc, now) == ours:  # nothing arrived meanwhile
                    self._try_repair(self._next_to_ask(doc, peer, attempts), doc, now, attempts)
        if self._pacer.due(now):
            self._beacon(now)

    def _expire(self, now: float) -> None:
        ttl = self.options.presence_ttl
        for peer in [p for p, s in self._peers.items() if now - s.last_seen > ttl]:
            del self._peers[peer]
            self._topology.forget(peer)
            for doc in self._differing:
                self._agrees(doc, peer)
            self._events.append(PeerLost(peer))
            log.info("peer %s is offline (silent for %.0f s)", peer.hex()[:8], ttl)
        self._hearing_cache.clear()
        self._expiry_due = min((s.last_seen for s in self._peers.values()), default=now) + ttl
        if not self._peers:
            self._expiry_due = float("inf")

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
        counter = self._received.get((link.transport, kind.name))
        if counter is None:
            counter = self.metrics.frames_received.labels(link.transport, kind.name.lower())
            self._received[(link.transport, kind.name)] = counter
        counter.inc()
        sender = link.peer if link.peer is not None else frame.origin
        self._touch(frame.origin, now)
        if link.peer is None:
            state = self._peers[frame.origin]
            last = state.heard.get(link.transport)
            if last is None or now - last > 2 * self.options.pacing.active:
                state.heard_since[link.transport] = now
            state.heard[link.transport] = now
            cached = self._hearing_cache.get(link.transport)
            if cached is not None and frame.origin not in cached[0]:
                del self._hearing_cache[link.transport]

        # Step 3: act on it.
        if kind is Kind.UPDATE:
            self._on_update(frame, link, now)
        elif kind is Kind.BEACON:
            self._on_beacon(frame, link, now)
        elif kind is Kind.SYNC_STEP1:
            self._on_step1(frame, sender, link, now)
        elif kind is Kind.SYNC_STEP2:
            self._on_step2(frame, sender, link, now)
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
        gap = self.follows(frame.doc) and self._has_gap(frame.doc, frame.payload)
        if gap and link.peer is None:
            self._note_loss(frame.origin, link.transport, now)
        if gap:
            # An earlier delta of this origin never arrived (or is still on its way): fetch
            # everything missing in one diff rather than apply a delta with a hole before it.
            # It is held meanwhile: the diff, or news from elsewhere, may close the gap first.
            sender = link.peer if link.peer is not None else frame.origin
            self.stats["gaps"] += 1
            log.debug("doc %s: delta from %s has a gap; asking for a diff", frame.doc, link)
            self._hold(frame, link)
            if link.peer is None:  # by multicast or the broker: its origin may be unreachable
                sender = self._stand_in(sender, frame.doc, now) or sender
            self._ask(sender, frame.doc, now, link=link if link.peer is not None else None)
            self._relay(frame, link, now)
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
        self._relay(frame, link, now)

    def _on_beacon(self, frame: Frame, link: Link, now: float) -> None:
        # NOTE: every peer reads every beacon, so a swarm of N peers on one multicast group
        # handles N * N beacons per beacon interval; beyond a few hundred peers this is most
        # of each peer's work. Suppressing beacons that repeat what others just said (as
        # mDNS suppresses known answers) would bound it; it is not done yet.
        try:
            beacon = _decode_beacon(bytes(frame.payload))
        except (FrameError, ValueError) as exc:
            self._reject(link, "beacon", str(exc))
            return
        peer = self._peers[frame.origin]
        if beacon.endpoints != peer.endpoints:
            peer.endpoints = beacon.endpoints
            self._events.append(PeerSeen(frame.origin, beacon.endpoints))
            # Answer a newcomer with our own beacon soon, so that it learns of us now rather
            # than when our idle interval runs out.
            self._pacer.answer(now)
        peer.digests = beacon.digests  # shared with the decode cache: read, never changed
        if beacon.delta is not None:
            doc, update = beacon.delta
            self._apply(doc, update, frame.origin, link, now)
        # Anti-entropy: ask for what differs, including docs we do not hold yet, once the
        # difference outlived the deltas that may still be on their way: the peer's digest
        # stood still from one beacon to the next, or ours did for the grace time. While
        # deltas stream both move, and what a diff would bring is arriving anyway.
        for doc, digest in beacon.digests.items():
            if not self.follows(doc):
                continue
            differing = self._differing.setdefault(doc, {})
            ours = self._recent_digest(doc, now)
            if digest == ours:
                self._agrees(doc, frame.origin)
                continue
            since, before = differing.get(frame.origin, (now, b""))
            differing[frame.origin] = (since, digest)
            if len(differing) == 1:
                self._unsynced_from[doc] = since
            if digest == before and now - since >= self.options.repair_grace:
                self._try_repair(frame.origin, doc, now)
            elif doc not in self._rechecks and self._stand_in(frame.origin, doc, now):
                # Look again once a delta on its way would have arrived, rather than wait
                # for this peer's next beacon (up to an idle interval away).
                self._rechecks[doc] = (now + self.options.repair_grace, frame.origin, ours, 0)

    def _next_to_ask(self, doc: str, last: bytes, attempts: int) -> bytes:
        """The peer to ask on a retry: the next differing peer we can reach after ``last``
        (the one asked may lack the same as we do)."""
        if not attempts:
            return last
        reachable = sorted(p for p in self._differing.get(doc, {}) if self._route(p) is not None)
        after = [p for p in reachable if p > last]
        return (after or reachable or [last])[0]

    def _agrees(self, doc: str, peer: bytes) -> None:
        """``peer`` holds what we hold of ``doc``, as far as we know."""
        differing = self._differing.get(doc)
        if differing is not None and differing.pop(peer, None) is not None:
            self._unsynced_from[doc] = None

    def _try_repair(self, peer: bytes, doc: str, now: float, attempts: int = 0) -> None:
        """Ask ``peer`` for a diff of ``doc`` if its last digest still differs from ours.

        If nothing has arrived a resync interval later (the request or its answer may be
        lost), ask again, up to ``REPAIR_ATTEMPTS`` times; then the next beacon decides.
        """
        state = self._peers.get(peer)
        digest = None if state is None else state.digests.get(doc)
        asked = self._stand_in(peer, doc, now)
        if digest is None or asked is None or not self._may_repair(asked, doc, now):
            return
        ours = self._digest(doc, now)
        if digest == ours:
            self._agrees(doc, peer)  # only our recent digest was behind
            return
        self._repaired[doc] = now
        self._ask(asked, doc, now)
        if attempts + 1 < REPAIR_ATTEMPTS and doc not in self._rechecks:
            retry_at = now + self.options.resync_interval
            self._rechecks[doc] = (retry_at, peer, ours, attempts + 1)

    def _on_step1(self, frame: Frame, sender: bytes, link: Link, now: float) -> None:
        doc = frame.doc
        if not self._authorize(sender, doc, False):
            self._reject(link, "forbidden", f"read of {doc}")
            return
        try:
            diff = self._docs.diff(doc, frame.payload or None)
            mine = self._clocks(doc)
        except NodeNotFoundError:
            # The asker holds a doc we do not: ask for all of it, if we follow it.
            if self.follows(doc):
                self._ask(sender, doc, now, link=link if link.peer is not None else None)
            return
        except (UpdateRejectedError, FrameError) as exc:
            self._reject(link, "state-vector", str(exc))
            return
        self._send_to(sender, Kind.SYNC_STEP2, doc, diff, now, flags=FLAG_RESPONSE, via=link)
        # If the asker holds something we lack, ask back in the same round trip. Equal state
        # vectors mean the asker saw digests differ over deletions alone: ours travel in the
        # diff, and asking back brings theirs.
        try:
            theirs = read_state_vector(frame.payload) if frame.payload else {}
        except FrameError:
            return
        self._check_delivery(doc, sender, theirs, now)
        ahead = any(clock > mine.get(client, 0) for client, clock in theirs.items())
        same = {c: k for c, k in theirs.items() if k} == {c: k for c, k in mine.items() if k}
        if ahead or same:
            self._ask(sender, doc, now, link=link if link.peer is not None else None)

    def _on_step2(self, frame: Frame, sender: bytes, link: Link, now: float) -> None:
        doc = frame.doc
        handshake = (sender, doc) in self._handshakes
        self._handshakes.discard((sender, doc))
        if not handshake and frame.flags & FLAG_RESPONSE:
            self._apply(doc, frame.payload, frame.origin, link, now)
            return
        # A handshake answer, or news pushed to us: pass on whatever it brings.
        before = self._replica(doc) if self._has_doc(doc) else None
        if not self._apply(doc, frame.payload, frame.origin, link, now) or before is None:
            return
        if self._replica(doc) != before:
            self._pass_on(doc, frame.payload, self._digest(doc, now), sender, now)

    def _pass_on(self, doc: str, news: bytes, digest: bytes, sender: bytes, now: float) -> None:
        """Push news of a doc that a link handshake brought on to the other linked peers.

        A handshake that brings news to a doc we already held joined two histories (a
        partition healed); our other linked peers most likely lack the same news, and
        anti-entropy would bring it one hop per beacon interval. So it goes on at once as an
        unsolicited SYNC_STEP2, to each linked peer whose last digest differs from ours; a
        peer it brings news to passes it on the same way, and one it brings nothing stops
        the wave.
        """
        # NOTE: the news goes whole to each linked peer whose digest differs, though it may
        # hold part of it already: a wave costs one frame per link it crosses.
        for link in sorted(self._links, key=str):
            peer = link.peer
            if peer is None or peer == sender:
                continue
            state = self._peers.get(peer)
            if state is not None and state.digests.get(doc) == digest:
                continue
            if not self._authorize(peer, doc, False):
                continue  # it may not read the doc: a diff is more than a delta
            self.stats["pushed"] += 1
            self._send_to(peer, Kind.SYNC_STEP2, doc, news, now, via=link)

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
            start = update_start(update)
        except FrameError:
            return False  # let the apply refuse it, with the reason
        if start is None or start[1] == 0:
            return False
        client, first_clock = start
        try:
            return first_clock > self._clocks(doc).get(client, 0)
        except NodeNotFoundError:
            return True
        except FrameError:
            return False

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
        self._changed(doc)
        self.stats["applied"] += 1
        if doc in self._held and not self._retrying:
            self._retry_held(doc, now)
        return True

    def _hold(self, frame: Frame, link: Link) -> None:
        held = self._held.setdefault(frame.doc, [])
        held.append((bytes(frame.payload), bytes(frame.origin), link))
        del held[:-MAX_HELD_DELTAS]

    def _retry_held(self, doc: str, now: float) -> None:
        """Apply the held deltas of ``doc`` whose gap has closed, until none has."""
        self._retrying = True
        try:
            progress = True
            while progress and self._held.get(doc):
                progress = False
                for entry in list(self._held[doc]):
                    update, origin, link = entry
                    if self._has_gap(doc, update):
                        continue
                    self._held[doc].remove(entry)
                    self._apply(doc, update, origin, link, now)
                    progress = True
            if not self._held.get(doc):
                self._held.pop(doc, None)
        finally:
            self._retrying = False

    def _relay(self, frame: Frame, came_from: Link, now: float) -> None:
        if not self._links:
            return
        # A delta that came by multicast (or the broker) reached every peer that hears the
        # same group: relaying it to those over a link would deliver it twice.
        covered = self._hearing(came_from.transport, now) if came_from.peer is None else frozenset()
        linked = {
            lk.peer: lk
            for lk in self._links
            if lk.peer is not None
            and lk.peer not in covered
            and lk.peer not in (came_from.peer, frame.origin)
        }
        if not linked:
            return
        children = self._topology.relay_children(frame.origin, linked)
        if children is None:
            # The origin's links are unknown: forward to every link but the way it came.
            children = list(linked)
        for peer in children:
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
        broadcasts = self._broadcasts_for(len(data), now, update=True)
        for link in broadcasts:
            self._outbox.append(Send(link, data, "update", doc))
        if broadcasts:
            self._remember_sent(doc, update, now, tuple(link.transport for link in broadcasts))
        covered: set[bytes] = set()
        for link in broadcasts:
            covered.update(self._hearing(link.transport, now))
        sent_p2p = False
        for link in sorted(self._links, key=str):
            if link.peer not in covered:
                self._outbox.append(Send(link, data, "update", doc))
                sent_p2p = True
        if not sent_p2p and not broadcasts:
            log.debug("doc %s: update seq %d has no way to go", doc, self._seq)

    def _broadcasts_for(self, size: int, now: float, *, update: bool) -> list[Link]:
        """The broadcast transports a frame of ``size`` bytes goes out on.

        Multicast first, when the frame fits a datagram; then the broker, unless every peer
        we know already hears the multicast. Updates skip multicast where every peer we know
        has a link to us (links are reliable streams; the datagram would be a second copy).
        """
        linked = {lk.peer for lk in self._links}
        unlinked = [p for p in self._peers if p not in linked] if update else list(self._peers)
        chosen: list[Link] = []
        uncovered = unlinked
        for name, broadcast in self.transports.items():
            if not broadcast or (name == "udp" and size > DATAGRAM_BUDGET):
                continue
            if self._peers and not uncovered:
                continue  # every peer we know is reached already
            chosen.append(Link(name))
            hearing = self._hearing(name, now)
            uncovered = [p for p in uncovered if p not in hearing]
        return chosen

    def _note_loss(self, origin: bytes, transport: str, now: float) -> None:
        """A delta of ``origin`` came by ``transport`` with a gap before it: if we have been
        hearing that peer there without a break, the transport lost (or reordered) one.

        A peer heard again after a silence (a partition healing, a restart) sends deltas
        with gaps that no loss explains, so those do not count.
        """
        state = self._peers.get(origin)
        since = None if state is None else state.heard_since.get(transport)
        if since is None or now - since < 2 * self.options.pacing.active:
            return
        self._mark_lossy(transport, now)

    def _mark_lossy(self, transport: str, now: float) -> None:
        if now >= self._lossy_until.get(transport, -math.inf):
            log.info("%s lost a delta: deltas also take the peer links for a while", transport)
        self._lossy_until[transport] = now + LOSS_MEMORY

    def _remember_sent(
        self, doc: str, update: bytes, now: float, transports: tuple[str, ...]
    ) -> None:
        try:
            start = update_start(update)
        except FrameError:
            return
        if start is not None:
            sent = self._broadcast_sent.get(doc)
            if sent is None:
                sent = self._broadcast_sent[doc] = deque(maxlen=SENT_MEMORY)
            sent.append((start[0], start[1], now, transports))

    def _check_delivery(self, doc: str, asker: bytes, theirs: dict[int, int], now: float) -> None:
        """A peer asked for a diff of ``doc`` with state vector ``theirs``: if it lacks one of
        our deltas that went out by a broadcast transport on which we heard it without a break
        since before, and long enough ago to have arrived, that transport lost it.

        This is how a sender learns that its datagrams get lost: it may see no gap itself.
        A peer asks only once a difference outlived ``repair_grace``, and a datagram crosses
        a LAN in milliseconds: a delta older than that should be there.
        """
        sent = self._broadcast_sent.get(doc)
        state = self._peers.get(asker)
        if not sent or state is None:
            return
        settled = now - self.options.repair_grace
        for client, first_clock, at, transports in sent:
            if at > settled:
                break
            if theirs.get(client, 0) > first_clock:
                continue  # it has this one
            for transport in transports:
                since = state.heard_since.get(transport)
                heard = state.heard.get(transport)
                if since is None or heard is None or since > at:
                    continue
                if now - heard > 2 * self.options.pacing.active:
                    continue
                self._mark_lossy(transport, now)
            return

    def _hearing(self, transport: str, now: float) -> frozenset[bytes]:
        """Peers whose frames reach us on a broadcast ``transport`` (so ours reach them).

        A peer beacons at least once per idle interval: one not heard on the transport for
        two of them is taken as out of its reach, whatever else still carries its frames.
        The set is kept until a newcomer is heard or its oldest member may have gone stale.
        """
        # NOTE: hearing a peer's multicast is taken to mean it hears ours (one group, TTL 1).
        # Where multicast reaches one way only, that peer misses our deltas until the gap
        # check or anti-entropy heals them.
        if now < self._lossy_until.get(transport, -math.inf):
            return frozenset()  # it loses deltas: reaching a peer there is not enough
        cached = self._hearing_cache.get(transport)
        if cached is not None and now < cached[1]:
            return cached[0]
        fresh = 2 * self.options.pacing.idle
        heard = {
            peer: state.heard[transport]
            for peer, state in self._peers.items()
            if now - state.heard.get(transport, -math.inf) <= fresh
        }
        hearing = frozenset(heard)
        self._hearing_cache[transport] = (hearing, min(heard.values(), default=math.inf) + fresh)
        return hearing

    def _beacon(self, now: float) -> None:
        digests: dict[str, bytes] = {}
        for doc in self._followed_docs()[:MAX_BEACON_DOCS]:
            digests[doc] = self._digest(doc, now)
        payload = encode_beacon(self.endpoints[:4], digests)
        data = self._encode(Kind.BEACON, "", payload, now)
        broadcast = self._broadcasts_for(len(data), now, update=False)
        has_broadcast = any(self.transports.values())
        targets = broadcast if has_broadcast else sorted(self._links, key=str)
        for link in targets:
            self._outbox.append(Send(link, data, "beacon"))
        self._pacer.sent(now)

    def _announce_links(self, now: float) -> None:
        if not self._topology.announce(self.peer_id, self._neighbours()):
            return
        # Every announcement floods the link graph: one per presence_floor, the rest of a
        # burst of link changes goes out with the next one (see tick).
        floor = self.options.presence_floor
        if self._presence_last is None or now - self._presence_last >= floor:
            self._send_presence(now)
        elif self._presence_due is None:
            self._presence_due = self._presence_last + floor

    def _send_presence(self, now: float) -> None:
        self._presence_last = now
        self._presence_due = None
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
        if (link is None or link.peer != peer) and self._route(peer) is None:
            return  # no way to reach it: leave the question to a peer we can reach
        self._asked[(peer, doc)] = now
        try:
            state_vector = self._state_vector(doc)
        except NodeNotFoundError:
            state_vector = EMPTY_STATE_VECTOR
        self.stats["resyncs"] += 1
        self._send_to(peer, Kind.SYNC_STEP1, doc, state_vector, now, via=link)

    def _stand_in(self, peer: bytes, doc: str, now: float) -> bytes | None:
        """Whom to ask for what ``peer`` holds of ``doc``: ``peer`` itself if we can reach it,
        else a linked peer, one whose last digest differs from ours first (it may hold the
        news already); None if we reach nobody.

        Deltas by multicast reach peers that have no link to their origin; one lost on the
        way can only be fetched from a peer we have a link to.
        """
        if self._route(peer) is not None:
            return peer
        linked = sorted(lk.peer for lk in self._links if lk.peer is not None)
        if not linked:
            return None
        ours = self._recent_digest(doc, now)

        def knows_less(candidate: bytes) -> bool:
            state = self._peers.get(candidate)
            return state is None or state.digests.get(doc) in (None, ours)

        return min(linked, key=knows_less)

    def _may_repair(self, peer: bytes, doc: str, now: float) -> bool:
        """Whether ``peer`` may be asked now to repair ``doc``: one such request per doc per
        interval, to a peer we can reach.

        Every differing peer would give the same answer, and asking each one after a
        partition heals is a storm of diffs; the one asked also asks back for what it lacks.
        """
        last = self._repaired.get(doc)
        if last is not None and now - last < self.options.resync_interval:
            return False
        asked = self._asked.get((peer, doc))
        if asked is not None and now - asked < self.options.resync_interval:
            return False
        return self._route(peer) is not None

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

    def _view(self, doc: str) -> _DocView:
        view = self._views.get(doc)
        if view is None:
            view = self._views[doc] = _DocView()
        return view

    def _replica(self, doc: str) -> tuple[bytes, bytes]:
        """The doc's state vector and delete set as encoded: not canonical, but they stay the
        same bytes while the doc does not change, and cost far less than a digest."""
        state_vector = self._state_vector(doc)
        return state_vector, self._docs.diff(doc, state_vector)

    def _has_doc(self, doc: str) -> bool:
        return doc in self._views or doc in self._docs.hosts()

    def _state_vector(self, doc: str) -> bytes:
        """The doc's state vector; NodeNotFoundError if it is not held."""
        view = self._view(doc)
        if view.state_vector is None:
            try:
                view.state_vector = self._docs.state_vector(doc)
            except NodeNotFoundError:
                del self._views[doc]
                raise
        return view.state_vector

    def _clocks(self, doc: str) -> dict[int, int]:
        """The doc's state vector, decoded; NodeNotFoundError if not held, FrameError if bad."""
        state_vector = self._state_vector(doc)
        view = self._view(doc)
        if view.clocks is None:
            view.clocks = read_state_vector(state_vector)
        return view.clocks

    def _changed(self, doc: str) -> None:
        view = self._views.pop(doc, None)
        if view is not None and view.digest is not None and view.digest_at is not None:
            self._stale[doc] = (view.digest, view.digest_at)

    def _digest(self, doc: str, now: float | None = None) -> bytes:
        view = self._views.get(doc)
        if view is not None and view.digest is not None:
            return view.digest
        try:
            state_vector = self._state_vector(doc)
            delete_set = self._docs.diff(doc, state_vector)
        except NodeNotFoundError:
            return b"\x00" * DIGEST_SIZE
        digest = _replica_digest(state_vector, delete_set)
        view = self._view(doc)
        view.digest, view.digest_at = digest, now
        return digest

    def _recent_digest(self, doc: str, now: float) -> bytes:
        """Our digest of ``doc`` as of at most one active beacon interval ago, to compare
        with a beacon.

        While deltas stream in, a doc changes faster than beacons arrive; computing a digest
        after each change only to compare it with beacons that are themselves up to an
        interval old would cost a walk over every client per delta. Nothing is decided on a
        recent digest alone: a repair is asked for only after the current one differs too,
        and the unsynced time it feeds is as coarse as the beacons anyway.
        """
        view = self._views.get(doc)
        if view is None or view.digest is None:
            stale = self._stale.get(doc)
            if stale is not None and now - stale[1] < self.options.pacing.active:
                return stale[0]
        return self._digest(doc, now)

    def _followed_docs(self) -> list[str]:
        return [doc for doc in sorted(self._docs.hosts()) if self.follows(doc)]

    def _touch(self, peer: bytes, now: float) -> None:
        state = self._peers.get(peer)
        if state is None:
            self._peers[peer] = _Peer(last_seen=now)
            self._expiry_due = min(self._expiry_due, now + self.options.presence_ttl)
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
