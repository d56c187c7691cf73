"""What the propagation and ingest cases share: an event loop per variant, peer pairs, arrival
probes and latency statistics.

The benchmark runner calls a variant's factory and then its batch synchronously, and has no
tear-down hook. A :class:`LoopRig` therefore owns a private event loop for one variant: the
factory starts everything on it, each batch runs one coroutine on it to completion, and the
rig stops what was started once the batch is no longer referenced (the runner drops it as soon
as the case ends) or at interpreter exit, whichever comes first.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import shutil
import tempfile
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from krill_crdt.benchmarks import Batch
from krill_crdt.model import Node, NodeType
from krill_crdt.runtime.config import (
    DiscoveryConfig,
    HttpConfig,
    MqttConfig,
    PeerConfig,
    PeerSection,
)
from krill_crdt.runtime.peer import Peer
from krill_crdt.store import HostDoc, Origin

__all__ = [
    "ArrivalProbe",
    "LatencyStats",
    "LoopRig",
    "PeerPair",
    "latency_stats",
    "wait_until",
]

T = TypeVar("T")

#: Longest a pair of peers may take to link up and exchange host docs. It takes about 50 ms
#: over WebSocket and 100 ms through a broker here; a loaded 2-core machine can be far slower.
CONNECT_TIMEOUT = 20.0
#: Longest one write may take to arrive. A hop takes about a millisecond; anything near this
#: means the write was lost, and the benchmark should say so rather than hang.
ARRIVAL_TIMEOUT = 10.0

Cleanup = Callable[[], Awaitable[None] | None]


class LoopRig:
    """A private event loop for one benchmark variant, and what must be stopped on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._cleanups: list[Cleanup] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="krill-bench-"))

    def run(self, job: Coroutine[Any, Any, T]) -> T:
        """Run ``job`` on the rig's loop to completion and return its result."""
        return self.loop.run_until_complete(job)

    def on_close(self, cleanup: Cleanup) -> None:
        """Call ``cleanup`` (sync or async) when the rig closes; last registered runs first."""
        self._cleanups.append(cleanup)

    def close(self) -> None:
        """Run every cleanup, close the loop, remove the working directory. Idempotent."""
        if self.loop.is_closed():
            return
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                result = cleanup()
                if result is not None:
                    self.loop.run_until_complete(asyncio.wait_for(_awaited(result), 10.0))
            except Exception:  # keep stopping the rest: leave nothing running
                continue
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def batch(self, job: Callable[[], Coroutine[Any, Any, int]]) -> Batch:
        """Return a runner batch that runs ``job()`` on the loop; the rig closes with it."""

        def batch() -> int:
            return self.run(job())

        weakref.finalize(batch, self.close)
        return batch


async def _awaited(result: Awaitable[None]) -> None:
    await result


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every millisecond until it holds.

    Raises:
        TimeoutError: it did not hold within ``timeout`` seconds; ``what`` says what was awaited.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(0.001)


class ArrivalProbe:
    """Notes when remote writes land in a document and lets a coroutine wait for one.

    ``mark`` is called from inside the document's commit (an update listener or observer), so
    the timestamp is taken when the update is applied, not when a waiting task next runs.
    Because a commit may also be an unrelated no-op (an anti-entropy diff with nothing new),
    :meth:`wait` checks the document itself before it accepts an arrival.
    """

    __slots__ = ("_event", "last")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.last = 0.0

    def mark(self, *_: object) -> None:
        self.last = time.perf_counter()
        self._event.set()

    async def wait(self, arrived: Callable[[], bool], timeout: float = ARRIVAL_TIMEOUT) -> float:
        """Wait until ``arrived()`` holds after a commit; return that commit's time.

        Raises:
            TimeoutError: nothing matching arrived within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if arrived():
                return self.last
            self._event.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"write not applied within {timeout} s")
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except TimeoutError:
                if arrived():
                    return self.last
                raise TimeoutError(f"write not applied within {timeout} s") from None


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """One-hop latencies of a measurement, in milliseconds.

    Attributes:
        p50_ms, p99_ms: percentiles of the timed samples.
        mean_ms: their mean.
        samples: how many were timed (the warm-up excluded).
        warmup_worst_ms: the slowest warm-up sample (a cold connection, first-use costs).
    """

    p50_ms: float
    p99_ms: float
    mean_ms: float
    samples: int
    warmup_worst_ms: float


def _percentile(ordered: Sequence[float], share: float) -> float:
    # Nearest rank: the smallest sample with at least ``share`` of all samples at or below it.
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def latency_stats(samples_s: Sequence[float], warmup_s: Sequence[float]) -> LatencyStats:
    """Summarise latencies given in seconds.

    Raises:
        ValueError: no timed samples.
    """
    if not samples_s:
        raise ValueError("no latency samples")
    ordered = sorted(samples_s)
    return LatencyStats(
        p50_ms=_percentile(ordered, 0.50) * 1e3,
        p99_ms=_percentile(ordered, 0.99) * 1e3,
        mean_ms=sum(ordered) / len(ordered) * 1e3,
        samples=len(ordered),
        warmup_worst_ms=max(warmup_s, default=0.0) * 1e3,
    )


#: The node every propagation write changes, on the writing peer's host doc.
PROBE_NODE = "bench-probe"


class PeerPair:
    """Two real peers in one event loop, linked over WebSocket or through an MQTT broker.

    ``writer`` writes, ``reader`` receives; :meth:`write` changes the probe node's name and
    :meth:`wait_applied` waits until the reader's copy of the writer's host doc shows it.
    """

    def __init__(self, writer: Peer, reader: Peer) -> None:
        self.writer = writer
        self.reader = reader
        self.probe = ArrivalProbe()
        self._acks: set[asyncio.Task[Node]] = set()

    @classmethod
    async def start(cls, rig: LoopRig, transport: str, broker_url: str = "") -> PeerPair:
        """Start two peers on ``rig``'s loop and wait until the reader holds the probe node.

        Over ``"ws"`` multicast is off and the reader dials the writer as a static peer; over
        ``"mqtt"`` both are broker-only (no multicast, no WebSocket links). Everything listens
        on and talks to 127.0.0.1 only.
        """
        key = rig.workdir / "swarm.key"
        key.write_bytes(secrets.token_bytes(32))

        def config(name: str, static: tuple[str, ...] = ()) -> PeerConfig:
            if transport == "ws":
                discovery = DiscoveryConfig(multicast=False, static_peers=static)
                mqtt = MqttConfig()
            else:
                discovery = DiscoveryConfig(multicast=False, peer_links=False)
                mqtt = MqttConfig(url=broker_url)
            return PeerConfig(
                peer=PeerSection(
                    name=name, data_dir=rig.workdir / name, swarm="bench", swarm_key_file=key
                ),
                http=HttpConfig(listen="127.0.0.1:0"),
                discovery=discovery,
                mqtt=mqtt,
            )

        writer = Peer(config("writer"))
        rig.on_close(writer.stop)
        await writer.start()
        reader = Peer(config("reader", (writer.url,) if transport == "ws" else ()))
        rig.on_close(reader.stop)
        await reader.start()
        pair = cls(writer, reader)
        rig.on_close(pair.settle)

        await writer.create(
            Node.new(NodeType.Project, host="writer", parent="writer", id=PROBE_NODE, name="0")
        )
        await wait_until(
            lambda: "writer" in reader.store.hosts() and PROBE_NODE in reader.store.doc("writer"),
            CONNECT_TIMEOUT,
            f"{transport} peers exchanging host docs",
        )
        remote: HostDoc = reader.store.doc("writer")

        def on_update(update: bytes, origin: Origin) -> None:
            if not origin.is_local:
                pair.probe.mark()

        remote.on_update(on_update)
        return pair

    def write(self, value: str) -> None:
        """Start ``Peer.update`` of the probe node; its durable acknowledgement is kept."""
        task = asyncio.get_running_loop().create_task(
            self.writer.update(PROBE_NODE, {"name": value})
        )
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    def applied(self, value: str) -> Callable[[], bool]:
        """Return a check that the reader's copy of the probe node carries ``value``."""
        # NOTE: read from the map itself, not through HostDoc.get: its node cache relies on
        # the deep observer, which pycrdt does not fire for a node whose host doc reached this
        # peer out of order (a delta ahead of the diff that holds the node's creation), so
        # the cached node can stay stale there.
        entry = self.reader.store.doc("writer").nodes[PROBE_NODE]
        return lambda: entry.get("name") == value

    async def wait_applied(self, value: str) -> float:
        """Wait until the reader shows ``value``; return when it was applied (perf_counter)."""
        return await self.probe.wait(self.applied(value))

    async def settle(self) -> None:
        """Wait until every write so far is durable on the writer."""
        if self._acks:
            await asyncio.gather(*self._acks)
