"""MqttBridge nodes on running peers, against a real Mosquitto: both directions, no echo."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from krill_crdt.errors import ValidationError
from krill_crdt.model import Node, NodeState, NodeType
from krill_crdt.runtime.config import MqttConfig
from krill_crdt.runtime.peer import Peer
from krill_crdt.runtime.processors.base import ProcessorError
from krill_crdt.runtime.processors.devices import bridge_value
from krill_crdt.transport.mqtt import MqttOptions, MqttTransport, MqttTransportError
from tests.mqtt_broker import MosquittoBroker
from tests.runtime.test_mqtt_swarm import mqtt_only
from tests.runtime.test_swarm import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def topic() -> str:
    """A topic of its own per test: tests share the module's broker."""
    return f"home/{uuid.uuid4().hex[:10]}/temp"


@asynccontextmanager
async def peer_on(broker: MosquittoBroker, root: Path, name: str = "alpha") -> AsyncIterator[Peer]:
    key = root / "swarm.key"
    if not key.exists():
        key.write_bytes(random.randbytes(32))
    peer = await Peer(mqtt_only(root, name, key, broker.url)).start()
    try:
        yield peer
    finally:
        await peer.stop()


@asynccontextmanager
async def listener(broker: MosquittoBroker, topic: str) -> AsyncIterator[list[bytes]]:
    """An outside MQTT client recording every payload on ``topic``."""
    payloads: list[bytes] = []
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                payloads.append(message.payload)

        task = asyncio.create_task(collect())
        try:
            yield payloads
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def publish(broker: MosquittoBroker, topic: str, *payloads: bytes) -> None:
    """Publish from an outside client, as a sensor or another system would."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for payload in payloads:
            await client.publish(topic, payload, qos=1)


async def add(peer: Peer, type_: NodeType, node_id: str, parent: str, **meta: Any) -> Node:
    return await peer.create(Node.new(type_, host=peer.host, parent=parent, id=node_id, meta=meta))


def series(peer: Peer, node_id: str) -> list[Any]:
    return [value for _, value in peer.store.series.range(node_id)]


def snapshot(peer: Peer, node_id: str) -> Any:
    return peer.get(node_id).meta.to_dict()["snapshot_value"]


async def test_a_published_value_reaches_an_outside_subscriber(
    mqtt_broker: MosquittoBroker, tmp_path: Path, topic: str
) -> None:
    async with peer_on(mqtt_broker, tmp_path) as peer, listener(mqtt_broker, topic) as seen:
        await add(peer, NodeType.MqttBridge, "out", peer.host, topic=topic, qos=1, retain=True)
        await add(peer, NodeType.DataPoint, "temp", peer.host, targets=["out"])

        result = await peer.invoke("temp", 21.5)

        assert result is not None and result.errors == {}
        await wait_for(lambda: seen == [b"21.5"], timeout=5)


async def test_an_outside_message_feeds_the_data_point_and_reaches_a_second_peer(
    mqtt_broker: MosquittoBroker, tmp_path: Path, topic: str
) -> None:
    async with (
        peer_on(mqtt_broker, tmp_path, "alpha") as alpha,
        peer_on(mqtt_broker, tmp_path, "bravo") as bravo,
    ):
        await add(alpha, NodeType.MqttBridge, "in", alpha.host, topic=topic, direction="subscribe")
        await add(alpha, NodeType.DataPoint, "temp", "in")
        await add(alpha, NodeType.HighThreshold, "hot", "temp", level=30.0)
        await asyncio.sleep(0.2)  # the subscription is made as the node arrives

        await publish(mqtt_broker, topic, b'{"value": 22.5, "unit": "C"}', b"31")

        # The normal data point path ran: the series has both samples, the threshold learnt.
        await wait_for(lambda: series(alpha, "temp") == [22.5, 31.0], timeout=5)
        assert snapshot(alpha, "temp") == 31.0
        assert alpha.get("hot").meta.to_dict()["armed"] is False
        # Results are ordinary writes: the other peer sees them.
        await wait_for(
            lambda: "temp" in bravo.store.doc("alpha") and snapshot(bravo, "temp") == 31.0,
            timeout=10,
        )


async def test_a_bad_message_warns_on_the_bridge_and_touches_nothing_else(
    mqtt_broker: MosquittoBroker, tmp_path: Path, topic: str
) -> None:
    async with peer_on(mqtt_broker, tmp_path) as peer:
        await add(peer, NodeType.MqttBridge, "in", peer.host, topic=topic, direction="subscribe")
        await add(peer, NodeType.DataPoint, "temp", "in")
        await asyncio.sleep(0.2)

        await publish(mqtt_broker, topic, b'{"reading": 4}', b"warm")

        await wait_for(lambda: peer.get("in").state is NodeState.WARN, timeout=5)
        await asyncio.sleep(0.1)
        assert "'warm' is not a finite number" in peer.store.doc(peer.host).errors["in"]
        assert snapshot(peer, "temp") is None
        assert peer.get("temp").state is NodeState.NONE

        await publish(mqtt_broker, topic, b"20")
        await wait_for(lambda: snapshot(peer, "temp") == 20.0, timeout=5)
        assert peer.get("in").state is NodeState.NONE
        assert "in" not in peer.store.doc(peer.host).errors


async def test_a_point_published_and_subscribed_on_one_topic_does_not_echo(
    mqtt_broker: MosquittoBroker, tmp_path: Path, topic: str
) -> None:
    async with peer_on(mqtt_broker, tmp_path) as peer, listener(mqtt_broker, topic) as seen:
        await add(peer, NodeType.MqttBridge, "loop", peer.host, topic=topic, direction="both")
        await add(peer, NodeType.DataPoint, "level", "loop", targets=["loop"])
        await asyncio.sleep(0.2)

        await peer.invoke("level", 1.0)  # published once; the broker keeps it from us
        await publish(mqtt_broker, topic, b"2")  # fed in once, published once more

        await wait_for(lambda: len(seen) >= 3, timeout=5)
        await asyncio.sleep(0.5)  # an echo loop would keep going in this time
        assert seen == [b"1.0", b"2", b"2.0"]
        assert series(peer, "level") == [1.0, 2.0]


async def test_a_subscribing_bridge_without_a_broker_is_an_error_on_its_node(
    tmp_path: Path, topic: str
) -> None:
    (tmp_path / "swarm.key").write_bytes(random.randbytes(32))
    config = mqtt_only(tmp_path, "solo", tmp_path / "swarm.key", "mqtt://127.0.0.1:1")
    async with Peer(dataclasses.replace(config, mqtt=MqttConfig())) as peer:
        await add(peer, NodeType.MqttBridge, "in", peer.host, topic=topic, direction="subscribe")
        await wait_for(lambda: peer.get("in").state is NodeState.ERROR, timeout=5)
        assert "[mqtt] url" in peer.store.doc(peer.host).errors["in"]


@pytest.mark.parametrize(
    ("payload", "path", "value"),
    [
        (b"21.5", "value", 21.5),
        (b" true ", "value", True),
        (b'"open"', "value", "open"),
        (b"on", "value", "on"),
        (b'{"value": 3}', "value", 3),
        (b'{"sensor": {"temp": [1, 2]}}', "sensor.temp.1", 2),
        (b'{"value": 3}', "", {"value": 3}),
    ],
)
def test_a_bridge_reads_numbers_text_and_json_with_a_value(
    payload: bytes, path: str, value: object
) -> None:
    assert bridge_value(payload, path) == value


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"null", "no value"),
        (b'{"temp": 3}', "has no 'value'"),
        (b"1" * 70_000, "at most"),
    ],
)
def test_a_bridge_refuses_a_message_without_a_value(payload: bytes, reason: str) -> None:
    with pytest.raises(ProcessorError, match=reason):
        bridge_value(payload, "value")


async def test_a_bridge_cannot_reach_into_the_swarms_own_topics(
    mqtt_broker: MosquittoBroker, tmp_path: Path
) -> None:
    async with peer_on(mqtt_broker, tmp_path) as peer:
        await add(
            peer, NodeType.MqttBridge, "spy", peer.host, topic="krill/#", direction="subscribe"
        )
        await add(peer, NodeType.MqttBridge, "all", peer.host, topic="#", direction="subscribe")
        await add(peer, NodeType.MqttBridge, "forge", peer.host, topic="krill/v1/x/update")
        await add(peer, NodeType.DataPoint, "temp", peer.host, targets=["forge"])

        result = await peer.invoke("temp", 1.0)

        assert result is not None and "must start with a plain level" in result.errors["forge"]
        await wait_for(lambda: peer.get("all").state is NodeState.ERROR, timeout=5)
        assert peer.get("spy").state is NodeState.ERROR


def test_a_bridge_publish_without_a_broker_session_fails_at_once() -> None:
    transport = MqttTransport(MqttOptions("mqtt://127.0.0.1:1"), swarm="s", peer_id=bytes(16))
    with pytest.raises(MqttTransportError, match="not connected"):
        transport.publish("home/lamp", b"1")
    with pytest.raises(ValidationError, match="plain topic"):
        transport.publish("home/+/lamp", b"1")
