"""The demo of ``krill serve`` without a config: a small greenhouse fed by a simulated sensor.

The sensor is a real serial device as far as the peer can tell: a SerialDevice node whose port
is a ``socket://127.0.0.1:PORT`` URL, served by :class:`SimulatedSensor`, a tiny TCP server in
the daemon's own event loop that prints a slowly varying temperature once a second. So the
demo runs the same path a sensor on ``/dev/ttyUSB0`` would: serial link, line parser, data
point, threshold, logic gate, pin. (A Timer feeding a Calculation would have shown less.)

The project, created once in the peer's own host doc (node ids fixed per host, so a restart
reuses them; deleting the project keeps it deleted):

    HOST (the peer's Server node)
    +-- greenhouse (Project)
    +-- temperature sensor (SerialDevice, socket://127.0.0.1:PORT)
    |   +-- temperature (DataPoint, degC) -> too hot
    |       +-- too hot (HighThreshold, 30 degC) -> fan on when hot
    |           +-- fan on when hot (LogicGate OR) -> fan relay
    +-- fan relay (Pin 17, output, simulated)

Devices and pins belong to a server (the model's parent rule), so they hang under the host,
beside the project rather than inside it.

The sensor's port changes with every start (the OS picks a free one, so several daemons can
run side by side); the daemon points the SerialDevice node at the new port on each start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

from ..model import Node, NodeState, NodeType
from ..runtime.peer import Peer
from ..store import Create

__all__ = ["DEMO_MARKER", "SimulatedSensor", "demo_ids", "demo_nodes", "ensure_demo"]

log = logging.getLogger("krill.daemon.demo")

#: File in the data directory that records the demo project was created once.
DEMO_MARKER = "demo-created"

#: Seconds between two readings of the simulated sensor.
READING_INTERVAL_S = 1.0

#: The simulated temperature swings between 22 and 34 degC over this many seconds, so the
#: 30 degC threshold is crossed (and the fan switched) a few times within a few minutes.
SWING_PERIOD_S = 180.0

#: How long start-up waits for the serial link to the simulated sensor. It is on loopback and
#: normally up within a few milliseconds.
SENSOR_CONNECT_TIMEOUT_S = 3.0


class SimulatedSensor:
    """A TCP server on loopback that prints a temperature reading (``"27.31 C\\n"``) a second.

    Every connection gets the same curve, read from the wall clock, so a reconnecting serial
    link picks up where the curve is now.
    """

    def __init__(self, interval: float = READING_INTERVAL_S) -> None:
        self.interval = interval
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The pyserial URL of the sensor (``socket://127.0.0.1:PORT``)."""
        if self._server is None:
            raise RuntimeError("the simulated sensor is not running")
        port = self._server.sockets[0].getsockname()[1]
        return f"socket://127.0.0.1:{port}"

    @staticmethod
    def reading(now: float) -> float:
        """The temperature at ``now``: a slow sine wave with a little noise."""
        wave = math.sin(2 * math.pi * (now % SWING_PERIOD_S) / SWING_PERIOD_S)
        return round(28.0 + 6.0 * wave + random.uniform(-0.2, 0.2), 2)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        log.info("simulated temperature sensor at %s", self.url)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                writer.write(f"{self.reading(time.time()):.2f} C\n".encode())
                await writer.drain()
                await asyncio.sleep(self.interval)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def demo_ids(host: str) -> dict[str, str]:
    """The fixed node ids of the demo project in ``host``'s doc, by role."""
    roles = ("project", "sensor", "temperature", "too-hot", "fan-gate", "fan")
    return {role: f"{host}-demo-{role}" for role in roles}


def demo_nodes(host: str, sensor_url: str) -> list[Node]:
    """The demo project's nodes, parents first."""
    ids = demo_ids(host)

    def node(kind: NodeType, role: str, parent: str, name: str, **meta: Any) -> Node:
        return Node.new(kind, host=host, parent=parent, id=ids[role], name=name, meta=meta)

    return [
        node(NodeType.Project, "project", host, "greenhouse"),
        node(
            NodeType.SerialDevice,
            "sensor",
            host,
            "temperature sensor",
            port=sensor_url,
            baudrate=9600,
        ),
        node(
            NodeType.DataPoint,
            "temperature",
            ids["sensor"],
            "temperature",
            unit="°C",
            data_type="number",
            targets=(ids["too-hot"],),
        ),
        node(
            NodeType.HighThreshold,
            "too-hot",
            ids["temperature"],
            "too hot",
            level=30.0,
            hysteresis=0.5,
            targets=(ids["fan-gate"],),
        ),
        node(
            NodeType.LogicGate,
            "fan-gate",
            ids["too-hot"],
            "fan on when hot",
            operation="OR",
            sources=(ids["too-hot"],),
            targets=(ids["fan"],),
        ),
        node(NodeType.Pin, "fan", host, "fan relay", pin=17, mode="output"),
    ]


async def ensure_demo(peer: Peer, sensor_url: str, data_dir: Path) -> None:
    """Create the demo project on the first run; later, point its sensor at ``sensor_url``."""
    ids = demo_ids(peer.host)
    marker = data_dir / DEMO_MARKER
    if not marker.exists():
        # One transaction: a dashboard sees the whole project appear, never half of it.
        await peer.store.batch(peer.host, [Create(n) for n in demo_nodes(peer.host, sensor_url)])
        marker.write_text("the demo project was created; delete it and it stays deleted\n")
        log.info("host doc %s: created the demo project %s", peer.host, ids["project"])

    else:
        try:
            sensor = peer.get(ids["sensor"])
        except KeyError:
            return  # the user deleted it
        meta = sensor.meta.to_dict()
        if meta.get("port") != sensor_url:
            meta["port"] = sensor_url
            # State NONE until the link to the new port reports itself up (INFO).
            await peer.update(sensor.id, {"meta": meta, "state": NodeState.NONE})
            log.debug("node %s: sensor port now %s", sensor.id, sensor_url)
    await _wait_connected(peer, ids["sensor"], sensor_url)


async def _wait_connected(peer: Peer, sensor_id: str, sensor_url: str) -> None:
    """Wait (bounded) until the peer's serial link to the sensor is up.

    The daemon counts as ready only then, so the demo shows readings from the first second.
    """
    # NOTE: this also keeps a stop requested during start-up away from the moment the peer
    # is still setting up the sensor's serial link: stopping the runtime's device watcher
    # while it (re)opens a link can leave the peer's stop waiting until its timeout.
    deadline = time.monotonic() + SENSOR_CONNECT_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            node = peer.get(sensor_id)
        except KeyError:
            return
        if node.state is NodeState.INFO and node.meta.to_dict().get("port") == sensor_url:
            return
        await asyncio.sleep(0.02)
    log.warning("node %s: the simulated sensor is not connected yet", sensor_id)
