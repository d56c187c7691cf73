"""Propagation cases: how fast a write on one peer shows on another, against what users would
pick instead.

Ours ("compiled" column): two real :class:`~krill_crdt.runtime.peer.Peer` objects in one event
loop, with their stores in a temporary directory, linked over a WebSocket peer link (the
reader dials the writer as a static peer, multicast off) or through a Mosquitto broker
(broker-only peers: no multicast, no WebSocket links). A write is ``Peer.update`` of one node's
name on the writer; it counts as arrived when the update is applied to the reader's copy of
the writer's host doc (timestamp taken inside the reader's commit).

Baselines ("python" column):

* WebSocket: pycrdt-websocket's ``WebsocketServer`` behind Hypercorn in another process, and
  two ``pycrdt.Provider`` clients on one room in this process. A write is one map assignment
  on client 1; it has arrived when client 2's doc commits it. The relay is an extra hop ours
  does not have: that is the architecture a user of the baseline gets.
* MQTT: two plain aiomqtt clients (TCP_NODELAY on, as ours) on the same broker; a write is one
  map assignment on a pycrdt doc whose update bytes are published with QoS 1, and it has
  arrived when the subscriber has applied them to its own doc.

``ws_latency_p50_ms`` and ``mqtt_latency_p50_ms`` time writes one at a time (each waits for
the previous to arrive) after a warm-up. ``ws_burst`` and ``mqtt_burst`` start 10,000 writes
at once and time until the last has arrived (ours also until every write is durable on the
writer). Our peer merges the writes made in one loop iteration into one delta, so its burst is
one frame; the baselines send one message per write.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from pycrdt import Doc, Map, Provider, TransactionEvent

from krill_crdt.benchmarks import Batch, Case, Variant
from krill_crdt.benchmarks._broker import BenchBroker
from krill_crdt.benchmarks._rig import ArrivalProbe, LatencyStats, LoopRig, PeerPair, latency_stats
from krill_crdt.benchmarks._rig import wait_until as _wait_until
from krill_crdt.benchmarks._yrelay import AiohttpChannel, RelayProcess
from krill_crdt.benchmarks.runner import CaseResult, VariantResult

__all__ = ["BURST_WRITES", "CASES", "LatencyCase", "LatencyResult", "measure_latency"]

#: Writes of one burst.
BURST_WRITES = 10_000
#: Writes timed before the samples count: the first ones pay for cold connections and caches.
WARMUP_WRITES = 30
#: Writes per block; ours and the baseline alternate blocks so that noise lands on both.
BLOCK_WRITES = 25
#: At least this many timed writes per side, whatever the budget (a p99 needs a hundred).
MIN_SAMPLES = 200
#: Sequential writes of one runner batch when the runner times a latency case as throughput.
HOPS_PER_BATCH = 50
#: In-flight QoS 1 publishes of the MQTT burst baseline: the window our transport uses, so the
#: baseline is not slowed down by waiting for each acknowledgement in turn.
BASELINE_PUBLISH_WINDOW = 16
SETUP_TIMEOUT = 20.0


class Side(Protocol):
    """One end-to-end set-up that can time single writes and bursts."""

    async def hop(self, value: str) -> float:
        """Make one write and wait until it arrived; return the seconds it took."""
        ...

    async def burst(self, count: int, tag: str) -> None:
        """Start ``count`` writes at once and wait until the last arrived."""
        ...


# ----------------------------------------------------------------------------------- ours


class OursSide:
    """Two krill peers; see the module docstring."""

    def __init__(self, pair: PeerPair) -> None:
        self.pair = pair

    @classmethod
    async def start(cls, rig: LoopRig, transport: str) -> OursSide:
        url = ""
        if transport == "mqtt":
            broker = BenchBroker().start()
            rig.on_close(broker.stop)
            url = broker.url
        return cls(await PeerPair.start(rig, transport, url))

    async def hop(self, value: str) -> float:
        began = time.perf_counter()
        self.pair.write(value)
        return await self.pair.wait_applied(value) - began

    async def burst(self, count: int, tag: str) -> None:
        for i in range(count):
            self.pair.write(f"{tag}-{i}")
        await self.pair.wait_applied(f"{tag}-{count - 1}")
        await self.pair.settle()


# ------------------------------------------------------------------------------ baselines


class _TwoDocs:
    """A writer doc and a reader doc with an arrival probe on the reader."""

    def __init__(self) -> None:
        self.doc1: Doc[Any] = Doc()
        self.doc2: Doc[Any] = Doc()
        self.map1: Map[Any] = self.doc1.get("m", type=Map)
        self.map2: Map[Any] = self.doc2.get("m", type=Map)
        self.probe = ArrivalProbe()
        self._sub = self.doc2.observe(self.probe.mark)

    def arrived(self, value: str) -> Callable[[], bool]:
        return lambda: self.map2.get("k") == value


class YWebsocketSide(_TwoDocs):
    """pycrdt-websocket relay in a child process, two Providers here."""

    @classmethod
    async def start(cls, rig: LoopRig) -> YWebsocketSide:
        import aiohttp

        side = cls()
        relay = RelayProcess()
        await asyncio.to_thread(relay.start)
        rig.on_close(relay.stop)
        session = aiohttp.ClientSession()
        rig.on_close(session.close)
        for doc in (side.doc1, side.doc2):
            ws = await session.ws_connect(relay.url("bench"), autoping=True)
            # Our peer links turn Nagle off; a fair baseline gets the same.
            _nodelay(ws.get_extra_info("socket"))
            provider = Provider(doc, AiohttpChannel(ws, "bench"))
            task = asyncio.get_running_loop().create_task(provider.start())
            await asyncio.wait_for(provider.started.wait(), SETUP_TIMEOUT)
            rig.on_close(_stopper(provider, task, ws.close))
        side.map1["k"] = "ready"
        await _wait_until(side.arrived("ready"), SETUP_TIMEOUT, "pycrdt-websocket clients syncing")
        return side

    async def hop(self, value: str) -> float:
        began = time.perf_counter()
        self.map1["k"] = value
        return await self.probe.wait(self.arrived(value)) - began

    async def burst(self, count: int, tag: str) -> None:
        for i in range(count):
            self.map1["k"] = f"{tag}-{i}"
        await self.probe.wait(self.arrived(f"{tag}-{count - 1}"))


def _stopper(
    provider: Provider, task: asyncio.Task[None], close: Callable[[], Coroutine[Any, Any, Any]]
) -> Callable[[], Coroutine[Any, Any, None]]:
    async def stop() -> None:
        with contextlib.suppress(Exception):
            await provider.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await close()

    return stop


def _nodelay(sock: object) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class AiomqttSide(_TwoDocs):
    """Plain aiomqtt publish and subscribe of pycrdt update bytes through a Mosquitto."""

    TOPIC = "bench/doc/update"

    def __init__(self) -> None:
        super().__init__()
        self.outbox: list[bytes] = []
        self._out_sub = self.doc1.observe(self._capture)
        self.publisher: Any = None

    def _capture(self, event: TransactionEvent) -> None:
        self.outbox.append(event.update)

    @classmethod
    async def start(cls, rig: LoopRig) -> AiomqttSide:
        import aiomqtt

        side = cls()
        broker = BenchBroker().start()
        rig.on_close(broker.stop)
        options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        stack = contextlib.AsyncExitStack()
        rig.on_close(stack.aclose)
        publisher = aiomqtt.Client("127.0.0.1", broker.port, socket_options=options)
        subscriber = aiomqtt.Client(
            "127.0.0.1", broker.port, socket_options=options, max_queued_incoming_messages=0
        )
        # The burst keeps a full window of publishes pending; aiomqtt would warn on each one.
        publisher.pending_calls_threshold = BASELINE_PUBLISH_WINDOW + 1
        side.publisher = await stack.enter_async_context(publisher)
        await stack.enter_async_context(subscriber)
        await subscriber.subscribe(cls.TOPIC, qos=1)

        async def read() -> None:
            async for message in subscriber.messages:
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                side.doc2.apply_update(bytes(payload))

        reader = asyncio.get_running_loop().create_task(read())

        async def stop_reader() -> None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

        rig.on_close(stop_reader)
        await side.hop("ready")
        return side

    async def hop(self, value: str) -> float:
        began = time.perf_counter()
        self.map1["k"] = value
        update = self.outbox.pop()
        await self.publisher.publish(self.TOPIC, update, qos=1)
        return await self.probe.wait(self.arrived(value)) - began

    async def burst(self, count: int, tag: str) -> None:
        for i in range(count):
            self.map1["k"] = f"{tag}-{i}"
        updates, self.outbox = self.outbox, []
        for start in range(0, len(updates), BASELINE_PUBLISH_WINDOW):
            chunk = updates[start : start + BASELINE_PUBLISH_WINDOW]
            await asyncio.gather(*(self.publisher.publish(self.TOPIC, u, qos=1) for u in chunk))
        await self.probe.wait(self.arrived(f"{tag}-{count - 1}"))


# ------------------------------------------------------------------------------ starting


SideStarter = Callable[[LoopRig], Coroutine[Any, Any, Side]]


async def _ours_ws(rig: LoopRig) -> Side:
    return await OursSide.start(rig, "ws")


async def _ours_mqtt(rig: LoopRig) -> Side:
    return await OursSide.start(rig, "mqtt")


async def _base_ws(rig: LoopRig) -> Side:
    return await YWebsocketSide.start(rig)


async def _base_mqtt(rig: LoopRig) -> Side:
    return await AiomqttSide.start(rig)


def _open(starter: SideStarter) -> tuple[LoopRig, Side]:
    """Start a side on a fresh rig; an ImportError (baseline not installed) closes the rig."""
    rig = LoopRig()
    try:
        side = rig.run(starter(rig))
    except BaseException:
        rig.close()
        raise
    return rig, side


class _Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> str:
        self.value += 1
        return str(self.value)


def _hops_variant(starter: SideStarter) -> Variant:
    """Sequential writes as throughput: what the runner can time without a measure hook."""

    def factory() -> Batch:
        rig, side = _open(starter)
        counter = _Counter()

        async def hops() -> int:
            for _ in range(HOPS_PER_BATCH):
                await side.hop(counter.next())
            return HOPS_PER_BATCH

        return rig.batch(hops)

    return factory


def _burst_variant(starter: SideStarter) -> Variant:
    def factory() -> Batch:
        rig, side = _open(starter)
        counter = _Counter()

        async def burst() -> int:
            await side.burst(BURST_WRITES, f"burst{counter.next()}")
            return BURST_WRITES

        return rig.batch(burst)

    return factory


# ------------------------------------------------------------------------------ latency


@dataclass(frozen=True, slots=True)
class LatencyResult(CaseResult):
    """A latency entry: figures in milliseconds, ratio = baseline / ours (> 1: we are faster).

    ``extras`` are written as further JSON keys (p99, warm-up worst, sample counts).
    """

    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        ours, baseline = self.compiled.ops_s, self.python.ops_s
        if ours is None or baseline is None or ours <= 0:
            return None
        return baseline / ours

    def to_json(self) -> dict[str, Any]:
        entry = CaseResult.to_json(self)
        entry.update(self.extras)
        return entry


def measure_latency(
    ours: SideStarter, baseline: SideStarter, budget_s: float
) -> tuple[LatencyStats | str, LatencyStats | str]:
    """Time single writes on both sides, alternating blocks, for ``budget_s`` each.

    Each side is started on its own rig, warmed up with :data:`WARMUP_WRITES` writes, then
    timed in blocks of :data:`BLOCK_WRITES` until it has spent its budget and has at least
    :data:`MIN_SAMPLES` samples. Both rigs are closed before this returns.

    Returns:
        Per side, its statistics, or why it was not run (the ImportError's message).
    """
    rigs: dict[str, tuple[LoopRig, Side]] = {}
    outcome: dict[str, LatencyStats | str] = {}
    try:
        for label, starter in (("ours", ours), ("baseline", baseline)):
            try:
                rigs[label] = _open(starter)
            except ImportError as exc:
                outcome[label] = str(exc)
        counter = _Counter()
        warm: dict[str, list[float]] = {label: [] for label in rigs}
        samples: dict[str, list[float]] = {label: [] for label in rigs}
        spent: dict[str, float] = dict.fromkeys(rigs, 0.0)

        async def block(side: Side, count: int, into: list[float]) -> None:
            for _ in range(count):
                into.append(await side.hop(counter.next()))

        for label, (rig, side) in rigs.items():
            rig.run(block(side, WARMUP_WRITES, warm[label]))
        while True:
            pending = [
                label
                for label in rigs
                if spent[label] < budget_s or len(samples[label]) < MIN_SAMPLES
            ]
            if not pending:
                break
            label = min(pending, key=lambda name: spent[name])
            rig, side = rigs[label]
            began = time.perf_counter()
            rig.run(block(side, BLOCK_WRITES, samples[label]))
            spent[label] += time.perf_counter() - began
        for label in rigs:
            outcome[label] = latency_stats(samples[label], warm[label])
    finally:
        for rig, _side in rigs.values():
            rig.close()
    return outcome["ours"], outcome["baseline"]


def _variant_result(stats: LatencyStats | str, skipped: str) -> VariantResult:
    if skipped:
        return VariantResult(None, skipped=skipped)
    if isinstance(stats, str):
        return VariantResult(None, skipped=f"not built ({stats})")
    return VariantResult(stats.p50_ms, stats.p50_ms / 1e3, stats.samples, 1)


def _extras(label: str, stats: LatencyStats | str) -> dict[str, Any]:
    if isinstance(stats, str):
        return {}
    return {
        f"{label}_p99_ms": stats.p99_ms,
        f"{label}_mean_ms": stats.mean_ms,
        f"{label}_warmup_worst_ms": stats.warmup_worst_ms,
        f"{label}_samples": stats.samples,
    }


@dataclass(frozen=True, slots=True)
class LatencyCase(Case):
    """A case whose figure is a latency, not a throughput.

    A runner that knows latency cases calls ``measure(budget_s, skip_compiled)`` and gets a
    :class:`LatencyResult` in milliseconds. A runner that does not times ``compiled`` and
    ``python`` like any case: sequential one-hop writes per second, ``1000 / mean ms``.
    """

    ours: SideStarter | None = None
    baseline: SideStarter | None = None
    latency_note: str = ""

    def measure(self, budget_s: float, skip_compiled: str = "") -> LatencyResult:
        """Measure both sides' latencies; see :func:`measure_latency`."""
        assert self.ours is not None and self.baseline is not None
        ours_stats, base_stats = measure_latency(
            _skipping(self.ours, skip_compiled), self.baseline, budget_s
        )
        extras = {**_extras("compiled", ours_stats), **_extras("python", base_stats)}
        return LatencyResult(
            self.name,
            "ms",
            self.latency_note,
            _variant_result(ours_stats, skip_compiled),
            _variant_result(base_stats, ""),
            extras,
        )


def _skipping(starter: SideStarter, why: str) -> SideStarter:
    if not why:
        return starter

    async def refuse(rig: LoopRig) -> Side:
        raise ImportError(why)

    return refuse


CASES: list[Case] = [
    LatencyCase(
        "ws_latency_p50_ms",
        "hops/s",
        compiled=_hops_variant(_ours_ws),
        python=_hops_variant(_base_ws),
        note="one write at a time, writer to reader over WebSocket; as sequential hops/s",
        ours=_ours_ws,
        baseline=_base_ws,
        latency_note=(
            "p50 ms of one write, Peer.update on A until applied on B over a peer link, vs "
            "pycrdt-websocket relay (other process) between two Providers; ratio >1: we are faster"
        ),
    ),
    LatencyCase(
        "mqtt_latency_p50_ms",
        "hops/s",
        compiled=_hops_variant(_ours_mqtt),
        python=_hops_variant(_base_mqtt),
        note="one write at a time, writer to reader through Mosquitto; as sequential hops/s",
        ours=_ours_mqtt,
        baseline=_base_mqtt,
        latency_note=(
            "p50 ms of one write through Mosquitto, broker-only peers vs aiomqtt QoS 1 "
            "publish/subscribe of the update bytes; ratio >1: we are faster"
        ),
    ),
    Case(
        "ws_burst",
        "writes/s",
        compiled=_burst_variant(_ours_ws),
        python=_burst_variant(_base_ws),
        note=(
            "10,000 writes started at once until all applied on the reader; ours merges them "
            "into one delta, pycrdt-websocket sends 10,000 messages through its relay"
        ),
    ),
    Case(
        "mqtt_burst",
        "writes/s",
        compiled=_burst_variant(_ours_mqtt),
        python=_burst_variant(_base_mqtt),
        note=(
            "10,000 writes through Mosquitto until all applied; ours merges them into one delta, "
            "aiomqtt publishes one QoS 1 message per write (16 in flight)"
        ),
    ),
]
