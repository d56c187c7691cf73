"""Real peers on loopback: multicast discovery, WebSocket links, convergence, no storms."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from krill_crdt.model import Node, NodeState, NodeType
from krill_crdt.runtime.config import DiscoveryConfig, HttpConfig, PeerConfig, PeerSection
from krill_crdt.runtime.peer import Peer
from krill_crdt.store import Store
from tests.runtime.test_executor import Recorder

pytestmark = pytest.mark.timeout(120)


class Swarm:
    """Peers sharing one swarm key and one multicast group on the loopback interface."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.key = root / "swarm.key"
        self.key.write_bytes(random.randbytes(32))
        self.key.chmod(0o600)
        self.group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
        self.port = random.randint(20_000, 32_000)
        self.peers: list[Peer] = []

    def config(self, name: str) -> PeerConfig:
        return PeerConfig(
            peer=PeerSection(
                name=name, data_dir=self.root / name, swarm="test", swarm_key_file=self.key
            ),
            http=HttpConfig(listen="127.0.0.1:0"),
            discovery=DiscoveryConfig(group=self.group, port=self.port, interface="127.0.0.1"),
        )

    async def start(self, name: str) -> Peer:
        peer = await Peer(self.config(name)).start()
        self.peers.append(peer)
        return peer

    async def stop(self, peer: Peer) -> None:
        await peer.stop()
        self.peers.remove(peer)


@pytest.fixture
async def swarm(tmp_path: Path) -> AsyncIterator[Swarm]:
    group = Swarm(tmp_path)
    yield group
    for peer in list(group.peers):
        await peer.stop()


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll until the predicate holds; return the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def contents(peers: list[Peer]) -> list[dict[str, object]]:
    return [{h: d.nodes.to_py() for h, d in sorted(p.store.docs().items())} for p in peers]


def converged(peers: list[Peer], hosts: int) -> bool:
    views = contents(peers)
    return all(len(v) == hosts for v in views) and all(v == views[0] for v in views)


def linked(peers: list[Peer]) -> bool:
    return all(len(p.engine.links()) == len(peers) - 1 for p in peers)


def frames(peers: list[Peer], metric: str, transport: str, kind: str) -> float:
    return sum(p.metrics.value(metric, transport=transport, kind=kind) for p in peers)


def project(peer: Peer, node_id: str, parent: str | None = None) -> Node:
    return Node.new(
        NodeType.Project, host=peer.host, parent=parent or peer.host, id=node_id, name=node_id
    )


async def test_three_peers_find_each_other_by_multicast_and_share_every_host_doc(
    swarm: Swarm,
) -> None:
    peers = [await swarm.start(name) for name in ("alpha", "bravo", "charlie")]
    for peer in peers:
        await peer.create(project(peer, f"{peer.host}-project"))
        await peer.create(project(peer, f"{peer.host}-child", parent=f"{peer.host}-project"))

    await wait_for(lambda: converged(peers, hosts=3))

    for peer in peers:
        for other in peers:
            assert peer.get(f"{other.host}-child").parent == f"{other.host}-project"


async def test_concurrent_edits_of_one_node_converge_and_then_traffic_stops(swarm: Swarm) -> None:
    a, b = await swarm.start("alpha"), await swarm.start("bravo")
    await a.create(project(a, "shared"))
    await wait_for(lambda: linked([a, b]) and converged([a, b], hosts=2))

    at_start = frames([a, b], "krill_frames_sent_total", "ws", "update")
    for round_ in range(20):
        await asyncio.gather(
            a.update("shared", {"name": f"alpha {round_}"}),
            b.update("shared", {"state": NodeState.WARN if round_ % 2 else NodeState.INFO}),
        )
    await wait_for(lambda: converged([a, b], hosts=2))

    # Quiet: no delta frame in two active beacon periods after the last write.
    before = frames([a, b], "krill_frames_sent_total", "ws", "update")
    await asyncio.sleep(2 * 1.0 + 0.5)
    after = frames([a, b], "krill_frames_sent_total", "ws", "update")
    print(f"update frames for 40 concurrent writes: {before - at_start:.0f}; then quiet")
    assert after == before
    assert contents([a, b])[0] == contents([a, b])[1]


async def test_one_update_among_five_peers_arrives_at_most_once_per_transport(
    swarm: Swarm,
) -> None:
    peers = [await swarm.start(f"peer{i}") for i in range(5)]
    await wait_for(lambda: linked(peers) and converged(peers, hosts=5), timeout=20)
    await asyncio.sleep(0.5)
    before = {
        (p.host, t): p.metrics.value("krill_frames_received_total", transport=t, kind="update")
        for p in peers
        for t in ("ws", "udp")
    }

    await peers[0].create(project(peers[0], "one-update"))
    await wait_for(lambda: all("one-update" in p.store.doc(peers[0].host) for p in peers))
    await asyncio.sleep(0.5)

    for p in peers[1:]:
        for t in ("ws", "udp"):
            got = p.metrics.value("krill_frames_received_total", transport=t, kind="update")
            print(f"{p.host} received {got - before[(p.host, t)]:.0f} over {t}")
            assert got - before[(p.host, t)] <= 1, (p.host, t)


async def test_a_peer_cut_off_catches_up_and_keeps_its_own_offline_edits(swarm: Swarm) -> None:
    a, b, c = [await swarm.start(n) for n in ("alpha", "bravo", "charlie")]
    peers = [a, b, c]
    await a.create(project(a, "n"))
    await wait_for(lambda: converged(peers, hosts=3))

    # Cut charlie off; both sides edit.
    await swarm.stop(c)
    await a.update("n", {"name": "majority"})
    async with Store(swarm.root / "charlie") as offline:
        await offline.update("n", {"state": NodeState.SEVERE})

    c = await swarm.start("charlie")
    took = await wait_for(lambda: converged([a, b, c], hosts=3))
    print(f"charlie converged {took * 1000:.0f} ms after restarting")

    node = a.get("n")
    assert (node.name, node.state) == ("majority", NodeState.SEVERE)
    # One active beacon period plus a round trip, with room for the link to be dialled.
    assert took < 1.0 + 2.0


async def test_static_peers_link_up_without_multicast(tmp_path: Path) -> None:
    key = tmp_path / "swarm.key"
    key.write_bytes(random.randbytes(32))

    def config(name: str, static: tuple[str, ...] = ()) -> PeerConfig:
        return PeerConfig(
            peer=PeerSection(
                name=name, data_dir=tmp_path / name, swarm="static", swarm_key_file=key
            ),
            http=HttpConfig(listen="127.0.0.1:0"),
            discovery=DiscoveryConfig(multicast=False, static_peers=static),
        )

    a = await Peer(config("alpha")).start()
    b = await Peer(config("bravo", static=(a.url,))).start()
    try:
        await b.create(project(b, "from-bravo"))
        await wait_for(lambda: linked([a, b]) and converged([a, b], hosts=2))
        assert a.get("from-bravo").host == "bravo"
    finally:
        await b.stop()
        await a.stop()


async def test_an_invoke_from_another_peer_runs_once_on_the_host(tmp_path: Path) -> None:
    recorder = Recorder()
    swarm = Swarm(tmp_path)

    async def start(name: str) -> Peer:
        peer = await Peer(swarm.config(name), processors=dict.fromkeys(NodeType, recorder)).start()
        swarm.peers.append(peer)
        return peer

    a, b = await start("alpha"), await start("bravo")
    try:
        await a.create(Node.new(NodeType.Button, host=a.host, parent=a.host, id="press", meta={}))
        await wait_for(lambda: linked([a, b]) and converged([a, b], hosts=2))

        assert await b.invoke("press") is None  # routed to alpha, its host
        await wait_for(lambda: recorder.runs["press"] == 1)
        await asyncio.sleep(0.5)

        assert recorder.runs["press"] == 1
        assert a.metrics.value("krill_node_executions_total", type="Button") == 1
        assert b.metrics.value("krill_node_executions_total", type="Button") == 0
    finally:
        for peer in (a, b):
            await peer.stop()
        swarm.peers.clear()
