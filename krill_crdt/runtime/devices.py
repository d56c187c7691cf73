"""Hardware and schedules of the host's own nodes, kept in step with its host doc.

For every node this peer hosts:

* a **Pin** has its line claimed (mode, pull, initial level); an input pin's edges invoke the
  Pin node with the new level; on stop every output goes to its shutdown level;
* a **SerialDevice** has a :class:`~krill_crdt.runtime.hardware.serial.SerialLink` open; each
  parsed line invokes the data points under the device with the value, and a line that does
  not parse puts the device node in WARN with the reason;
* a **Timer** or **CronTimer** has a task that sleeps until the processor's next fire time
  and invokes the node;
* an **MqttBridge** that subscribes has its topic filter subscribed on the ``"mqtt"``
  resource (the peer's broker connection); each message's value (see
  :func:`~krill_crdt.runtime.processors.devices.bridge_value`) invokes the data points under
  the bridge, so filters, series and targets run as for any sample. A message that carries
  no usable value puts the bridge in WARN with the reason and invokes nothing; the next good
  one clears it.

A change to one of these nodes (created, edited, deleted, by anyone) restarts what belongs to
it. Only the host does any of this: the other peers hold the same nodes and leave them alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from ..errors import KrillError
from ..model import (
    DataPointMeta,
    MqttBridgeMeta,
    Node,
    NodeState,
    NodeType,
    PinMeta,
    SerialDeviceMeta,
)
from ..store.changes import ChangeStream
from ..store.hostdoc import HostDoc
from .hardware.gpio import PinBackend
from .hardware.serial import LineParseError, LinkState, SerialLink
from .processors.base import Processor, ProcessorError
from .processors.data import coerce
from .processors.devices import MqttBroker, bridge_value
from .processors.triggers import Scheduled

__all__ = ["Devices"]

log = logging.getLogger("krill.runtime")

Invoke = Callable[[str, Any], Awaitable[Any]]

_WATCHED = frozenset(
    {NodeType.Pin, NodeType.SerialDevice, NodeType.Timer, NodeType.CronTimer, NodeType.MqttBridge}
)

#: Seconds a stop waits for device tasks and serial links to finish: stopping must stay well
#: inside the 5 s a service manager gives a daemon between SIGTERM and SIGKILL.
STOP_WAIT = 1.5

#: A schedule never sleeps longer than this before looking again, so a clock step (NTP
#: correcting a Pi that booted without a real-time clock) delays a timer by at most a minute.
MAX_SLEEP = 60.0


class Devices:
    """Claims pins, opens serial links and runs timers for the nodes of one host doc.

    Args:
        doc: the host doc this peer hosts.
        gpio: the pin backend.
        processors: the processor of each node type (timers come from here).
        invoke: runs a node's chain (``Peer.invoke``).
        resources: the peer's shared resources, looked up when a node is set up (bridges
            need ``"mqtt"``).
    """

    def __init__(
        self,
        doc: HostDoc,
        gpio: PinBackend,
        processors: dict[NodeType, Processor],
        invoke: Invoke,
        *,
        resources: Mapping[str, Any] | None = None,
    ) -> None:
        self.doc = doc
        self.resources: Mapping[str, Any] = resources if resources is not None else {}
        self.gpio = gpio
        self.processors = processors
        self._invoke = invoke
        self._links: dict[str, SerialLink] = {}
        self._pins: dict[str, int] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._subscriptions: dict[str, Callable[[], None]] = {}
        self._seen: dict[str, Node] = {}
        self._stream: ChangeStream | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def start(self) -> None:
        """Set up every node already in the doc, then follow the doc's changes."""
        for node in self.doc.list_nodes():
            await self._sync(node.id)
        self._stream = self.doc.changes()
        self._watcher = asyncio.get_running_loop().create_task(self._follow(self._stream))

    async def stop(self) -> None:
        """Stop timers, close serial links, put every pin to its shutdown level."""
        self._stopping = True
        if self._stream is not None:
            self._stream.close()
        tasks = [t for t in [self._watcher, *self._timers.values(), *self._tasks] if t]
        for task in tasks:
            task.cancel()
        # NOTE: a task cancelled while it closes a serial link can swallow the cancellation
        # NOTE: (the link's close waits for its own reader); the wait is bounded so a stop
        # NOTE: never hangs on it, and the links are closed below in any case.
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT)
        self._timers.clear()
        for unsubscribe in self._subscriptions.values():
            unsubscribe()
        self._subscriptions.clear()
        links, self._links = list(self._links.values()), {}
        if links:
            closing = [asyncio.ensure_future(link.close()) for link in links]
            await asyncio.wait(closing, timeout=STOP_WAIT)
        self.gpio.close()

    async def send(self, node_id: str, text: str) -> None:
        """The ``"serial"`` resource: send a command line to a SerialDevice node's port.

        Raises:
            KrillError: the device has no open link.
        """
        link = self._links.get(node_id)
        if link is None:
            raise KrillError(f"serial device {node_id!r} has no open link")
        link.send(text)

    async def _follow(self, stream: ChangeStream) -> None:
        async for change in stream:
            if self._stopping:
                return
            if change.host == self.doc.host:
                await self._sync(change.node_id)

    async def _sync(self, node_id: str) -> None:
        if self._stopping:
            return
        node = self.doc.find(node_id) if node_id in self.doc else None
        previous = self._seen.get(node_id)
        if node is not None and node.type not in _WATCHED:
            return
        if previous is not None and node is not None and _same_setup(previous, node):
            return
        await self._tear_down(node_id)
        if node is None:
            self._seen.pop(node_id, None)
            return
        self._seen[node_id] = node
        try:
            await self._set_up(node)
        except KrillError as exc:
            log.warning("host doc %s: node %s cannot be set up: %s", self.doc.host, node_id, exc)
            self.doc.set_error(node_id, NodeState.ERROR, str(exc))

    async def _set_up(self, node: Node) -> None:
        if isinstance(node.meta, PinMeta):
            meta = node.meta
            self.gpio.setup(
                meta.pin,
                meta.mode,
                meta.pull,
                meta.initial == "high",
                shutdown=meta.shutdown == "high",
            )
            self._pins[node.id] = meta.pin
            if meta.mode == "input":
                self.gpio.watch(meta.pin, partial(self._edge, node.id))
            self._record_claimed_level(node.id, meta)
        elif isinstance(node.meta, SerialDeviceMeta):
            link = SerialLink(
                node.meta,
                partial(self._reading, node.id),
                on_error=partial(self._bad_line, node.id),
                on_state=partial(self._link_state, node.id),
            )
            self._links[node.id] = link
            await link.start()
        elif isinstance(node.meta, MqttBridgeMeta):
            if node.meta.subscribes:
                self._subscribe(node.id, node.meta)
        elif node.type in (NodeType.Timer, NodeType.CronTimer):
            processor = self.processors.get(node.type)
            if processor is not None and hasattr(processor, "next_fire"):
                task = asyncio.get_running_loop().create_task(self._schedule(node, processor))
                self._timers[node.id] = task

    def _record_claimed_level(self, node_id: str, meta: PinMeta) -> None:
        """Write the level a pin was just claimed at into its node, if the node says otherwise
        (after a restart an output is back at its initial level, whatever it was before)."""
        on = self.gpio.read(meta.pin) != meta.active_low
        # A PWM pin starts at a steady level: a duty of all or nothing.
        duty = (100.0 if on else 0.0) if meta.mode == "pwm" else None
        if (meta.level, meta.duty) == (on, duty):
            return
        fields = {**meta.to_dict(), "level": on, "duty": duty, "level_time": time.time()}
        self.doc.update(node_id, {"meta": fields})

    def _subscribe(self, node_id: str, meta: MqttBridgeMeta) -> None:
        broker: MqttBroker | None = self.resources.get("mqtt")
        if broker is None:
            raise KrillError("this peer has no MQTT broker: set [mqtt] url to bridge topics")
        handler = partial(self._bridge_message, node_id)
        self._subscriptions[node_id] = broker.subscribe(meta.topic, meta.qos, handler)
        log.info("host doc %s: bridge %s subscribed to %s", self.doc.host, node_id, meta.topic)

    async def _tear_down(self, node_id: str) -> None:
        unsubscribe = self._subscriptions.pop(node_id, None)
        if unsubscribe is not None:
            unsubscribe()
        task = self._timers.pop(node_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        link = self._links.pop(node_id, None)
        if link is not None:
            await link.close()
        pin = self._pins.pop(node_id, None)
        if pin is not None:
            self.gpio.release(pin)

    async def _schedule(self, node: Node, processor: Any) -> None:
        scheduled: Scheduled = processor
        after = time.time()
        while True:
            due = scheduled.next_fire(node, after)
            if due is None:
                return
            while (wait := due - time.time()) > 0:
                await asyncio.sleep(min(wait, MAX_SLEEP))
            after = due
            await self._run(node.id, None)

    def _edge(self, node_id: str, pin: int, level: bool, at: float) -> None:
        self._spawn(self._run(node_id, level))

    def _reading(self, device_id: str, value: float | str, raw: str, at: float) -> None:
        for child in self.doc.children(device_id):
            if child.type is NodeType.DataPoint:
                self._spawn(self._run(child.id, value))

    def _bridge_message(self, bridge_id: str, topic: str, payload: bytes) -> None:
        bridge = self._seen.get(bridge_id)
        if self._stopping or bridge is None or not isinstance(bridge.meta, MqttBridgeMeta):
            return

        # Step 1: the value, and whether every data point under the bridge can take it.
        points = [n for n in self.doc.children(bridge_id) if isinstance(n.meta, DataPointMeta)]
        try:
            value = bridge_value(payload, bridge.meta.value_path)
            for point in points:
                assert isinstance(point.meta, DataPointMeta)
                coerce(value, point.meta.data_type)
        except ProcessorError as exc:
            self._bad_message(bridge_id, topic, str(exc))
            return

        # Step 2: a good message ends a warning a bad one left, then feeds the data points.
        current = self.doc.find(bridge_id)
        if current is not None and current.state is NodeState.WARN:
            self.doc.set_error(bridge_id, NodeState.NONE, None)
        for point in points:
            self._spawn(self._run(point.id, value))

    def _bad_message(self, bridge_id: str, topic: str, reason: str) -> None:
        message = f"message on {topic}: {reason}"
        current = self.doc.find(bridge_id)
        if current is None:
            return
        if current.state is not NodeState.WARN:
            log.warning("host doc %s: bridge %s: %s", self.doc.host, bridge_id, message)
        else:
            log.debug("host doc %s: bridge %s: %s", self.doc.host, bridge_id, message)
        self.doc.set_error(bridge_id, NodeState.WARN, message)

    def _bad_line(self, device_id: str, error: LineParseError) -> None:
        self.doc.set_error(device_id, NodeState.WARN, str(error))

    def _link_state(self, device_id: str, state: LinkState) -> None:
        if device_id not in self.doc:
            return
        if state.connected:
            self.doc.set_error(device_id, NodeState.INFO, None)
        else:
            self.doc.set_error(device_id, NodeState.ERROR, f"serial link down: {state.reason}")

    async def _run(self, node_id: str, value: Any) -> None:
        try:
            await self._invoke(node_id, value)
        except KrillError as exc:
            log.warning("host doc %s: chain of %s failed: %s", self.doc.host, node_id, exc)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


#: Meta fields the runtime itself writes as results (a pin's level): a change to them must not
#: set the hardware up again, which would drive an output back to its initial level.
_RESULT_FIELDS = frozenset({"level", "duty", "level_time"})


def _same_setup(before: Node, after: Node) -> bool:
    """True when only fields that do not affect hardware or schedules changed."""
    if before.type != after.type:
        return False
    if before.meta == after.meta:
        return True
    if not isinstance(before.meta, PinMeta):
        return False
    old, new = before.meta.to_dict(), after.meta.to_dict()
    return all(old[k] == new[k] for k in old if k not in _RESULT_FIELDS)
