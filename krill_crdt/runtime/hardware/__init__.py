"""Hardware backends the Pin and Serial Device processors drive, each with a simulated twin.

- :mod:`.gpio`: :class:`PinBackend`, with :class:`LgpioPins` on a Raspberry Pi and
  :class:`SimulatedPins` everywhere else; :func:`open_backend` picks one from ``[gpio] backend``.
- :mod:`.serial`: :class:`SerialLink`, a reconnecting line reader over pyserial-asyncio (device
  paths and pyserial URLs, ``socket://`` and ``loop://`` included, so a simulated device is just
  a TCP server), with its pure parts :class:`LineSplitter` and :class:`LineParser`.

Neither lgpio nor pyserial is imported until a backend that needs it is opened.
"""

from __future__ import annotations

from .gpio import (
    DEFAULT_DEBOUNCE_MS,
    DEFAULT_PWM_FREQUENCY_HZ,
    EdgeCallback,
    GpioClosedError,
    GpioError,
    GpioUnavailableError,
    Level,
    LgpioPins,
    PinBackend,
    PinBusyError,
    PinModeError,
    PinNotSetUpError,
    PinValueError,
    PinWrite,
    SimulatedPins,
    apply_active_low,
    lgpio_unavailable_reason,
    open_backend,
)
from .serial import (
    MAX_LINE_BYTES,
    Backoff,
    LineParseError,
    LineParser,
    LineSplitter,
    LinkState,
    OverlongLine,
    OverlongLineError,
    SerialConfigError,
    SerialError,
    SerialLink,
    SerialLinkDownError,
    parse_number,
)

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_PWM_FREQUENCY_HZ",
    "MAX_LINE_BYTES",
    "Backoff",
    "EdgeCallback",
    "GpioClosedError",
    "GpioError",
    "GpioUnavailableError",
    "Level",
    "LgpioPins",
    "LineParseError",
    "LineParser",
    "LineSplitter",
    "LinkState",
    "OverlongLine",
    "OverlongLineError",
    "PinBackend",
    "PinBusyError",
    "PinModeError",
    "PinNotSetUpError",
    "PinValueError",
    "PinWrite",
    "SerialConfigError",
    "SerialError",
    "SerialLink",
    "SerialLinkDownError",
    "SimulatedPins",
    "apply_active_low",
    "lgpio_unavailable_reason",
    "open_backend",
    "parse_number",
]
