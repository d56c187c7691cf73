"""The discrete-event core: a virtual clock, one event queue, one seeded random source.

Everything that happens in a run is an event on one heap, ordered by virtual time and then
by a sequence number given at scheduling, so ties always break the same way. Every random
choice comes from one ``random.Random(seed)`` drawn in event order. Nothing reads the wall
clock and nothing iterates a set or a dict keyed by bytes to decide anything, so one seed
gives one run, whatever ``PYTHONHASHSEED`` is.

The engines are the real :class:`~krill_crdt.sync.engine.SyncEngine`; only the world around
them (network, clocks, durability, crashes, users) is simulated.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import math
import random
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from ..errors import KrillError, ValidationError
from ..model import Node, NodeType
from ..store.hostdoc import HostDoc
from ..store.origin import Origin
from ..sync.digest import read_state_vector
from ..sync.engine import SyncOptions
from ..sync.link import Link, Send
from .checks import Invariant, WriteRecord, lost_writes
from .faults import engine_class
from .peer import SimPeer, peer_id, server_node
from .report import Report
from .scenario import LinkProfile, Partition, Scenario, Writer, select

__all__ = ["DELTA_KINDS", "Simulation", "run"]

log = logging.getLogger("krill.sim")

#: Frame kinds that carry doc content: what quiescence and frames per update count.
DELTA_KINDS = frozenset({"update", "sync_step1", "sync_step2"})

#: Virtual time at which a run starts: any plausible Unix time, so that frame timestamps
#: and ``updated`` stamps look like real ones.
EPOCH = 1_700_000_000.0

#: Timer resolution: a timer due now runs no sooner than this after the one before, like an
#: event loop's clock granularity; it also keeps a timer that is always due from spinning.
TIMER_RESOLUTION = 0.001

#: Default resolution of the convergence figures: 100 ms of virtual time. Times are rounded
#: up to it (as a tracker sampling every peer that often would see them).
SAMPLE_INTERVAL = 0.1

# Event kinds; plain ints keep the heap entries small and cheap to compare.
_DELIVER, _TICK, _FLUSH, _COMMIT, _WRITE, _LINK, _MQTT, _CALL = range(8)


def _expected_updates(scenario: Scenario) -> float:
    total = float(scenario.hosts * (scenario.projects + 1))
    for writer in scenario.writers:
        count = len(select(writer.peers, scenario.peers, scenario.groups))
        total += writer.rate * max(0.0, writer.stop - writer.start) * count
    return total


class Simulation:
    """One run of one scenario.

    Args:
        scenario: what to simulate.
        seed: the seed of the run's only random source.
        options: engine options (the engine's defaults if None).
        sample_interval: resolution of the convergence figures, virtual seconds.
        progress: called with the fraction of virtual time done, now and then.

    Use :meth:`run` (or the module's :func:`run`) to get a :class:`Report`.
    """

    def __init__(
        self,
        scenario: Scenario,
        seed: int = 0,
        *,
        options: SyncOptions | None = None,
        sample_interval: float = SAMPLE_INTERVAL,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        self.scenario = s = scenario
        self.seed = seed
        self.rng = random.Random(seed)
        self.options = options or SyncOptions()
        self.sample_interval = sample_interval
        self.progress = progress
        self.now = EPOCH
        self._queue: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = 0
        self._engine_class = engine_class(s.faults)
        self._transports: dict[str, bool] = {
            name: name != "ws" for name in ("udp", "mqtt", "ws") if name in s.transports
        }

        # Step 1: the peers, their hosts and clocks.
        self.hosts = [f"h{i:03d}" for i in range(min(s.hosts, s.peers))]
        crashing = {i for c in s.crashes for i in select(c.peers, s.peers, s.groups)}
        self.peers = [
            SimPeer(
                index=i,
                name=f"p{i:04d}",
                id=peer_id(i),
                skew=self.rng.uniform(-s.clock_skew, s.clock_skew),
                host=self.hosts[i] if i < len(self.hosts) else None,
                keeps_snapshots=i in crashing,
            )
            for i in range(s.peers)
        ]
        self._by_id = {p.id: p.index for p in self.peers}

        # Step 2: the network: links, sides, broker.
        self._edges = self._make_edges()
        self._edge_up: dict[tuple[int, int], bool] = dict.fromkeys(self._edges, False)
        self._edge_epoch: dict[tuple[int, int], int] = dict.fromkeys(self._edges, 0)
        self._neighbours: dict[int, list[tuple[int, int]]] = {}
        for edge in self._edges:
            self._neighbours.setdefault(edge[0], []).append(edge)
            self._neighbours.setdefault(edge[1], []).append(edge)
        self._side = [0] * s.peers
        self._broker_side: int | None = None
        self._broker_up = True
        self._mqtt_epoch = [0] * s.peers
        self._busy: dict[tuple[int, int, str], float] = {}
        self._last_arrival: dict[tuple[int, int], float] = {}
        self._rules = [
            (set(select(r.src, s.peers, s.groups)), set(select(r.dst, s.peers, s.groups)), r)
            for r in s.rules
        ]
        self._profiles: dict[tuple[int, int, str], LinkProfile] = {}

        # Step 3: the bookkeeping the report is made of.
        self.writes: list[WriteRecord] = []
        self.skipped = 0
        self.crash_lost = 0
        self.frames_by_kind: Counter[str] = Counter()
        self.frames_sent = 0
        self.delta_frames = 0
        self.handshake_frames = 0
        self.dropped = 0
        self.quiet_deltas = 0
        self.frames_per_second: Counter[int] = Counter()
        self.spans: list[tuple[str, float, float]] = []
        self.storm = False
        self.budget = int(100_000 + 50 * s.peers * (_expected_updates(s) + 10 * s.peers))

        # Step 4: when the run ends: the settle time after the last write or fault.
        marks = [s.start_spread] + [w.stop for w in s.writers]
        marks += [t for p in s.partitions for t in (p.at, p.heal) if t is not None]
        marks += [t for c in s.crashes for t in (c.at, c.restart) if t is not None]
        marks += [t for o in s.outages for t in (o.at, o.until)]
        self.end = EPOCH + max(marks) + s.settle
        #: The last write or fault that happened: convergence is timed from here.
        self.quiet_from = EPOCH

    # ------------------------------------------------------------------------- the loop

    def _push(self, at: float, kind: int, a: Any = None, b: Any = None, c: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, a, b, c))

    def run(self) -> Report:
        """Run to the end and return the report."""
        self._schedule_start()
        queue = self._queue
        next_progress = self.now
        span = self.end - EPOCH
        while queue:
            at, _seq, kind, a, b, c = heapq.heappop(queue)
            if at > self.end:
                break
            self.now = at
            if kind == _DELIVER:
                self._on_deliver(a, b, c)
            elif kind == _TICK:
                self._on_tick(a, b)
            elif kind == _FLUSH:
                self._on_flush(a, b)
            elif kind == _WRITE:
                self._on_write(a, b)
            elif kind == _COMMIT:
                self._on_commit(a, b)
            elif kind == _LINK:
                self._on_link(a, b, c)
            elif kind == _MQTT:
                self._on_mqtt(a, b)
            else:
                a()
            if self.frames_sent > self.budget:
                self.storm = True
                log.warning("traffic passed %d frames: stopping the run", self.budget)
                break
            if self.progress is not None and at >= next_progress:
                self.progress(min(1.0, (at - EPOCH) / span))
                next_progress = at + span / 100
        self.now = min(max(self.now, self.end), self.end) if not self.storm else self.now
        return self._report()

    def _schedule_start(self) -> None:
        s = self.scenario
        for peer in self.peers:
            self._push(EPOCH + self.rng.uniform(0, s.start_spread), _CALL, self._starter(peer))
        for edge in self._edges:
            self._push(EPOCH + s.start_spread + self.rng.uniform(0, s.redial), _LINK, edge, 0, True)
        for number, writer in enumerate(s.writers):
            for index in select(writer.peers, s.peers, s.groups):
                first = EPOCH + writer.start + self.rng.expovariate(writer.rate)
                self._push(first, _WRITE, index, number)
        for p in s.partitions:
            self._push(EPOCH + p.at, _CALL, partial(self._split, p))
            if p.heal is not None:
                self._push(EPOCH + p.heal, _CALL, self._heal)
                self.spans.append((f"partition {'/'.join(p.groups)}", p.at, p.heal))
        for crash in s.crashes:
            for index in select(crash.peers, s.peers, s.groups):
                self._push(EPOCH + crash.at, _CALL, partial(self._crash, index))
                if crash.restart is not None:
                    self._push(EPOCH + crash.restart, _CALL, partial(self._restart, index))
            self.spans.append(("crash", crash.at, crash.restart or self.end - EPOCH))
        for outage in s.outages:
            self._push(EPOCH + outage.at, _CALL, partial(self._set_broker, False))
            self._push(EPOCH + outage.until, _CALL, partial(self._set_broker, True))
            self.spans.append(("broker down", outage.at, outage.until))

    # ----------------------------------------------------------------------- peer events

    def _peer_now(self, peer: SimPeer) -> float:
        return self.now + peer.skew

    def _starter(self, peer: SimPeer) -> Callable[[], None]:
        def start() -> None:
            self._start_peer(peer)
            if peer.host is not None:
                self._setup_host(peer)
            self._after(peer)

        return start

    def _start_peer(self, peer: SimPeer) -> None:
        peer.start(self._engine_class, lambda: self.now, dict(self._transports), self.options)
        self._reconcile(peer.index)

    def _setup_host(self, peer: SimPeer) -> None:
        assert peer.host is not None and peer.docs is not None
        host = peer.host
        doc = peer.docs.doc(host)
        if host not in doc:
            self._record(peer, doc, "create", host, lambda: doc.create(server_node(host)))
        for k in range(self.scenario.projects):
            node_id = f"{host}-p{k}"
            if node_id not in doc and peer.run == 1:
                node = Node.new(NodeType.Project, host=host, parent=host, id=node_id, name=node_id)
                self._record(peer, doc, "create", node_id, partial(doc.create, node), parent=host)

    def _after(self, peer: SimPeer, *, handshake: bool = False) -> None:
        """Send what the engine produced; arm its flush, commit and timer.

        ``handshake`` marks what the engine produced as part of a link's opening exchange
        (SYNC_STEP1 on link up, and what answers it), counted apart from the traffic that
        writes cause.
        """
        engine = peer.engine
        if engine is None:
            return
        sends, _events = engine.drain()
        if sends:
            # The engine lists some sends in set order, which depends on hashing: a stable
            # sort by destination makes the order (and so every random draw) reproducible.
            sends.sort(key=_send_key)
            for send in sends:
                self._send(peer, send, handshake)
        if peer.wants_flush:
            peer.wants_flush = False
            if peer.flush_at is None:
                peer.flush_at = self.now + self.scenario.flush_interval
                self._push(peer.flush_at, _FLUSH, peer.index, peer.run)
        if peer.unacked and peer.commit_at is None:
            peer.commit_at = self.now + self.scenario.commit_delay
            self._push(peer.commit_at, _COMMIT, peer.index, peer.run)
        self._arm_timer(peer)

    def _arm_timer(self, peer: SimPeer) -> None:
        engine = peer.engine
        assert engine is not None
        deadline = engine.next_deadline()
        at = max(deadline - peer.skew, self.now + TIMER_RESOLUTION)
        if peer.tick_at is None or at < peer.tick_at:
            peer.tick_at = at
            self._push(at, _TICK, peer.index, (peer.run, at))

    def _on_tick(self, index: int, token: tuple[int, float]) -> None:
        peer = self.peers[index]
        if peer.engine is None or token != (peer.run, peer.tick_at):
            return
        peer.tick_at = None
        peer.engine.tick(self._peer_now(peer))
        self._after(peer)

    def _on_flush(self, index: int, run: int) -> None:
        peer = self.peers[index]
        if peer.engine is None or peer.run != run:
            return
        peer.flush_at = None
        peer.engine.flush(self._peer_now(peer))
        self._after(peer)

    def _on_commit(self, index: int, run: int) -> None:
        peer = self.peers[index]
        if peer.engine is None or peer.run != run:
            return
        for w in peer.commit():
            self.writes[w].acked = True

    # --------------------------------------------------------------------------- network

    def _make_edges(self) -> list[tuple[int, int]]:
        s = self.scenario
        if "ws" not in s.transports or s.topology == "none":
            return []
        n = s.peers
        if s.topology == "mesh":
            return [(a, b) for a in range(n) for b in range(a + 1, n)]
        if s.topology == "star":
            return [(0, b) for b in range(1, n)]
        edges = {
            (min(a, (a + k) % n), max(a, (a + k) % n))
            for a in range(n)
            for k in range(1, s.degree + 1)
            if (a + k) % n != a
        }
        return sorted(edges)

    def _profile(self, src: int, dst: int, transport: str) -> LinkProfile:
        if not self._rules:
            return self.scenario.profile
        key = (src, dst, transport)
        found = self._profiles.get(key)
        if found is None:
            found = self.scenario.profile
            for sources, targets, rule in self._rules:
                if (rule.transport in ("*", transport)) and src in sources and dst in targets:
                    found = rule.profile
                    break
            self._profiles[key] = found
        return found

    def _reachable(self, a: int, b: int) -> bool:
        return self.peers[a].alive and self.peers[b].alive and self._side[a] == self._side[b]

    def _broker_reaches(self, index: int) -> bool:
        if not self._broker_up or not self.peers[index].alive:
            return False
        return self._broker_side is None or self._side[index] == self._broker_side

    def _send(self, sender: SimPeer, send: Send, handshake: bool = False) -> None:
        kind = send.kind
        self.frames_sent += 1
        self.frames_by_kind[kind] += 1
        self.frames_per_second[int(self.now - EPOCH)] += 1
        delta = kind in DELTA_KINDS
        if handshake and delta:
            self.handshake_frames += 1
            delta = False
        if delta and self.now >= self.end - self.scenario.quiet_window:
            self.quiet_deltas += 1
        link, src, data = send.link, sender.index, send.data
        if link.transport == "ws":
            assert link.peer is not None
            dst = self._by_id.get(link.peer)
            if dst is None:
                return
            edge = (min(src, dst), max(src, dst))
            self.delta_frames += delta
            if not self._edge_up.get(edge, False) or not self._reachable(src, dst):
                self.dropped += 1
                return
            depart = self._depart((src, dst, "ws"), len(data))
            self._transmit(
                src,
                dst,
                data,
                Link("ws", sender.id),
                depart,
                epoch=self._edge_epoch[edge],
                handshake=handshake,
            )
        elif link.transport == "udp":
            targets = [i for i in range(len(self.peers)) if i != src and self._reachable(src, i)]
            self.delta_frames += delta * len(targets)
            # One transmission reaches the whole group: the sender's lane is used once.
            depart = self._depart((src, -1, "udp"), len(data))
            for dst in targets:
                self._transmit(src, dst, data, Link("udp"), depart, epoch=-1, handshake=handshake)
        elif link.transport == "mqtt":
            if not (self.peers[src].mqtt and self._broker_reaches(src)):
                self.dropped += 1
                return
            if link.peer is not None:
                dst = self._by_id.get(link.peer)
                targets = [dst] if dst is not None and self.peers[dst].mqtt else []
            else:
                targets = [i for i, p in enumerate(self.peers) if i != src and p.mqtt]
            self.delta_frames += delta * len(targets)
            depart = self._depart((src, -1, "mqtt"), len(data))
            for dst in targets:
                self._transmit(src, dst, data, Link("mqtt"), depart, epoch=-2, handshake=handshake)

    def _depart(self, lane: tuple[int, int, str], size: int) -> float:
        """When a frame of ``size`` bytes has left the sender on ``lane``."""
        src, dst, transport = lane
        # NOTE: a broadcast lane takes the bandwidth of its sender's first rule match
        # (dst -1 matches no rule for a particular receiver): per-receiver bandwidth of one
        # multicast datagram is not modelled, as one datagram leaves the sender once.
        bandwidth = self._profile(src, dst, transport).bandwidth
        if bandwidth is None:
            return self.now
        depart = max(self.now, self._busy.get(lane, self.now)) + size / bandwidth
        self._busy[lane] = depart
        return depart

    def _transmit(
        self,
        src: int,
        dst: int,
        data: bytes,
        seen_as: Link,
        depart: float,
        *,
        epoch: int,
        handshake: bool = False,
    ) -> None:
        profile = self._profile(src, dst, seen_as.transport)
        rng = self.rng
        if profile.loss and rng.random() < profile.loss:
            self.dropped += 1
            return
        delay = profile.latency
        if profile.jitter:
            delay += rng.uniform(-profile.jitter, profile.jitter)
        if profile.reorder and rng.random() < profile.reorder:
            delay += rng.uniform(0.0, profile.reorder_delay)
        arrive = depart + max(0.0, delay)
        if epoch >= 0:
            # A ws link is one TCP stream: whatever the delay, frames arrive in order.
            lane = (src, dst)
            arrive = max(arrive, self._last_arrival.get(lane, arrive))
            self._last_arrival[lane] = arrive
        how = (seen_as, src, epoch, handshake)
        self._push(arrive, _DELIVER, dst, data, how)
        if profile.duplicate and rng.random() < profile.duplicate:
            extra = rng.uniform(0.0, max(profile.reorder_delay, profile.latency))
            self._push(arrive + extra, _DELIVER, dst, data, how)

    def _on_deliver(self, dst: int, data: bytes, how: tuple[Link, int, int, bool]) -> None:
        link, src, epoch, handshake = how
        peer = self.peers[dst]
        if peer.engine is None:
            return
        if epoch >= 0:
            edge = (min(src, dst), max(src, dst))
            if self._edge_epoch[edge] != epoch or not self._reachable(src, dst):
                return  # the connection this frame travelled on is gone
        elif epoch == -1 and self._side[src] != self._side[dst]:
            return  # a multicast datagram does not cross a partition
        elif epoch == -2 and not (peer.mqtt and self._broker_reaches(dst)):
            return  # the broker cannot hand it over any more
        peer.engine.receive(data, link, self._peer_now(peer))
        self._after(peer, handshake=handshake)

    def _reconcile(self, only: int | None = None) -> None:
        """Bring links and broker sessions in line with who can reach whom now.

        Args:
            only: the one peer whose state changed (all peers if None).
        """
        s = self.scenario
        edges = self._edges if only is None else self._neighbours.get(only, [])
        for edge in edges:
            a, b = edge
            can = self._reachable(a, b)
            up = self._edge_up[edge]
            if up and not can:
                self._edge_epoch[edge] += 1
                self._edge_up[edge] = False
                self._push(self.now + s.link_timeout, _LINK, edge, self._edge_epoch[edge], False)
            elif not up and can and self.now > EPOCH + s.start_spread:
                self._edge_epoch[edge] += 1
                at = self.now + self.rng.uniform(0.5, 1.0) * s.redial
                self._push(at, _LINK, edge, self._edge_epoch[edge], True)
        if "mqtt" in s.transports:
            for peer in self.peers if only is None else [self.peers[only]]:
                can = self._broker_reaches(peer.index)
                if peer.mqtt and not can:
                    peer.mqtt = False
                    self._mqtt_epoch[peer.index] += 1
                elif not peer.mqtt and can:
                    self._mqtt_epoch[peer.index] += 1
                    at = self.now + self.rng.uniform(0.5, 1.0) * s.redial
                    self._push(at, _MQTT, peer.index, self._mqtt_epoch[peer.index])

    def _on_link(self, edge: tuple[int, int], epoch: int, up: bool) -> None:
        if self._edge_epoch[edge] != epoch:
            return
        a, b = (self.peers[i] for i in edge)
        if up:
            if not self._reachable(*edge):
                return
            self._edge_up[edge] = True
            self._edge_epoch[edge] += 1
            for this, other in ((a, b), (b, a)):
                assert this.engine is not None
                this.engine.link_up(this.link(other.id), self._peer_now(this))
            self._after(a, handshake=True)
            self._after(b, handshake=True)
        else:
            for this, other in ((a, b), (b, a)):
                if this.engine is not None:
                    this.engine.link_down(this.link(other.id), self._peer_now(this))
                    self._after(this)

    def _on_mqtt(self, index: int, epoch: int) -> None:
        peer = self.peers[index]
        if self._mqtt_epoch[index] != epoch or peer.engine is None:
            return
        if not self._broker_reaches(index):
            return
        peer.mqtt = True
        # As the runtime does on every (re)connection: whatever was published while away
        # is lost to this peer, so it compares digests again soon.
        peer.engine.resync(self._peer_now(peer))
        self._after(peer)

    # ---------------------------------------------------------------------------- faults

    def _split(self, partition: Partition) -> None:
        s = self.scenario
        self.quiet_from = self.now
        sides = [len(partition.groups)] * s.peers
        for number, group in enumerate(partition.groups):
            for index in select(group, s.peers, s.groups):
                sides[index] = number
        self._side = sides
        self._broker_side = (
            None if partition.broker is None else list(partition.groups).index(partition.broker)
        )
        self._reconcile()

    def _heal(self) -> None:
        self.quiet_from = self.now
        self._side = [0] * self.scenario.peers
        self._broker_side = None
        self._reconcile()

    def _crash(self, index: int) -> None:
        peer = self.peers[index]
        if not peer.alive:
            return
        self.quiet_from = self.now
        for w in peer.crash():
            self.writes[w].crashed = True
            self.crash_lost += 1
        self._reconcile(index)

    def _restart(self, index: int) -> None:
        peer = self.peers[index]
        if peer.alive:
            return
        self.quiet_from = self.now
        self._start_peer(peer)
        if peer.host is not None:
            self._setup_host(peer)
        self._after(peer)

    def _set_broker(self, up: bool) -> None:
        self._broker_up = up
        self.quiet_from = self.now
        self._reconcile()

    # -------------------------------------------------------------------------- workload

    def _on_write(self, index: int, number: int) -> None:
        writer = self.scenario.writers[number]
        if self.now >= EPOCH + writer.stop:
            return
        peer = self.peers[index]
        if peer.alive:
            self._write(peer, writer)
            self._after(peer)
        self._push(self.now + self.rng.expovariate(writer.rate), _WRITE, index, number)

    def _target_doc(self, peer: SimPeer, writer: Writer) -> str:
        if writer.doc == "own" and peer.host is not None:
            return peer.host
        if writer.doc in ("own", "any"):
            return self.rng.choice(self.hosts)
        return self.hosts[int(writer.doc) % len(self.hosts)]

    def _write(self, peer: SimPeer, writer: Writer) -> None:
        assert peer.docs is not None
        host = self._target_doc(peer, writer)
        doc = peer.docs.docs.get(host)
        if doc is None or host not in doc:
            self.skipped += 1
            return
        origin = (
            Origin("", "local") if writer.origin == "local" else Origin("client", writer.origin)
        )
        projects = [n.id for n in doc.list_nodes(type=NodeType.Project)]
        action = writer.action
        peer.created += 1
        tag = f"{peer.name}.{peer.run}.{peer.created}"
        if action in ("edit", "edit-same"):
            target = (
                f"{host}-p0"
                if action == "edit-same"
                else (self.rng.choice(projects) if projects else None)
            )
            if target is None or target not in doc:
                self.skipped += 1
                return
            self._record(
                peer,
                doc,
                "edit",
                target,
                partial(doc.update, target, {"name": tag}, origin=origin),
                value=tag,
                field="name",
            )
        elif action in ("create", "create-child"):
            parent = host
            if action == "create-child":
                if not projects:
                    self.skipped += 1
                    return
                parent = self.rng.choice(projects)
            node = Node.new(NodeType.Project, host=host, parent=parent, id=tag, name=tag)
            self._record(
                peer, doc, action, tag, partial(doc.create, node, origin=origin), parent=parent
            )
        else:
            # The first project of each host is kept, so that edit-same always has a target.
            doomed = [p for p in projects if p != f"{host}-p0"]
            if not doomed:
                self.skipped += 1
                return
            target = self.rng.choice(doomed)
            self._record(peer, doc, "delete", target, lambda: doc.delete(target, origin=origin))

    def _record(
        self,
        peer: SimPeer,
        doc: HostDoc,
        action: str,
        node: str,
        write: Callable[[], Any],
        *,
        parent: str | None = None,
        value: str | None = None,
        field: str | None = None,
    ) -> None:
        before = read_state_vector(doc.state_vector())
        try:
            result = write()
        except (ValidationError, KrillError):
            # A write the model refuses (its parent vanished meanwhile): a user error.
            self.skipped += 1
            return
        assert peer.docs is not None
        client = peer.docs.docs[doc.host].doc.client_id
        clock = read_state_vector(doc.state_vector()).get(client, 0)
        record = WriteRecord(
            index=len(self.writes),
            peer=peer.index,
            time=self.now - EPOCH,
            doc=doc.host,
            action=action,
            node=node,
            value=value,
            parent=parent,
            client=client,
            clock=clock,
            seen=before,
            deleted=tuple(result) if action == "delete" else (),
            edit_of=field,
        )
        self.writes.append(record)
        self.quiet_from = self.now
        peer.unacked.append(record.index)

    # ----------------------------------------------------------------------- measurement

    def _settled(self, peer: SimPeer) -> float:
        """When a peer that ends with the final state began to hold it, on the sample grid.

        A replica only grows, so it has held its final state since its last change.
        """
        steps = math.ceil((peer.changed_at - EPOCH) / self.sample_interval - 1e-9)
        return EPOCH + max(0, steps) * self.sample_interval

    def _report(self) -> Report:
        s = self.scenario
        alive = [p for p in self.peers if p.alive]
        invariants: dict[str, Invariant] = {}

        # Step 1: convergence, on decoded content.
        contents = [p.content() for p in alive]
        reference = contents[0] if contents else {}
        differ = [p.name for p, c in zip(alive, contents, strict=True) if c != reference]
        missing = [
            p.name for p, c in zip(alive, contents, strict=True) if sorted(c) != sorted(self.hosts)
        ]
        converged = not differ and not missing and not self.storm
        detail = (
            f"{len(alive)} running peers hold equal content of {len(reference)} host docs"
            if converged
            else f"{len(differ)} peers differ from {alive[0].name if alive else '-'}"
            f" (first: {differ[:3]}); {len(missing)} lack a host doc"
        )
        invariants["convergence"] = Invariant("convergence", converged, detail)

        # Step 2: when the swarm converged for good, and each peer's lag.
        converged_at: float | None = None
        lag: dict[str, float | None] = {}
        settled = {p.index: self._settled(p) for p in alive}
        if converged:
            converged_at = max(settled.values(), default=None)
            for peer in sorted(self.peers, key=lambda p: p.name):
                at = settled.get(peer.index)
                lag[peer.name] = None if at is None else max(0.0, at - self.quiet_from) * 1000
        convergence_ms = (
            None if converged_at is None else max(0.0, converged_at - self.quiet_from) * 1000
        )

        # Step 3: lost acknowledged writes.
        for w in self.writes:
            if not w.crashed and self.peers[w.peer].alive:
                w.acked = True  # a running peer commits everything before the check
        lost = []
        if alive:
            docs = alive[0].docs
            assert docs is not None
            final_sv = {h: read_state_vector(d.state_vector()) for h, d in docs.docs.items()}
            final_nodes = {h: d.nodes.to_py() or {} for h, d in docs.docs.items()}
            lost = lost_writes(self.writes, final_sv, final_nodes) if converged else []
        acked = sum(w.acked for w in self.writes)
        example = "" if not lost else f"; first: {lost[0][0].action} of {lost[0][0].node}"
        invariants["no-lost-writes"] = Invariant(
            "no-lost-writes",
            converged and not lost,
            (
                f"{len(lost)} of {acked} acknowledged writes lost{example}"
                if converged
                else "not checked: the swarm did not converge"
            ),
        )

        # Step 4: traffic.
        updates = len(self.writes)
        per_update = self.delta_frames / updates if updates else 0.0
        bound = 2 * s.peers
        invariants["frames-per-update"] = Invariant(
            "frames-per-update",
            per_update <= bound,
            f"{per_update:.2f} delta frames per update (bound {bound})",
        )
        quiescent = self.quiet_deltas == 0 and not self.storm
        invariants["quiescence"] = Invariant(
            "quiescence",
            quiescent,
            f"{self.quiet_deltas} delta frames in the last {s.quiet_window:g} s"
            + ("; stopped early: traffic budget exceeded" if self.storm else ""),
        )
        invariants["bounded-traffic"] = Invariant(
            "bounded-traffic",
            not self.storm,
            f"{self.frames_sent} frames sent (budget {self.budget})",
        )
        return Report(
            scenario=s.name,
            seed=self.seed,
            peers=s.peers,
            hosts=len(self.hosts),
            converged=converged,
            convergence_ms=convergence_ms,
            updates=updates,
            frames_sent=self.frames_sent,
            delta_frames=self.delta_frames,
            handshake_frames=self.handshake_frames,
            frames_per_update=per_update,
            delta_frames_per_receiver=per_update / (s.peers - 1),
            lost_writes=len(lost),
            quiescent=quiescent,
            invariants=invariants,
            virtual_seconds=self.now - EPOCH,
            frames_by_kind=dict(self.frames_by_kind),
            frames_dropped=self.dropped,
            skipped_writes=self.skipped,
            writes_lost_in_crash=self.crash_lost,
            faults=sorted(s.faults),
            lag_ms=lag,
            series=self._series(settled if converged else {}),
        )

    def _series(self, settled: dict[int, float]) -> dict[str, Any]:
        steps = int((self.now - EPOCH) / self.sample_interval + 1e-9)
        grid = [EPOCH + k * self.sample_interval for k in range(steps + 1)]
        ordered = sorted(settled.values())
        converged = [(at - EPOCH, bisect.bisect_right(ordered, at + 1e-9)) for at in grid]
        last = int(self.now - EPOCH) + 1
        return {
            "converged": converged,
            "frames_per_second": [(t, self.frames_per_second.get(t, 0)) for t in range(last)],
            "spans": list(self.spans),
            "quiet_from": self.quiet_from - EPOCH,
        }


def _send_key(send: Send) -> tuple[str, bytes]:
    return (send.link.transport, send.link.peer or b"")


def run(scenario: Scenario, seed: int = 0, **kwargs: Any) -> Report:
    """Run one scenario with one seed and return its report (see :class:`Simulation`)."""
    return Simulation(scenario, seed, **kwargs).run()
