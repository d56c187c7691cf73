"""GPIO pin backends: the real one on a Raspberry Pi (lgpio) and a simulated twin.

Every backend speaks *electrical* levels: ``True`` is high, ``False`` is low, in both
directions, exactly as the pin sits on the header. A Pin node's ``active_low`` flag is applied
by the Pin processor, not here, with :func:`apply_active_low`; that keeps the backend a plain
mirror of the hardware, and keeps ``initial`` and ``shutdown`` (which :class:`PinMeta` defines
as levels) meaning the same thing whichever way a pin's logic runs.

The methods are plain calls, not coroutines: each is one kernel ioctl of a few microseconds
(or a dictionary update in the simulation), so a processor calls them straight from its
coroutine without blocking the loop. Edge callbacks always run on the event loop that was
running when :meth:`PinBackend.watch` was called, never on a library thread.

    pins = open_backend("auto")
    pins.setup(17, "output", initial="low", shutdown="low")
    pins.write(17, True)
    pins.setup(27, "input", pull="up")
    pins.watch(27, on_edge, debounce_ms=20)
    ...
    pins.close()  # every pin still set up is released to its shutdown level

:class:`krill_crdt.model.PinMeta` is the node-level description of a pin.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import importlib
import importlib.util
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from ...errors import KrillError
from ...model.meta import BCM_PIN_MAX

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_PWM_FREQUENCY_HZ",
    "MAX_PIN_DEBOUNCE_MS",
    "MAX_PWM_FREQUENCY_HZ",
    "MIN_PWM_FREQUENCY_HZ",
    "EdgeCallback",
    "GpioClosedError",
    "GpioError",
    "GpioUnavailableError",
    "Level",
    "LgpioPins",
    "PinBackend",
    "PinBusyError",
    "PinModeError",
    "PinNotSetUpError",
    "PinValueError",
    "PinWrite",
    "SimulatedPins",
    "apply_active_low",
    "lgpio_unavailable_reason",
    "open_backend",
]

log = logging.getLogger("krill.runtime.gpio")

#: Debounce of :meth:`PinBackend.watch` unless told otherwise. The contacts of common push
#: buttons and reed switches settle within a few milliseconds to about twenty; 50 ms covers
#: worn ones too while still feeling instant to a person pressing a button.
DEFAULT_DEBOUNCE_MS = 50

#: Longest debounce a watch accepts. Past a second it is no longer contact bounce but a hold
#: time, which a Debounce filter node expresses (and shows in the graph) better.
MAX_PIN_DEBOUNCE_MS = 1000

#: PWM frequency range: lgpio times PWM in software and accepts 0.1 Hz up to 10 kHz.
MIN_PWM_FREQUENCY_HZ = 0.1
MAX_PWM_FREQUENCY_HZ = 10_000.0

#: PWM frequency of :meth:`PinBackend.set_duty` when none was given before. Far above the
#: rate at which an LED's flicker can be seen, and a cycle of 5 ms is long enough for
#: software-timed PWM to hold the duty steady.
DEFAULT_PWM_FREQUENCY_HZ = 200.0

#: A level as a Pin node's meta spells it, or as a bool (``True`` is high).
Level = bool | Literal["low", "high"]

#: ``callback(pin, level, timestamp)``: ``level`` is the electrical level after the edge,
#: ``timestamp`` the Unix time (seconds) at which the edge was seen as settled.
EdgeCallback = Callable[[int, bool, float], None]

PinMode = Literal["input", "output", "pwm"]
PinPull = Literal["none", "up", "down"]

_MODES: tuple[str, ...] = ("input", "output", "pwm")
_PULLS: tuple[str, ...] = ("none", "up", "down")

# Where Linux shows the board's device-tree model; the second is the older location.
_MODEL_FILES = (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model"))
_GPIOCHIP_GLOB = "/dev/gpiochip*"


class GpioError(KrillError):
    """A GPIO operation failed; the message names the pin and the reason."""


class GpioUnavailableError(GpioError):
    """The requested pin backend cannot run on this host; the message says why."""


class GpioClosedError(GpioError):
    """The pin backend was used after :meth:`PinBackend.close`."""


class PinValueError(GpioError, ValueError):
    """A value given for a pin is out of range: pin number, mode, pull, level, duty,
    frequency or debounce."""


class PinModeError(GpioError):
    """The operation does not fit the pin's mode (writing to an input, watching an output)."""


class PinNotSetUpError(GpioError, LookupError):
    """The pin was used before :meth:`PinBackend.setup`."""


class PinBusyError(GpioError):
    """The pin is already set up; two Pin nodes claim one line, or a setup was repeated."""


def apply_active_low(value: bool, active_low: bool) -> bool:
    """Turn a logical value into an electrical level, or a level into a logical value.

    The mapping is its own inverse, so the Pin processor uses this one function both ways.

    Args:
        value: logical "on" (to write) or electrical high (read back).
        active_low: the pin's ``active_low`` flag.

    Returns:
        The value on the other side of the mapping.
    """
    return value != active_low


@dataclass(frozen=True, slots=True)
class PinWrite:
    """One thing the simulation drove onto a pin, kept in :attr:`SimulatedPins.history`.

    Attributes:
        pin: BCM number.
        action: ``setup`` (initial level), ``write``, ``pwm`` or ``release`` (shutdown level).
        level: the electrical level driven; ``None`` for ``pwm``.
        duty: PWM duty in percent; ``None`` unless ``pwm``.
        frequency: PWM frequency in Hz; ``None`` unless ``pwm``.
    """

    pin: int
    action: Literal["setup", "write", "pwm", "release"]
    level: bool | None = None
    duty: float | None = None
    frequency: float | None = None


@dataclass(slots=True)
class _Watch:
    callback: EdgeCallback
    loop: asyncio.AbstractEventLoop
    debounce_ms: int


@dataclass(slots=True)
class _Pin:
    mode: str
    pull: str
    shutdown: bool
    watch: _Watch | None = None
    frequency: float = DEFAULT_PWM_FREQUENCY_HZ


def _check_pin(pin: object) -> int:
    # bool is an int in Python; True as a pin number is a bug, not pin 1.
    if not isinstance(pin, int) or isinstance(pin, bool) or not 0 <= pin <= BCM_PIN_MAX:
        raise PinValueError(f"pin must be a BCM number 0..{BCM_PIN_MAX}, got {pin!r}")
    return pin


def _check_level(what: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("low", "high"):
        return value == "high"
    raise PinValueError(f"{what} must be 'low', 'high' or a bool, got {value!r}")


def _check_choice(what: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise PinValueError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _check_number(what: str, value: object, lo: float, hi: float, unit: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not lo <= value <= hi  # also false for NaN
    ):
        raise PinValueError(f"{what} must be {lo:g}..{hi:g} {unit}, got {value!r}")
    return float(value)


class PinBackend(ABC):
    """What a Pin processor drives: set up, write, read, PWM, watch edges, release.

    The public methods check their arguments and the pin's state and raise the same errors on
    every backend; a backend implements the ``_hw_*`` hooks, which are only called with valid
    arguments. A backend is not thread-safe: use it from the event loop thread.

    Attributes:
        kind: ``"lgpio"`` or ``"simulated"``.
    """

    kind: str = ""

    def __init__(self) -> None:
        self._pins: dict[int, _Pin] = {}
        self._closed = False

    # Public API.

    def setup(
        self,
        pin: int,
        mode: str,
        pull: str = "none",
        initial: Level = "low",
        *,
        shutdown: Level = "low",
    ) -> None:
        """Claim a pin and configure it.

        Args:
            pin: BCM number, 0..53.
            mode: ``input``, ``output`` or ``pwm``.
            pull: bias of an input: ``none``, ``up`` or ``down`` (ignored for other modes).
            initial: level an output or PWM pin is driven to at once.
            shutdown: level :meth:`close` leaves an output or PWM pin at if :meth:`release`
                was not called for it first.

        Raises:
            PinValueError: a value is out of range.
            PinBusyError: the pin is already set up; it stays as it was.
            GpioClosedError: the backend is closed.
            GpioError: the hardware refused the claim; the pin stays free.
        """
        self._check_open()
        pin = _check_pin(pin)
        mode = _check_choice("mode", mode, _MODES)
        pull = _check_choice("pull", pull, _PULLS)
        initial_level = _check_level("initial", initial)
        shutdown_level = _check_level("shutdown", shutdown)
        held = self._pins.get(pin)
        if held is not None:
            raise PinBusyError(f"pin {pin} is already set up as {held.mode}; release it first")

        self._hw_claim(pin, mode, pull, initial_level)
        self._pins[pin] = _Pin(mode, pull, shutdown_level)
        log.debug("pin %d: set up as %s (pull %s, initial %s)", pin, mode, pull, initial_level)

    def write(self, pin: int, high: bool) -> None:
        """Drive an output pin.

        Args:
            pin: a pin set up as ``output``.
            high: the electrical level.

        Raises:
            PinNotSetUpError: the pin is not set up.
            PinModeError: the pin is an input or a PWM pin (use :meth:`pwm`).
            PinValueError: ``high`` is not a bool.
            GpioClosedError: the backend is closed.
            GpioError: the hardware refused the write.
        """
        state = self._claimed(pin)
        if state.mode != "output":
            raise PinModeError(f"pin {pin} is set up as {state.mode}; only an output is written")
        if not isinstance(high, bool):
            raise PinValueError(f"pin {pin}: level must be a bool, got {high!r}")
        self._hw_write(pin, high)

    def read(self, pin: int) -> bool:
        """Sample a pin's electrical level now (an output reads back what it drives).

        This is the raw level, not debounced; debouncing applies to :meth:`watch` only.

        Args:
            pin: a pin set up as ``input`` or ``output``.

        Returns:
            ``True`` when the pin is high.

        Raises:
            PinNotSetUpError: the pin is not set up.
            PinModeError: the pin is a PWM pin, whose level changes every cycle.
            GpioClosedError: the backend is closed.
            GpioError: the hardware refused the read.
        """
        state = self._claimed(pin)
        if state.mode == "pwm":
            raise PinModeError(f"pin {pin} is a PWM pin; its level changes every cycle")
        return self._hw_read(pin)

    def pwm(self, pin: int, duty: float, frequency: float) -> None:
        """Start or change PWM on a pin set up as ``pwm``.

        Args:
            pin: a pin set up as ``pwm``.
            duty: share of each cycle spent high, in percent, 0..100.
            frequency: cycles per second, :data:`MIN_PWM_FREQUENCY_HZ` to
                :data:`MAX_PWM_FREQUENCY_HZ`.

        Raises:
            PinNotSetUpError: the pin is not set up.
            PinModeError: the pin is not a PWM pin.
            PinValueError: duty or frequency is out of range; the output is unchanged.
            GpioClosedError: the backend is closed.
            GpioError: the hardware refused.
        """
        state = self._claimed(pin)
        if state.mode != "pwm":
            raise PinModeError(f"pin {pin} is set up as {state.mode}; set it up as pwm first")
        duty = _check_number(f"pin {pin}: duty", duty, 0.0, 100.0, "%")
        frequency = _check_number(
            f"pin {pin}: frequency", frequency, MIN_PWM_FREQUENCY_HZ, MAX_PWM_FREQUENCY_HZ, "Hz"
        )
        self._hw_pwm(pin, duty, frequency)
        state.frequency = frequency

    def set_duty(self, pin: int, duty: float) -> None:
        """Set a PWM pin's duty as a fraction, keeping its frequency.

        The frequency is the one last given to :meth:`pwm`, or
        :data:`DEFAULT_PWM_FREQUENCY_HZ`.

        Args:
            pin: a pin set up as ``pwm``.
            duty: 0.0 (always low) to 1.0 (always high).

        Raises:
            PinNotSetUpError: the pin is not set up.
            PinModeError: the pin is not a PWM pin.
            PinValueError: the duty is outside 0.0..1.0; the output is unchanged.
            GpioClosedError: the backend is closed.
            GpioError: the hardware refused.
        """
        state = self._claimed(pin)
        fraction = _check_number(f"pin {pin}: duty", duty, 0.0, 1.0, "(fraction)")
        self.pwm(pin, fraction * 100.0, state.frequency)

    def watch(
        self, pin: int, callback: EdgeCallback, debounce_ms: int = DEFAULT_DEBOUNCE_MS
    ) -> None:
        """Call ``callback(pin, level, timestamp)`` on every settled edge of an input, both ways.

        An edge counts once the new level has held for ``debounce_ms``; a bounce that returns
        to the previous level within the window reports nothing. The callback runs on the
        event loop that is running now; an exception it raises is logged and swallowed, so a
        faulty callback cannot stop later edges. Watching a watched pin replaces the callback
        and the debounce.

        Args:
            pin: a pin set up as ``input``.
            callback: what to call per edge.
            debounce_ms: 0..:data:`MAX_PIN_DEBOUNCE_MS`; 0 reports every change.

        Raises:
            PinNotSetUpError: the pin is not set up.
            PinModeError: the pin is not an input.
            PinValueError: the debounce is out of range.
            GpioError: no event loop is running, or the hardware refused.
            GpioClosedError: the backend is closed.
        """
        state = self._claimed(pin)
        if state.mode != "input":
            raise PinModeError(f"pin {pin} is set up as {state.mode}; only an input is watched")
        if (
            not isinstance(debounce_ms, int)
            or isinstance(debounce_ms, bool)
            or not 0 <= debounce_ms <= MAX_PIN_DEBOUNCE_MS
        ):
            raise PinValueError(
                f"pin {pin}: debounce must be 0..{MAX_PIN_DEBOUNCE_MS} ms, got {debounce_ms!r}"
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise GpioError(f"pin {pin}: watch needs a running event loop") from None

        if state.watch is not None:
            self._hw_unwatch(pin)
            state.watch = None
        self._hw_watch(pin, debounce_ms)
        state.watch = _Watch(callback, loop, debounce_ms)

    def unwatch(self, pin: int) -> None:
        """Stop reporting edges of a pin; nothing happens if it is not watched.

        Raises:
            PinNotSetUpError: the pin is not set up.
            GpioClosedError: the backend is closed.
        """
        state = self._claimed(pin)
        if state.watch is not None:
            state.watch = None
            self._hw_unwatch(pin)

    def release(self, pin: int, shutdown_level: Level | None = None) -> bool:
        """Stop using a pin and leave it in its shutdown state.

        An output or PWM pin is driven to the shutdown level before it is freed. An input is
        freed without being driven: turning an input into an output could short whatever
        drives it (a button to 3.3 V, a sensor's output), so its shutdown level is ignored.

        Args:
            pin: BCM number.
            shutdown_level: level to leave an output at; ``None`` uses the one given to
                :meth:`setup`.

        Returns:
            Whether the pin was set up (releasing a free pin does nothing).

        Raises:
            PinValueError: the pin number or level is out of range.
            GpioClosedError: the backend is closed.
            GpioError: the hardware refused; the pin counts as released all the same.
        """
        self._check_open()
        pin = _check_pin(pin)
        level = None if shutdown_level is None else _check_level("shutdown", shutdown_level)
        state = self._pins.pop(pin, None)
        if state is None:
            return False

        if state.watch is not None:
            state.watch = None
            self._hw_unwatch(pin)
        drive = None if state.mode == "input" else (state.shutdown if level is None else level)
        self._hw_release(pin, drive)
        log.debug("pin %d: released (left %s)", pin, "undriven" if drive is None else drive)
        return True

    def close(self) -> None:
        """Release every pin still set up to its shutdown level, then free the backend.

        Calling it again does nothing. A pin that fails to release is logged and the others
        are still released.
        """
        if self._closed:
            return
        for pin in sorted(self._pins):
            try:
                self.release(pin)
            except GpioError as err:
                log.warning("pin %d: release on close failed: %s", pin, err)
        self._closed = True
        self._hw_close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def mode_of(self, pin: int) -> str | None:
        """The mode a pin is set up in, or ``None`` when it is free."""
        state = self._pins.get(pin)
        return None if state is None else state.mode

    # Shared helpers.

    def _check_open(self) -> None:
        if self._closed:
            raise GpioClosedError(f"the {self.kind} pin backend is closed")

    def _claimed(self, pin: int) -> _Pin:
        self._check_open()
        pin = _check_pin(pin)
        state = self._pins.get(pin)
        if state is None:
            raise PinNotSetUpError(f"pin {pin} is not set up")
        return state

    def _deliver(self, pin: int, level: bool, timestamp: float) -> None:
        # Runs on the watching loop. The watch may have ended between the edge and now.
        state = self._pins.get(pin)
        if self._closed or state is None or state.watch is None:
            return
        try:
            state.watch.callback(pin, level, timestamp)
        except Exception:
            log.exception("pin %d: edge callback failed", pin)

    # Hardware hooks.

    @abstractmethod
    def _hw_claim(self, pin: int, mode: str, pull: str, initial: bool) -> None: ...

    @abstractmethod
    def _hw_write(self, pin: int, high: bool) -> None: ...

    @abstractmethod
    def _hw_read(self, pin: int) -> bool: ...

    @abstractmethod
    def _hw_pwm(self, pin: int, duty: float, frequency: float) -> None: ...

    @abstractmethod
    def _hw_watch(self, pin: int, debounce_ms: int) -> None: ...

    @abstractmethod
    def _hw_unwatch(self, pin: int) -> None: ...

    @abstractmethod
    def _hw_release(self, pin: int, level: bool | None) -> None:
        """Free the pin, first driving it to ``level`` unless that is ``None``."""

    @abstractmethod
    def _hw_close(self) -> None: ...


class SimulatedPins(PinBackend):
    """An in-memory pin backend for tests and for hosts without GPIO.

    Outputs remember what was driven onto them (:attr:`history`, :meth:`levels`,
    :meth:`level`); inputs follow :meth:`inject`, and watched inputs report edges with the
    same debounce rule as the hardware, on the event loop.

    An input that nothing has driven reads as its pull: high with ``up``, low otherwise (a
    floating input has no defined level; low is the simulation's choice).

    Attributes:
        history: every level or PWM setting driven onto any pin, oldest first.
    """

    kind = "simulated"

    def __init__(self) -> None:
        super().__init__()
        self.history: list[PinWrite] = []
        self._levels: dict[int, bool] = {}
        self._duty: dict[int, tuple[float, float]] = {}
        # Per watched input: the last level reported and the pending debounce timer.
        self._reported: dict[int, bool] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}

    # Test helpers.

    def inject(self, pin: int, level: bool) -> None:
        """Make an input pin's level change, as a button or sensor would.

        Args:
            pin: a pin set up as ``input``.
            level: the new electrical level.

        Raises:
            PinNotSetUpError: the pin is not set up.
            PinModeError: the pin is not an input.
            GpioClosedError: the backend is closed.
        """
        state = self._claimed(pin)
        if state.mode != "input":
            raise PinModeError(f"pin {pin} is set up as {state.mode}; only an input is injected")
        self._levels[pin] = bool(level)
        if state.watch is None:
            return

        # Every change restarts the window, as lgpio's debounce does: an edge counts only once
        # the level has held for the whole window.
        pending = self._timers.pop(pin, None)
        if pending is not None:
            pending.cancel()
        self._timers[pin] = state.watch.loop.call_later(
            state.watch.debounce_ms / 1000.0, self._settle, pin
        )

    def level(self, pin: int) -> bool:
        """The electrical level a pin is at now, set up or not (a released output keeps its
        shutdown level; a pin never touched is low)."""
        return self._levels.get(_check_pin(pin), False)

    def levels(self, pin: int) -> list[bool]:
        """Every level driven onto a pin, oldest first: initial, writes, shutdown."""
        return [w.level for w in self.history if w.pin == pin and w.level is not None]

    def duty(self, pin: int) -> tuple[float, float] | None:
        """The PWM ``(duty, frequency)`` a pin runs at, or ``None`` when it runs none."""
        return self._duty.get(pin)

    # Hooks.

    def _hw_claim(self, pin: int, mode: str, pull: str, initial: bool) -> None:
        if mode == "input":
            self._levels[pin] = pull == "up"
            return
        self._levels[pin] = initial
        self.history.append(PinWrite(pin, "setup", level=initial))

    def _hw_write(self, pin: int, high: bool) -> None:
        self._levels[pin] = high
        self.history.append(PinWrite(pin, "write", level=high))

    def _hw_read(self, pin: int) -> bool:
        return self._levels.get(pin, False)

    def _hw_pwm(self, pin: int, duty: float, frequency: float) -> None:
        self._duty[pin] = (duty, frequency)
        self.history.append(PinWrite(pin, "pwm", duty=duty, frequency=frequency))

    def _hw_watch(self, pin: int, debounce_ms: int) -> None:
        self._reported[pin] = self._levels.get(pin, False)

    def _hw_unwatch(self, pin: int) -> None:
        pending = self._timers.pop(pin, None)
        if pending is not None:
            pending.cancel()
        self._reported.pop(pin, None)

    def _hw_release(self, pin: int, level: bool | None) -> None:
        self._duty.pop(pin, None)
        if level is not None:
            self._levels[pin] = level
            self.history.append(PinWrite(pin, "release", level=level))

    def _hw_close(self) -> None:
        for pending in self._timers.values():
            pending.cancel()
        self._timers.clear()

    def _settle(self, pin: int) -> None:
        self._timers.pop(pin, None)
        level = self._levels.get(pin, False)
        if pin not in self._reported or self._reported[pin] == level:
            return  # the level came back within the window: a bounce, not an edge
        self._reported[pin] = level
        self._deliver(pin, level, time.time())


def _model_text(files: Sequence[Path]) -> str | None:
    for path in files:
        try:
            # The device tree stores the model NUL-terminated.
            return path.read_bytes().rstrip(b"\0").decode("utf-8", "replace").strip()
        except OSError:
            continue
    return None


def _chip_number(path: str) -> int:
    match = re.search(r"(\d+)$", path)
    return int(match.group(1)) if match else 1 << 30


def lgpio_unavailable_reason(
    model_files: Sequence[Path] = _MODEL_FILES, chip_glob: str = _GPIOCHIP_GLOB
) -> str | None:
    """Say why the lgpio backend cannot run here, or ``None`` when it can.

    Args:
        model_files: where to read the board model (the device tree), first found wins.
        chip_glob: the GPIO character devices to look for.

    Returns:
        A sentence naming the first missing piece, or ``None``.
    """
    model = _model_text(model_files)
    if model is None:
        return "this host is not a Raspberry Pi (it has no device-tree model)"
    if "Raspberry Pi" not in model:
        return f"this host is not a Raspberry Pi (its device-tree model is {model!r})"
    chips = sorted(glob.glob(chip_glob), key=_chip_number)
    if not chips:
        return f"no GPIO character device matches {chip_glob}"
    if not any(os.access(chip, os.R_OK | os.W_OK) for chip in chips):
        return f"no permission to use {chips[0]} (add the user to the 'gpio' group)"
    if importlib.util.find_spec("lgpio") is None:
        return "the lgpio module is not installed (pip install 'krill-crdt[gpio]')"
    return None


class LgpioPins(PinBackend):
    """Pins of the Raspberry Pi's GPIO character device, driven through lgpio.

    Edges arrive on lgpio's notification thread; they are stamped there and handed to the
    watching event loop with ``call_soon_threadsafe``, so callbacks run on the loop only.
    """

    # NOTE: importing lgpio starts its notification thread and creates a FIFO named
    # ``.lgd-nfy<N>`` in the current working directory. The module is therefore imported only
    # once the host is known to be a Pi with a usable gpiochip, and a daemon should run with
    # its working directory somewhere writable, such as its data directory.
    # NOTE: this class runs only where a gpiochip exists; the test suite covers its refusal
    # to open elsewhere and the shared checks, not the lgpio calls themselves.

    kind = "lgpio"

    def __init__(self, chip: int | None = None) -> None:
        """Open the GPIO chip.

        Args:
            chip: ``/dev/gpiochip<chip>`` to use; ``None`` picks the SoC's own pin bank.

        Raises:
            GpioUnavailableError: this host is not a Pi, has no usable gpiochip, lacks lgpio,
                or the chip cannot be opened; the message says which.
        """
        super().__init__()
        reason = lgpio_unavailable_reason()
        if reason is not None:
            raise GpioUnavailableError(f"lgpio pin backend unavailable: {reason}")
        self._lg: ModuleType = importlib.import_module("lgpio")
        number = _pick_chip(self._lg) if chip is None else chip
        try:
            self._handle: int = self._lg.gpiochip_open(number)
        except self._lg.error as err:
            raise GpioUnavailableError(f"cannot open /dev/gpiochip{number}: {err}") from None
        self._chip = number
        self._alerts: dict[int, Any] = {}
        self._pwm: set[int] = set()
        log.info("gpio: using lgpio on /dev/gpiochip%d", number)

    def _call(self, pin: int, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        # One place turns lgpio's own exception into ours, naming the pin.
        try:
            return fn(self._handle, *args)
        except self._lg.error as err:
            raise GpioError(f"pin {pin}: {what} failed: {err}") from None

    def _flags(self, pull: str) -> int:
        flags: dict[str, int] = {
            "none": self._lg.SET_PULL_NONE,
            "up": self._lg.SET_PULL_UP,
            "down": self._lg.SET_PULL_DOWN,
        }
        return flags[pull]

    def _hw_claim(self, pin: int, mode: str, pull: str, initial: bool) -> None:
        if mode == "input":
            self._call(pin, "claim input", self._lg.gpio_claim_input, pin, self._flags(pull))
        else:
            self._call(pin, "claim output", self._lg.gpio_claim_output, pin, int(initial))

    def _hw_write(self, pin: int, high: bool) -> None:
        self._call(pin, "write", self._lg.gpio_write, pin, int(high))

    def _hw_read(self, pin: int) -> bool:
        return bool(self._call(pin, "read", self._lg.gpio_read, pin))

    def _hw_pwm(self, pin: int, duty: float, frequency: float) -> None:
        self._call(pin, "pwm", self._lg.tx_pwm, pin, frequency, duty)
        self._pwm.add(pin)

    def _hw_watch(self, pin: int, debounce_ms: int) -> None:
        # An input becomes an alert source by claiming it again with edge flags; the pull
        # given at setup must be repeated or the claim would reset it.
        pull = self._pins[pin].pull
        lg = self._lg
        self._call(pin, "claim alert", lg.gpio_claim_alert, pin, lg.BOTH_EDGES, self._flags(pull))
        self._call(pin, "set debounce", lg.gpio_set_debounce_micros, pin, debounce_ms * 1000)
        self._alerts[pin] = lg.callback(self._handle, pin, lg.BOTH_EDGES, self._on_alert)

    def _on_alert(self, chip: int, pin: int, level: int, tick: int) -> None:
        # Runs on lgpio's thread: touch nothing shared, hop to the loop at once. The kernel's
        # tick has no agreed epoch, so the edge is stamped with Unix time on arrival.
        if level not in (0, 1):
            return  # 2 is a watchdog timeout, not an edge
        state = self._pins.get(pin)
        watch = None if state is None else state.watch
        if watch is None:
            return
        # A closed loop raises RuntimeError: the peer is shutting down and nobody listens.
        with contextlib.suppress(RuntimeError):
            watch.loop.call_soon_threadsafe(self._deliver, pin, bool(level), time.time())

    def _hw_unwatch(self, pin: int) -> None:
        alert = self._alerts.pop(pin, None)
        if alert is not None:
            alert.cancel()
        # Claim the line again as a plain input so no more alerts are queued for it.
        pull = self._pins[pin].pull if pin in self._pins else "none"
        self._call(pin, "claim input", self._lg.gpio_claim_input, pin, self._flags(pull))

    def _hw_release(self, pin: int, level: bool | None) -> None:
        # NOTE: the GPIO character device does not promise that a freed line keeps the level
        # it was last driven to; that is up to the board's GPIO driver. On boards whose driver
        # resets freed lines, the shutdown level holds only until the line is freed.
        try:
            if pin in self._pwm:
                self._pwm.discard(pin)
                self._call(pin, "stop pwm", self._lg.tx_pwm, pin, 0, 0)
            if level is not None:
                self._call(pin, "drive shutdown", self._lg.gpio_claim_output, pin, int(level))
        finally:
            self._call(pin, "free", self._lg.gpio_free, pin)

    def _hw_close(self) -> None:
        for alert in self._alerts.values():
            alert.cancel()
        self._alerts.clear()
        try:
            self._lg.gpiochip_close(self._handle)
        except self._lg.error as err:
            log.warning("gpio: closing /dev/gpiochip%d failed: %s", self._chip, err)


def _pick_chip(lg: ModuleType) -> int:
    """The gpiochip that holds the SoC's header pins, by its label.

    The number moved between boards and kernels (gpiochip0 on a Pi 4, gpiochip4 on a Pi 5 with
    older kernels, gpiochip0 again with newer ones); the SoC's bank is labelled ``pinctrl-*``.
    """
    for path in sorted(glob.glob(_GPIOCHIP_GLOB), key=_chip_number):
        number = _chip_number(path)
        try:
            handle = lg.gpiochip_open(number)
        except lg.error:
            continue
        try:
            label = str(lg.gpio_get_chip_info(handle)[3])
        except lg.error:
            label = ""
        finally:
            lg.gpiochip_close(handle)
        if label.startswith("pinctrl-"):
            return number
    return 0


def open_backend(kind: str = "auto") -> PinBackend:
    """Open the pin backend ``[gpio] backend`` names.

    Args:
        kind: ``"lgpio"`` (real pins; fail if impossible), ``"simulated"``, or ``"auto"``:
            lgpio on a Raspberry Pi with a usable gpiochip, else simulated with a warning.

    Returns:
        The backend, ready for :meth:`PinBackend.setup`.

    Raises:
        GpioUnavailableError: ``"lgpio"`` was asked for on a host where it cannot run.
        PinValueError: ``kind`` is none of the three.
    """
    if kind == "simulated":
        return SimulatedPins()
    if kind == "lgpio":
        return LgpioPins()
    if kind != "auto":
        raise PinValueError(f"gpio backend must be auto, lgpio or simulated, got {kind!r}")

    reason = lgpio_unavailable_reason()
    if reason is None:
        try:
            return LgpioPins()
        except GpioUnavailableError as err:
            reason = str(err)
    log.warning("gpio: using simulated pins, Pin nodes will not drive real hardware: %s", reason)
    return SimulatedPins()
