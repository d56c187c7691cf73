"""Nodes that touch hardware or a broker: GPIO pins, serial devices, MQTT bridges.

The processors reach the backends only through the host's resources, and only through the
small protocols below, so a real backend, its simulated twin and a test recorder are
interchangeable:

============  ===========================  ==================================================
resource      protocol                     methods called
============  ===========================  ==================================================
``"gpio"``    :class:`GpioBackend`         ``write(pin, high)``, ``read(pin)``,
                                           ``pwm(pin, duty, frequency)``
``"serial"``  :class:`SerialSender`        ``send(node_id, text)``, awaited if it returns
                                           an awaitable
``"mqtt"``    :class:`MqttBroker`          ``publish(topic, payload, qos, retain=...)``,
                                           awaited if it returns an awaitable; the runtime
                                           also calls ``subscribe(filter, qos, handler)``
============  ===========================  ==================================================

The runtime claims each Pin node's line (mode, pull, initial level) before its chain can run;
the processor only drives, reads or modulates a line that is already set up.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

import orjson

from ...errors import KrillError
from ...model import MqttBridgeMeta, NodeType, PinMeta
from ._values import incoming, resource, shown, to_bool, to_number, to_text, write_meta
from .base import Context, Outcome, ProcessorError

__all__ = [
    "MAX_BRIDGE_PAYLOAD_BYTES",
    "PWM_FREQUENCY_HZ",
    "GpioBackend",
    "MqttBridgeProcessor",
    "MqttBroker",
    "MqttPublisher",
    "PinProcessor",
    "SerialDeviceProcessor",
    "SerialSender",
    "bridge_value",
]

#: PWM frequency of Pin nodes (their meta has none): well above the roughly 90 Hz at which an
#: LED stops visibly flickering, and low enough for software-timed PWM to keep its duty exact.
PWM_FREQUENCY_HZ = 200.0

#: Largest message a subscribing bridge reads. A sensor reading is a few dozen bytes; the bound
#: keeps a stray firmware dump on a bridged topic from being parsed and carried downstream.
MAX_BRIDGE_PAYLOAD_BYTES = 64 * 1024

#: What a backend may raise for a failed operation; each becomes the node's error message.
#: Anything else is a bug and is left to the executor, which logs it with its traceback.
_BACKEND_ERRORS = (KrillError, OSError, RuntimeError, ValueError)


async def _settle(result: Awaitable[None] | None) -> None:
    # Backends may do their work at once (a queued write) or as a coroutine.
    if inspect.isawaitable(result):
        await result


class GpioBackend(Protocol):
    """The ``"gpio"`` resource. Pins are BCM numbers; levels are electrical (True is high).

    Calls are synchronous: a GPIO line changes in microseconds, less than a thread hop costs.
    """

    def write(self, pin: int, high: bool) -> None:
        """Drive an output pin to a level."""
        ...

    def read(self, pin: int) -> bool:
        """Read a pin's electrical level (an output pin reads back what it drives)."""
        ...

    def pwm(self, pin: int, duty: float, frequency: float) -> None:
        """Run PWM on a pin: ``duty`` percent of each cycle high (0..100), at ``frequency``
        Hz."""
        ...


class SerialSender(Protocol):
    """The ``"serial"`` resource: writes to the serial line of a SerialDevice node."""

    def send(self, node_id: str, text: str) -> Awaitable[None] | None:
        """Write one line to the device; the backend appends the device's ``terminator``.

        May be a plain or an ``async`` method.

        Raises:
            KrillError, OSError, RuntimeError or ValueError: the device is not open or the
                write failed (any of these becomes the node's error).
        """
        ...


class MqttPublisher(Protocol):
    """What the MqttBridge processor needs of the ``"mqtt"`` resource."""

    def publish(
        self, topic: str, payload: bytes, qos: int, *, retain: bool = False
    ) -> Awaitable[None] | None:
        """Publish one message (queued and ordered by the client). May be a plain or an
        ``async`` method; an awaitable resolves once the broker has the message."""
        ...


class MqttBroker(MqttPublisher, Protocol):
    """The ``"mqtt"`` resource: the peer's broker connection
    (:class:`~krill_crdt.transport.mqtt.MqttTransport`)."""

    def subscribe(
        self, topic_filter: str, qos: int, handler: Callable[[str, bytes], None]
    ) -> Callable[[], None]:
        """Call ``handler(topic, payload)`` for each message on ``topic_filter`` that this
        peer did not publish itself.

        Returns:
            A function that ends the subscription.
        """
        ...


class PinProcessor:
    """A GPIO line, by its ``mode``.

    * ``output``: drives the logical state of the incoming value (a bool, a number not zero,
      a switch word); with no value (a button press) it toggles the pin. ``active_low`` makes
      logical true the electrical low level.
    * ``input``: reads the line and passes its logical state on.
    * ``pwm``: sets the duty cycle from the incoming number, in percent, 0 to 100
      (``active_low`` inverts it), at :data:`PWM_FREQUENCY_HZ`.

    When the logical state (or the duty) differs from what the node's ``meta.level`` (and
    ``meta.duty``) say, it is written there with ``level_time``, so every peer sees the pin;
    a pin that stays where it was costs no write.

    Outcome: always proceeds, with the logical state (a bool) or the duty (a float).
    """

    type: ClassVar[NodeType] = NodeType.Pin
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    async def run(self, ctx: Context) -> Outcome:
        """Write, read or modulate the pin.

        Returns:
            The outcome described on the class.

        Raises:
            ProcessorError: the peer has no GPIO, the value does not fit the mode, or the
                backend failed.
        """
        node = ctx.node
        meta = node.meta
        if not isinstance(meta, PinMeta):
            raise ProcessorError(f"node {node.id} is a {node.type}, not a Pin")
        gpio: GpioBackend = resource(ctx, "gpio")
        value = incoming(ctx)
        duty = self._duty(value) if meta.mode == "pwm" else 0.0
        wanted = None if value is None or meta.mode != "output" else to_bool(value)
        try:
            if meta.mode == "input":
                on = gpio.read(meta.pin) != meta.active_low
            elif meta.mode == "pwm":
                gpio.pwm(meta.pin, 100.0 - duty if meta.active_low else duty, PWM_FREQUENCY_HZ)
            else:
                # The electrical level equals the logical state unless the pin is active low.
                on = (gpio.read(meta.pin) == meta.active_low) if wanted is None else wanted
                gpio.write(meta.pin, on != meta.active_low)
        except _BACKEND_ERRORS as exc:
            raise ProcessorError(f"GPIO {meta.pin}: {exc}") from None
        if meta.mode == "pwm":
            await self._record(ctx, duty > 0.0, duty)
            return Outcome(proceed=True, value=duty)
        await self._record(ctx, on, None)
        return Outcome(proceed=True, value=on)

    @staticmethod
    async def _record(ctx: Context, on: bool, duty: float | None) -> None:
        current = ctx.host.get(ctx.node.id).meta
        if isinstance(current, PinMeta) and current.level == on and current.duty == duty:
            return
        now = ctx.host.now()
        await write_meta(ctx, "record the pin level", level=on, duty=duty, level_time=now)

    @staticmethod
    def _duty(value: Any) -> float:
        if value is None:
            raise ProcessorError("a PWM pin needs a duty cycle in percent, 0 to 100")
        duty = to_number(value)
        if not 0.0 <= duty <= 100.0:
            raise ProcessorError(f"duty cycle {shown(value)} is outside 0 to 100 percent")
        return duty


class SerialDeviceProcessor:
    """Sends the incoming value as one line of text to the device (see
    :func:`~krill_crdt.runtime.processors._values.to_text` for how values are written).

    Outcome: always proceeds, with the text sent.
    """

    type: ClassVar[NodeType] = NodeType.SerialDevice

    async def run(self, ctx: Context) -> Outcome:
        """Send the command.

        Returns:
            Proceeds with the text sent.

        Raises:
            ProcessorError: no value to send, the peer has no serial manager, or the write
                failed.
        """
        value = incoming(ctx)
        if value is None:
            raise ProcessorError("nothing to send: the invocation carries no value")
        text = to_text(value)
        if "\n" in text or "\r" in text:
            # The backend ends the line; a line break inside would split one command in two.
            raise ProcessorError(f"command {shown(text)} must be one line")
        serial: SerialSender = resource(ctx, "serial")
        try:
            await _settle(serial.send(ctx.node.id, text))
        except _BACKEND_ERRORS as exc:
            raise ProcessorError(f"cannot send to the device: {exc}") from None
        return Outcome(proceed=True, value=text)


class MqttBridgeProcessor:
    """Publishes the incoming value to the bridge's ``topic`` with its ``qos`` and ``retain``.

    The payload is the value as JSON (``21.5``, ``true``, ``"open"``, an object); None is
    published as ``null``. The topic must be a plain topic: a filter with ``+`` or ``#`` can
    be subscribed to, not published to. A bridge whose ``direction`` is ``subscribe`` publishes
    nothing (the runtime feeds its data points from the broker; see
    :func:`bridge_value`).

    Outcome: always proceeds, with the value.
    """

    type: ClassVar[NodeType] = NodeType.MqttBridge

    async def run(self, ctx: Context) -> Outcome:
        """Publish.

        Returns:
            Proceeds with the value published.

        Raises:
            ProcessorError: the topic holds a wildcard, the value is not JSON, the peer has no
                MQTT client, or the publish failed.
        """
        meta = ctx.node.meta
        if not isinstance(meta, MqttBridgeMeta):
            raise ProcessorError(f"node {ctx.node.id} is a {ctx.node.type}, not a MqttBridge")
        value = incoming(ctx)
        if not meta.publishes:
            return Outcome(proceed=True, value=value)
        if "+" in meta.topic or "#" in meta.topic:
            raise ProcessorError(f"cannot publish to the wildcard topic {meta.topic!r}")
        try:
            payload = orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise ProcessorError(f"the value cannot be published as JSON: {exc}") from None
        mqtt: MqttPublisher = resource(ctx, "mqtt")
        try:
            await _settle(mqtt.publish(meta.topic, payload, meta.qos, retain=meta.retain))
        except _BACKEND_ERRORS as exc:
            raise ProcessorError(f"cannot publish to {meta.topic!r}: {exc}") from None
        return Outcome(proceed=True, value=value)


def bridge_value(payload: bytes, value_path: str) -> Any:
    """Read the value a subscribing bridge's message carries.

    * A JSON object: the value at ``value_path`` (keys joined by ``.``; a key that is a whole
      number also indexes a list), or the whole object if the path is empty.
    * Any other JSON value (``21.5``, ``true``, ``"open"``): the value itself.
    * Text that is not JSON (``on``, ``21.5 C``): the text, stripped; the data point decides
      whether it fits its data type.

    Returns:
        The value; never None.

    Raises:
        ProcessorError: the message is empty, too large, not UTF-8, JSON ``null``, or an
            object with nothing at ``value_path`` (the message says which).
    """
    if len(payload) > MAX_BRIDGE_PAYLOAD_BYTES:
        raise ProcessorError(
            f"message of {len(payload)} bytes, at most {MAX_BRIDGE_PAYLOAD_BYTES} are read"
        )
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ProcessorError(f"message is not UTF-8 text: {shown(payload)}") from None
    if not text:
        raise ProcessorError("message is empty")
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if isinstance(value, dict) and value_path:
        for key in value_path.split("."):
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                raise ProcessorError(f"message has no {value_path!r}: {shown(text)}")
    if value is None:
        raise ProcessorError(f"message carries no value (null): {shown(text)}")
    return value
