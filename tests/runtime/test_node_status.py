"""Results a host keeps in its nodes, seen by other peers: status, pin levels, armed flags."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from krill_crdt import __version__
from krill_crdt.model import Node, NodeState, NodeType
from krill_crdt.runtime.hardware.gpio import SimulatedPins
from krill_crdt.runtime.peer import Peer
from krill_crdt.runtime.processors.structural import status_changes
from tests.runtime.test_swarm import Swarm, converged, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def swarm(tmp_path: Path) -> AsyncIterator[Swarm]:
    group = Swarm(tmp_path)
    yield group
    for peer in list(group.peers):
        await peer.stop()


async def start(swarm: Swarm, name: str, status_period: float | None = None) -> Peer:
    peer = Peer(swarm.config(name))
    if status_period is not None:
        peer.status_period = status_period
    await peer.start()
    swarm.peers.append(peer)
    return peer


async def add(peer: Peer, type_: NodeType, node_id: str, parent: str, **meta: Any) -> Node:
    return await peer.create(Node.new(type_, host=peer.host, parent=parent, id=node_id, meta=meta))


def meta(peer: Peer, host: str, node_id: str) -> dict[str, Any]:
    """A node's meta as ``peer`` sees it; empty while the node has not reached it."""
    doc = peer.store.docs().get(host)
    if doc is None or node_id not in doc:
        return {}
    return doc.get(node_id).meta.to_dict()


async def test_a_second_peer_sees_the_servers_status_and_it_keeps_current(swarm: Swarm) -> None:
    a = await start(swarm, "alpha", status_period=0.3)
    b = await start(swarm, "bravo")

    await wait_for(lambda: meta(b, "alpha", "alpha").get("last_seen") is not None, timeout=10)
    first = meta(b, "alpha", "alpha")
    assert first["version"] == __version__
    assert first["started_at"] <= first["last_seen"] <= time.time()

    # The next periodic write reaches the other peer too: uptime grows, last_seen moves on.
    await wait_for(lambda: meta(b, "alpha", "alpha")["last_seen"] > first["last_seen"])
    later = meta(b, "alpha", "alpha")
    assert later["uptime_s"] > first["uptime_s"]
    assert later["started_at"] == first["started_at"]
    assert a.get("alpha").meta.to_dict()["uptime_s"] >= later["uptime_s"]


async def test_peer_client_and_project_nodes_carry_a_status_others_see(swarm: Swarm) -> None:
    a = await start(swarm, "alpha", status_period=0.3)
    b = await start(swarm, "bravo")
    await add(a, NodeType.Peer, "bravo-seen", a.host, peer_id=b.id.hex())
    await add(a, NodeType.Peer, "never-seen", a.host, peer_id="00" * 16)
    await add(a, NodeType.Client, "dashboard", a.host, last_seen=time.time())
    await add(a, NodeType.Client, "old-phone", a.host, last_seen=time.time() - 3600)
    await add(a, NodeType.Project, "garden", a.host)
    await add(a, NodeType.Project, "beds", "garden")
    await add(a, NodeType.DataPoint, "soil", "beds")
    await add(a, NodeType.DataPoint, "rain", "garden")
    a.store.doc(a.host).set_error("soil", NodeState.ERROR, "sensor gone")
    a.store.doc(a.host).set_error("rain", NodeState.WARN, "stale")

    def seen_by_b() -> bool:
        return (
            meta(b, "alpha", "bravo-seen").get("online") is True
            and meta(b, "alpha", "dashboard").get("online") is True
            and "garden" in b.store.doc("alpha")
            and b.get("garden").state is NodeState.WARN
        )

    await wait_for(seen_by_b, timeout=10)
    assert meta(b, "alpha", "bravo-seen")["last_seen"] is not None
    assert meta(b, "alpha", "never-seen")["online"] is False
    assert meta(b, "alpha", "old-phone")["online"] is False
    reasons = b.store.doc("alpha").errors
    assert reasons["garden"] == "nodes below: 1 in ERROR (soil); 1 in WARN (rain)"
    assert reasons["beds"] == "nodes below: 1 in ERROR (soil)"

    # Fixed below, the project's warning goes away on the next status write.
    a.store.doc(a.host).set_error("soil", NodeState.NONE, None)
    a.store.doc(a.host).set_error("rain", NodeState.NONE, None)
    await wait_for(lambda: b.get("garden").state is NodeState.NONE, timeout=10)
    assert "garden" not in b.store.doc("alpha").errors


async def test_pin_levels_driven_by_a_chain_or_read_on_an_edge_reach_a_second_peer(
    swarm: Swarm,
) -> None:
    a = await start(swarm, "alpha")
    b = await start(swarm, "bravo")
    await add(a, NodeType.Pin, "led", a.host, pin=17, mode="output")
    await add(a, NodeType.Pin, "switch", a.host, pin=27, mode="input", active_low=True)
    await add(a, NodeType.Button, "press", a.host, targets=["led"])
    gpio = a.resources["gpio"]
    assert isinstance(gpio, SimulatedPins)

    # Claimed at its initial level (low), which is recorded as such.
    await wait_for(lambda: meta(b, "alpha", "led").get("level") is False, timeout=10)

    # An output driven by a chain: the button toggles the LED on.
    await a.invoke("press")
    await wait_for(lambda: meta(b, "alpha", "led").get("level") is True, timeout=10)
    assert meta(b, "alpha", "led")["level_time"] is not None
    assert gpio.level(17) is True  # recording the level did not set the line up again

    # An input's edges: high reads as off, pulled low as on (active low).
    gpio.inject(27, True)
    await wait_for(lambda: meta(b, "alpha", "switch").get("level") is False, timeout=10)
    gpio.inject(27, False)
    await wait_for(lambda: meta(b, "alpha", "switch").get("level") is True, timeout=10)
    await wait_for(lambda: converged([a, b], hosts=2), timeout=10)


async def test_a_threshold_neither_fires_again_nor_misses_a_crossing_across_a_restart(
    swarm: Swarm,
) -> None:
    async def chain(peer: Peer) -> None:
        await add(peer, NodeType.DataPoint, "temp", peer.host)
        await add(peer, NodeType.DataPoint, "alarms", peer.host)
        await add(peer, NodeType.HighThreshold, "hot", "temp", level=10.0, hysteresis=1.0)
        await peer.update("hot", {"meta": {**meta(peer, peer.host, "hot"), "targets": ["alarms"]}})

    async def fires(peer: Peer, value: float) -> bool:
        result = await peer.invoke("temp", value)
        assert result is not None and not result.errors
        return "hot" in result.outcomes

    peer = await start(swarm, "alpha")
    await chain(peer)
    assert [await fires(peer, v) for v in (5.0, 12.0)] == [False, True]

    # Still above the level after a restart: the crossing was fired on already.
    await swarm.stop(peer)
    peer = await start(swarm, "alpha")
    assert meta(peer, "alpha", "hot")["armed"] is False
    assert [await fires(peer, v) for v in (13.0, 5.0)] == [False, False]

    # Re-armed before a restart: the first value after it that crosses fires.
    await swarm.stop(peer)
    peer = await start(swarm, "alpha")
    assert meta(peer, "alpha", "hot")["armed"] is True
    assert await fires(peer, 12.0)
    assert [value for _, value in peer.store.series.range("alarms")] == [12.0, 12.0]


def test_status_changes_name_only_nodes_whose_status_moved() -> None:
    host = "h"
    server = Node.new(NodeType.Server, host=host, id=host)
    project = Node.new(NodeType.Project, host=host, parent=host, id="p")
    away = Node.new(NodeType.Peer, host=host, parent=host, id="q", meta={"peer_id": "ab"})

    writes = status_changes(
        [server, project, away], host=host, started_at=100.0, now=160.0, peers_seen={}, errors={}
    )

    assert set(writes.meta) == {host}  # the peer stays offline
    assert writes.states == {}  # nothing below the project has a problem
    assert writes.meta[host]["uptime_s"] == 60.0
    assert writes.meta[host]["last_seen"] == 160.0
    assert writes.meta[host]["port"] == 8442  # the rest of the meta is kept
