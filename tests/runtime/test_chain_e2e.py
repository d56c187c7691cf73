"""End to end on simulated hardware: serial sensor -> data point -> threshold -> gate -> pin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from krill_crdt.model import DataPointMeta, Node, NodeState, NodeType
from krill_crdt.runtime.hardware.gpio import SimulatedPins
from tests.runtime.test_swarm import Swarm, converged, linked, wait_for

pytestmark = pytest.mark.timeout(120)

FAN_PIN = 17


class Sensor:
    """A serial device on a loopback TCP port (``socket://``) that sends the lines it is given."""

    def __init__(self) -> None:
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.received: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await self.lines.get()
                writer.write(line.encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def sensor() -> AsyncIterator[Sensor]:
    device = Sensor()
    yield device
    await device.stop()


def chain(host: str, port: int) -> list[Node]:
    def node(kind: NodeType, node_id: str, parent: str, **meta: object) -> Node:
        return Node.new(kind, host=host, parent=parent, id=node_id, name=node_id, meta=meta)

    return [
        node(NodeType.SerialDevice, "sensor", host, port=f"socket://127.0.0.1:{port}"),
        node(NodeType.DataPoint, "temperature", "sensor", unit="C"),
        node(NodeType.HighThreshold, "too-hot", "temperature", level=30.0, hysteresis=2.0),
        node(
            NodeType.LogicGate,
            "fan-on",
            "too-hot",
            operation="OR",
            sources=("too-hot",),
            targets=("fan",),
        ),
        node(NodeType.Pin, "fan", host, pin=FAN_PIN, mode="output"),
    ]


def snapshot(node: Node) -> object:
    assert isinstance(node.meta, DataPointMeta)
    return node.meta.snapshot_value


async def test_a_reading_drives_the_pin_and_every_step_reaches_the_other_peer(
    tmp_path: Path, sensor: Sensor
) -> None:
    port = await sensor.start()
    swarm = Swarm(tmp_path)
    host = await swarm.start("greenhouse")
    watcher = await swarm.start("laptop")
    try:
        await wait_for(lambda: linked([host, watcher]) and converged([host, watcher], hosts=2))
        for node in chain(host.host, port):
            await host.create(node)
        pins = host.resources["gpio"]
        assert isinstance(pins, SimulatedPins)
        await wait_for(lambda: host.get("sensor").state is NodeState.INFO)

        # Below the level: recorded and replicated, the fan stays off.
        for reading in ("21.5", "24.0"):
            await sensor.lines.put(reading)
        await wait_for(lambda: snapshot(watcher.get("temperature")) == 24.0)
        assert pins.level(FAN_PIN) is False

        # Crossing the level fires the threshold, the gate turns the fan on.
        await sensor.lines.put("31.5")
        await wait_for(lambda: pins.level(FAN_PIN) is True)
        await wait_for(lambda: snapshot(watcher.get("temperature")) == 31.5)
        assert host.store.series.latest("temperature")[1] == 31.5

        # A line that is not a number is reported on the device and disturbs nothing else.
        await sensor.lines.put("garbage")
        await wait_for(lambda: watcher.get("sensor").state is NodeState.WARN)
        assert "not a number" in watcher.store.doc(host.host).errors["sensor"]
        assert snapshot(host.get("temperature")) == 31.5

        executed = host.metrics.value("krill_node_executions_total", type="DataPoint")
        assert executed == 3
        assert watcher.metrics.value("krill_node_executions_total", type="DataPoint") == 0
    finally:
        for peer in (host, watcher):
            await peer.stop()
        swarm.peers.clear()
