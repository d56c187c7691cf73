"""Hardware and schedules of the host's own nodes, kept in step with its host doc.

For every node this peer hosts:

* a **Pin** has its line claimed (mode, pull, initial level); an input pin's edges invoke the
  Pin node with the new level; on stop every output goes to its shutdown level;
* a **SerialDevice** has a :class:`~krill_crdt.runtime.hardware.serial.SerialLink` open; each
  parsed line invokes the data points under the device with the value, and a line that does
  not parse puts the device node in WARN with the reason;
* a **Timer** or **CronTimer** has a task that sleeps until the processor's next fire time
  and invokes the node.

A change to one of these nodes (created, edited, deleted, by anyone) restarts what belongs to
it. Only the host does any of this: the other peers hold the same nodes and leave them alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ..errors import KrillError
from ..model import Node, NodeState, NodeType, PinMeta, SerialDeviceMeta
from ..store.changes import ChangeStream
from ..store.hostdoc import HostDoc
from .hardware.gpio import PinBackend
from .hardware.serial import LineParseError, LinkState, SerialLink
from .processors.base import Processor
from .processors.triggers import Scheduled

__all__ = ["Devices"]

log = logging.getLogger("krill.runtime")

Invoke = Callable[[str, Any], Awaitable[Any]]

_WATCHED = frozenset({NodeType.Pin, NodeType.SerialDevice, NodeType.Timer, NodeType.CronTimer})

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
    """

    def __init__(
        self,
        doc: HostDoc,
        gpio: PinBackend,
        processors: dict[NodeType, Processor],
        invoke: Invoke,
    ) -> None:
        self.doc = doc
        self.gpio = gpio
        self.processors = processors
        self._invoke = invoke
        self._links: dict[str, SerialLink] = {}
        self._pins: dict[str, int] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
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
        elif isinstance(node.meta, SerialDeviceMeta):
            link = SerialLink(
                node.meta,
                partial(self._reading, node.id),
                on_error=partial(self._bad_line, node.id),
                on_state=partial(self._link_state, node.id),
            )
            self._links[node.id] = link
            await link.start()
        elif node.type in (NodeType.Timer, NodeType.CronTimer):
            processor = self.processors.get(node.type)
            if processor is not None and hasattr(processor, "next_fire"):
                task = asyncio.get_running_loop().create_task(self._schedule(node, processor))
                self._timers[node.id] = task

    async def _tear_down(self, node_id: str) -> None:
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


def _same_setup(before: Node, after: Node) -> bool:
    """True when only fields that do not affect hardware or schedules changed."""
    with contextlib.suppress(AttributeError):
        return before.meta == after.meta and before.type == after.type
    return False
