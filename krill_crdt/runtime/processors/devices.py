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
``"mqtt"``    :class:`MqttPublisher`       ``publish(topic, payload, qos)``, awaited if it
                                           returns an awaitable
============  ===========================  ==================================================

The runtime claims each Pin node's line (mode, pull, initial level) before its chain can run;
the processor only drives, reads or modulates a line that is already set up.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any, ClassVar, Protocol

import orjson

from ...errors import KrillError
from ...model import MqttBridgeMeta, NodeType, PinMeta
from ._values import incoming, resource, shown, to_bool, to_number, to_text
from .base import Context, Outcome, ProcessorError

__all__ = [
    "PWM_FREQUENCY_HZ",
    "GpioBackend",
    "MqttBridgeProcessor",
    "MqttPublisher",
    "PinProcessor",
    "SerialDeviceProcessor",
    "SerialSender",
]

#: PWM frequency of Pin nodes (their meta has none): well above the roughly 90 Hz at which an
#: LED stops visibly flickering, and low enough for software-timed PWM to keep its duty exact.
PWM_FREQUENCY_HZ = 200.0

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
    """The ``"mqtt"`` resource: publishes on the peer's broker connection."""

    def publish(self, topic: str, payload: bytes, qos: int) -> Awaitable[None] | None:
        """Publish one message (queued and ordered by the client). May be a plain or an
        ``async`` method."""
        ...


class PinProcessor:
    """A GPIO line, by its ``mode``.

    * ``output``: drives the logical state of the incoming value (a bool, a number not zero,
      a switch word); with no value (a button press) it toggles the pin. ``active_low`` makes
      logical true the electrical low level.
    * ``input``: reads the line and passes its logical state on.
    * ``pwm``: sets the duty cycle from the incoming number, in percent, 0 to 100
      (``active_low`` inverts it), at :data:`PWM_FREQUENCY_HZ`.

    Outcome: always proceeds, with the logical state (a bool) or the duty (a float).
    """

    type: ClassVar[NodeType] = NodeType.Pin

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
                return Outcome(proceed=True, value=gpio.read(meta.pin) != meta.active_low)
            if meta.mode == "pwm":
                gpio.pwm(meta.pin, 100.0 - duty if meta.active_low else duty, PWM_FREQUENCY_HZ)
                return Outcome(proceed=True, value=duty)
            # The electrical level equals the logical state unless the pin is active low.
            on = (gpio.read(meta.pin) == meta.active_low) if wanted is None else wanted
            gpio.write(meta.pin, on != meta.active_low)
        except _BACKEND_ERRORS as exc:
            raise ProcessorError(f"GPIO {meta.pin}: {exc}") from None
        return Outcome(proceed=True, value=on)

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
    """Publishes the incoming value to the bridge's ``topic`` with its ``qos``.

    The payload is the value as JSON (``21.5``, ``true``, ``"open"``, an object); None is
    published as ``null``. The topic must be a plain topic: a filter with ``+`` or ``#`` can
    be subscribed to, not published to.

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
        if "+" in meta.topic or "#" in meta.topic:
            raise ProcessorError(f"cannot publish to the wildcard topic {meta.topic!r}")
        value = incoming(ctx)
        try:
            payload = orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise ProcessorError(f"the value cannot be published as JSON: {exc}") from None
        mqtt: MqttPublisher = resource(ctx, "mqtt")
        try:
            await _settle(mqtt.publish(meta.topic, payload, meta.qos))
        except _BACKEND_ERRORS as exc:
            raise ProcessorError(f"cannot publish to {meta.topic!r}: {exc}") from None
        return Outcome(proceed=True, value=value)
