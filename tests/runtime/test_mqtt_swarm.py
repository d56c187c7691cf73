"""Peers that meet only through a Mosquitto broker, which goes down and comes back."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from krill_crdt.runtime.config import (
    DiscoveryConfig,
    HttpConfig,
    MqttConfig,
    PeerConfig,
    PeerSection,
)
from krill_crdt.runtime.peer import Peer
from tests.mqtt_broker import MosquittoBroker
from tests.runtime.test_swarm import converged, project, wait_for

pytestmark = pytest.mark.timeout(120)


def mqtt_only(root: Path, name: str, key: Path, url: str) -> PeerConfig:
    return PeerConfig(
        peer=PeerSection(name=name, data_dir=root / name, swarm="brokered", swarm_key_file=key),
        http=HttpConfig(listen="127.0.0.1:0"),
        discovery=DiscoveryConfig(multicast=False, peer_links=False),
        mqtt=MqttConfig(url=url),
    )


async def test_peers_linked_only_by_a_broker_replicate_and_heal_after_an_outage(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker]
) -> None:
    broker = mqtt_broker_factory()
    key = tmp_path / "swarm.key"
    key.write_bytes(random.randbytes(32))
    a = await Peer(mqtt_only(tmp_path, "alpha", key, broker.url)).start()
    b = await Peer(mqtt_only(tmp_path, "bravo", key, broker.url)).start()
    try:
        await a.create(project(a, "before"))
        await wait_for(lambda: converged([a, b], hosts=2), timeout=15)
        assert not a.engine.links()  # no WebSocket link: everything went through the broker

        # The broker goes down; alpha keeps writing; nothing can reach bravo.
        await asyncio.to_thread(broker.stop)
        for i in range(5):
            await a.create(project(a, f"during-{i}"))
        await asyncio.sleep(0.5)
        assert "during-0" not in b.store.doc("alpha")

        # Back up: both reconnect, resubscribe, and anti-entropy fills what was missed.
        await asyncio.to_thread(broker.start)
        await wait_for(lambda: converged([a, b], hosts=2), timeout=30)
        await b.create(project(b, "after"))
        await wait_for(lambda: "after" in a.store.doc("bravo"), timeout=10)
    finally:
        await a.stop()
        await b.stop()
