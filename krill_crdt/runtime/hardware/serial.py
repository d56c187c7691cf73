"""Serial devices: a line-oriented link that reconnects by itself, and its pure parts.

A :class:`SerialLink` opens the port of a Serial Device node (a device path or a pyserial URL:
``/dev/ttyUSB0``, ``socket://host:port``, ``loop://``), cuts what arrives into lines at the
node's terminator, turns each line into a value by the node's parse rule and hands
``(value, raw_line, timestamp)`` to a callback. A line that does not parse is reported and
skipped; it never stops the link. When the device goes away, or cannot be opened, the link
retries with exponential backoff and jitter and says so through a state callback.

    async with SerialLink(meta, on_value, on_error=on_bad_line, on_state=on_state) as link:
        await link.wait_connected(5.0)
        link.send("READ")

The pure parts, :class:`LineSplitter` (bytes to lines, bounded) and :class:`LineParser` (line
to value), do no I/O, so they are tested and fuzzed on their own.

Parse rules:

- ``number``: the whole line is one decimal number, optionally followed by a unit made of
  letters and symbols (``21.5``, ``-3 °C``, ``1013.2hPa``, ``55 %``). The unit is dropped, not
  checked against the data point's unit: a device that prints one prints it on every line.
  Thousands separators, decimal commas, hexadecimal, ``nan`` and ``inf`` are refused.
- ``text``: the whole line, as text.
- ``regex``: the text of the group named ``value`` if the pattern has one, else of its first
  group, from the first place the pattern matches (``re.search``; anchor it to match whole
  lines). The text is passed on as it is: the data point it feeds converts it by its own data
  type (with :func:`parse_number` for numbers).

Every rule first strips whitespace around the line, so a terminator that is half the one the
device sends (``\\r`` against ``\\r\\n``) leaves nothing behind; lines that are then empty are
skipped without a report, as devices send them as keep-alives or between blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

from ...errors import KrillError
from ...model.meta import MAX_SNAPSHOT_TEXT_CHARS, MAX_UNIT_CHARS, SerialDeviceMeta

__all__ = [
    "BACKOFF_CAP_S",
    "BACKOFF_INITIAL_S",
    "MAX_LINE_BYTES",
    "POLL_INTERVAL_S",
    "Backoff",
    "ErrorCallback",
    "LineParseError",
    "LineParser",
    "LineSplitter",
    "LinkState",
    "OverlongLine",
    "OverlongLineError",
    "SerialConfigError",
    "SerialError",
    "SerialLink",
    "SerialLinkDownError",
    "StateCallback",
    "ValueCallback",
    "parse_number",
]

log = logging.getLogger("krill.runtime.serial")

#: Longest line kept, terminator excluded. A reading is a number or a short status line; the
#: longest standard sensor sentence (NMEA 0183) is 82 characters. 1 KiB is a dozen of those and
#: as long as the longest text a data point keeps (MAX_SNAPSHOT_TEXT_CHARS), so every line a
#: text data point could keep fits. The bound also caps memory per device when a device never
#: sends the terminator, and the length a user's regex pattern ever runs over.
MAX_LINE_BYTES = MAX_SNAPSHOT_TEXT_CHARS

#: First reconnect delay. Short, because a device that was unplugged for a moment (a USB
#: adapter re-enumerating, a serial server restarting) is usually back within a second.
BACKOFF_INITIAL_S = 0.5

#: Longest reconnect delay. A device plugged back in is picked up within half a minute, and a
#: device gone for good costs two open attempts a minute.
BACKOFF_CAP_S = 30.0

#: How often a port without a file descriptor (``loop://``, ``rfc2217://``) is polled for
#: input; the event loop can only wait on descriptors. 10 ms is below what a person notices and
#: costs a hundred cheap calls a second per such port.
POLL_INTERVAL_S = 0.01

# A connection that stays up this long counts as healthy and resets the backoff; one that
# drops sooner keeps growing it, so a device that accepts and then drops every connection
# cannot make the link reconnect in a tight loop.
_STABLE_CONNECTION_S = 10.0

# How long close() waits for the transport to flush and close the port before giving up.
_CLOSE_WAIT_S = 1.0

# How much of an offending line an error message shows.
_SHOWN_CHARS = 60

_NUMBER = re.compile(
    r"([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"  # the number
    r"\s*"
    r"((?:[^\W\d_]|[%°‰'\"])[^\s\d]*)?"  # an optional unit: starts with a letter or symbol
)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_RULES = ("number", "text", "regex")


class SerialError(KrillError):
    """A serial device failed; the message names the port."""


class SerialConfigError(SerialError, ValueError):
    """A parse rule, pattern, terminator or limit given to the serial layer is invalid."""


class SerialLinkDownError(SerialError):
    """A command was sent while the link is not connected (reconnecting, or closed)."""


class LineParseError(SerialError, ValueError):
    """A line could not be turned into a value; the link skips it and goes on.

    Attributes:
        line: the offending line as received, shortened for display.
        reason: what is wrong with it, in words.
    """

    def __init__(self, line: str, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line} {reason}")


class OverlongLineError(LineParseError):
    """A line grew past the length limit; it was dropped up to its terminator."""


def _shown(text: str | bytes) -> str:
    cut = text[:_SHOWN_CHARS]
    more = "..." if len(text) > _SHOWN_CHARS else ""
    return f"{cut!r}{more}"


def parse_number(text: str) -> float:
    """Read a decimal number with an optional trailing unit (``"21.5 °C"`` -> ``21.5``).

    Args:
        text: the text; whitespace around it is ignored.

    Returns:
        The number.

    Raises:
        LineParseError: the text is not a finite number, or what follows it is not a unit.
    """
    match = _NUMBER.fullmatch(text.strip())
    if match is None:
        raise LineParseError(_shown(text), "is not a number")
    unit = match.group(2)
    if unit is not None and len(unit) > MAX_UNIT_CHARS:
        raise LineParseError(_shown(text), f"has a unit longer than {MAX_UNIT_CHARS} characters")
    value = float(match.group(1))
    if not math.isfinite(value):
        raise LineParseError(_shown(text), "is not a finite number")
    return value


class LineParser:
    """Turns one line into a value by a Serial Device node's parse rule.

    Pure: no I/O, no state between lines. Everything a line can hold, however broken, ends in
    a value or a :class:`LineParseError`.
    """

    __slots__ = ("_group", "_max_chars", "_regex", "rule")

    def __init__(self, rule: str, pattern: str = "", *, max_chars: int = MAX_LINE_BYTES) -> None:
        """Set up the rule.

        Args:
            rule: ``number``, ``text`` or ``regex``.
            pattern: the regular expression of the ``regex`` rule; ignored by the others.
            max_chars: longest line parsed; a longer one is refused before any matching.

        Raises:
            SerialConfigError: unknown rule, or a pattern that does not compile or has no
                capture group.
        """
        if rule not in _RULES:
            raise SerialConfigError(f"parse rule must be one of {', '.join(_RULES)}, got {rule!r}")
        self.rule = rule
        self._max_chars = max_chars
        self._regex: re.Pattern[str] | None = None
        self._group: int | str = 1
        if rule == "regex":
            try:
                self._regex = re.compile(pattern)
            except (re.error, OverflowError, RecursionError, ValueError) as err:
                raise SerialConfigError(f"pattern {_shown(pattern)} is invalid: {err}") from None
            if self._regex.groups < 1:
                raise SerialConfigError(f"pattern {_shown(pattern)} has no capture group")
            self._group = "value" if "value" in self._regex.groupindex else 1

    def decode(self, raw: bytes) -> str:
        """Decode a line's bytes as UTF-8.

        Raises:
            LineParseError: the bytes are not UTF-8.
        """
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LineParseError(_shown(raw), "is not UTF-8 text") from None

    def parse(self, line: str | bytes) -> float | str:
        """Turn one line, terminator already removed, into its value.

        Args:
            line: the line, as text or as received bytes (decoded as UTF-8).

        Returns:
            A float for ``number``, a str for ``text`` and ``regex``.

        Raises:
            LineParseError: the line does not fit the rule; the message says how.
        """
        text = self.decode(line) if isinstance(line, bytes) else line
        if len(text) > self._max_chars:
            raise OverlongLineError(_shown(text), f"is longer than {self._max_chars} characters")
        text = text.strip()
        if not text:
            raise LineParseError("''", "is empty")

        if self.rule == "number":
            return parse_number(text)
        if self.rule == "text":
            control = _CONTROL.search(text)
            if control is not None:
                raise LineParseError(
                    _shown(text), f"holds the control character {control.group()!r}"
                )
            return text

        assert self._regex is not None  # set whenever the rule is regex
        # NOTE: the pattern runs on the caller's thread (the event loop). The line bound caps
        # polynomial backtracking, but a pattern with nested repeats can still take
        # exponential time on a line of a few dozen characters; Python's re cannot be
        # interrupted, so such a pattern would stall the loop.
        match = self._regex.search(text)
        if match is None:
            raise LineParseError(
                _shown(text), f"does not match the pattern {_shown(self._regex.pattern)}"
            )
        value = match.group(self._group)
        if not value:
            raise LineParseError(_shown(text), "matches the pattern but its group captured nothing")
        return str(value)


@dataclass(frozen=True, slots=True)
class OverlongLine:
    """Marks a line :class:`LineSplitter` dropped for growing past its limit.

    Attributes:
        head: the line's first bytes, for the report.
    """

    head: bytes


class LineSplitter:
    """Cuts a byte stream into lines at a terminator, never holding more than a bounded line.

    A line that grows past ``max_bytes`` without a terminator is reported once, as an
    :class:`OverlongLine`, as soon as it crosses the limit (its end may never come), and the
    bytes up to its terminator are dropped.
    """

    __slots__ = ("_buffer", "_dropping", "_max", "_terminator")

    def __init__(self, terminator: bytes, max_bytes: int = MAX_LINE_BYTES) -> None:
        """Set up an empty splitter.

        Raises:
            SerialConfigError: the terminator is empty or the limit is below 1.
        """
        if not terminator or max_bytes < 1:
            raise SerialConfigError("a line needs a non-empty terminator and a limit of 1 or more")
        self._terminator = terminator
        self._max = max_bytes
        self._buffer = bytearray()
        self._dropping = False

    @property
    def max_bytes(self) -> int:
        """Longest line kept, terminator excluded."""
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes held for a line not yet complete; never more than the limit plus a
        terminator's length."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget any partial line (a new connection starts clean)."""
        self._buffer.clear()
        self._dropping = False

    def feed(self, data: bytes) -> list[bytes | OverlongLine]:
        """Take the next bytes; return the lines they complete, in order.

        Returns:
            Complete lines without their terminator, and an :class:`OverlongLine` where a line
            was dropped.
        """
        out: list[bytes | OverlongLine] = []
        buffer = self._buffer
        buffer += data
        term = self._terminator
        # Bytes a terminator may still be completing; a line of exactly the limit whose
        # terminator has only half arrived is not yet overlong.
        tail = len(term) - 1

        while buffer:
            end = buffer.find(term)

            # Step 1: inside an overlong line, drop up to its terminator.
            if self._dropping:
                if end < 0:
                    del buffer[: len(buffer) - tail]
                    break
                del buffer[: end + len(term)]
                self._dropping = False
                continue

            # Step 2: a complete line within the limit.
            if 0 <= end <= self._max:
                out.append(bytes(buffer[:end]))
                del buffer[: end + len(term)]
                continue

            # Step 3: a line past the limit, whether or not its end is here yet.
            if end > self._max or len(buffer) > self._max + tail:
                out.append(OverlongLine(bytes(buffer[:_SHOWN_CHARS])))
                if end >= 0:
                    del buffer[: end + len(term)]
                else:
                    self._dropping = True
                    del buffer[: len(buffer) - tail]
                continue

            break  # a partial line: wait for more bytes
        return out


class Backoff:
    """Exponential backoff with jitter: each delay is between half and all of
    ``min(cap, initial * 2**attempt)``.

    Keeping half the delay fixed stops a retry storm right after a device comes back; the
    random half spreads out links that lost their devices at the same moment (one serial
    server serving several ports).
    """

    __slots__ = ("_attempt", "_cap", "_initial", "_rng")

    def __init__(
        self,
        initial: float = BACKOFF_INITIAL_S,
        cap: float = BACKOFF_CAP_S,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < initial <= cap:
            raise SerialConfigError(f"backoff needs 0 < initial <= cap, got {initial}, {cap}")
        self._initial = initial
        self._cap = cap
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt, in seconds; each call counts one attempt."""
        # The exponent stops growing once the cap is reached, so it cannot overflow.
        ceiling = min(self._cap, self._initial * 2.0 ** min(self._attempt, 64))
        self._attempt += 1
        return ceiling / 2 + self._rng.uniform(0.0, ceiling / 2)

    def reset(self) -> None:
        """Start again from the initial delay."""
        self._attempt = 0


@dataclass(frozen=True, slots=True)
class LinkState:
    """A change in a link's connection, as reported to the state callback.

    Attributes:
        port: the port URL.
        connected: whether the device is connected now.
        reason: why it is not (``"cannot open: ..."``, ``"device went away: ..."``,
            ``"closed"``); ``""`` when connected.
        retry_in: seconds until the next attempt; ``None`` when connected or closed.
    """

    port: str
    connected: bool
    reason: str = ""
    retry_in: float | None = None


#: ``on_value(value, raw_line, timestamp)``: the parsed value, the line as received (decoded,
#: terminator removed) and the Unix time (seconds) the line was complete.
ValueCallback = Callable[[float | str, str, float], None]
#: ``on_error(error)``: a line that was dropped; the link goes on.
ErrorCallback = Callable[[LineParseError], None]
#: ``on_state(state)``: the link connected, or lost or failed to open its device.
StateCallback = Callable[[LinkState], None]


class _PortProtocol(asyncio.Protocol):
    """Feeds one connection's bytes to its link and signals when the connection ends."""

    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self._on_data = on_data
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class _PolledPort:
    """Stands in for a transport on a port without a file descriptor, by polling it.

    pyserial-asyncio waits on the port's descriptor, which ``loop://`` and ``rfc2217://``
    ports do not have.
    """

    # NOTE: reads, writes and close() of a polled port run on the loop thread. That is free
    # for loop:// and cheap for rfc2217:// on a LAN; a slow remote would stall the loop.

    def __init__(self, port: Any, protocol: _PortProtocol, serial_mod: ModuleType) -> None:
        self._port = port
        self._protocol = protocol
        self._errors = (serial_mod.SerialException, OSError)
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        try:
            while True:
                await asyncio.sleep(POLL_INTERVAL_S)
                waiting = self._port.in_waiting
                if waiting:
                    self._protocol.data_received(self._port.read(waiting))
        except self._errors as err:
            self._finish(err)

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except self._errors as err:
            self._finish(err)

    def close(self) -> None:
        self._finish(None)

    def _finish(self, exc: Exception | None) -> None:
        if not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()
        with contextlib.suppress(*self._errors):
            self._port.close()
        self._protocol.connection_lost(exc)


class _OffLoopClose:
    """Takes the place of a port's ``close()`` and runs the real one on a worker thread.

    pyserial-asyncio closes the port on the loop thread, and pyserial's ``socket://`` port
    sleeps 0.3 s in ``close()`` to give the remote end time; on the loop that would stall
    every other task of the peer at each disconnect.
    """

    def __init__(self, port: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._close: Callable[[], None] = port.close
        self._loop = loop
        self._done: asyncio.Future[None] | None = None
        port.close = self

    def __call__(self) -> None:
        # Later calls (pyserial's own __del__ among them) find the close already under way.
        if self._done is None and not self._loop.is_closed():
            self._done = self._loop.run_in_executor(None, self._close)

    async def wait(self, port: str) -> None:
        """Wait for the real close to finish (bounded); log it if it failed."""
        if self._done is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._done), _CLOSE_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("serial %s: the port is still closing after %.1f s", port, _CLOSE_WAIT_S)
        except Exception as err:  # the device is gone either way; nothing to undo
            log.debug("serial %s: closing the port failed: %s", port, err)


def _serial_modules() -> tuple[ModuleType, ModuleType]:
    # Imported on first use: pyserial is an optional dependency ("krill-crdt[serial]").
    try:
        return importlib.import_module("serial"), importlib.import_module("serial_asyncio")
    except ImportError:
        raise SerialError(
            "serial devices need pyserial-asyncio (pip install 'krill-crdt[serial]')"
        ) from None


def _terminator_bytes(terminator: str) -> bytes:
    if terminator not in ("\n", "\r\n", "\r"):
        raise SerialConfigError(f"terminator must be \\n, \\r\\n or \\r, got {terminator!r}")
    return terminator.encode("ascii")


class SerialLink:
    """One serial device: keeps it open, reads parsed lines from it, sends commands to it.

    Callbacks run on the event loop; an exception one raises is logged and does not stop the
    link. A link is started once (``async with`` or :meth:`start`); :meth:`close` may be
    called any number of times.
    """

    def __init__(
        self,
        device: SerialDeviceMeta,
        on_value: ValueCallback,
        *,
        on_error: ErrorCallback | None = None,
        on_state: StateCallback | None = None,
        clock: Callable[[], float] = time.time,
        max_line_bytes: int = MAX_LINE_BYTES,
        backoff_initial: float = BACKOFF_INITIAL_S,
        backoff_cap: float = BACKOFF_CAP_S,
        rng: random.Random | None = None,
    ) -> None:
        """Prepare the link; nothing is opened until :meth:`start`.

        Args:
            device: the Serial Device node's meta: port, line settings, parse rule.
            on_value: called per parsed line.
            on_error: called per dropped line (unparsable or overlong).
            on_state: called when the link connects, loses its device, fails to open it, or
                closes.
            clock: Unix time in seconds, for the timestamps handed to ``on_value``.
            max_line_bytes: longest line kept, terminator excluded.
            backoff_initial: first reconnect delay, in seconds.
            backoff_cap: longest reconnect delay, in seconds.
            rng: source of the backoff jitter (seed one for repeatable tests).

        Raises:
            SerialConfigError: the terminator, pattern, limit or backoff is invalid.
        """
        self._device = device
        self._terminator = _terminator_bytes(device.terminator)
        self._splitter = LineSplitter(self._terminator, max_line_bytes)
        self._parser = LineParser(device.parse, device.pattern, max_chars=max_line_bytes)
        self._backoff = Backoff(backoff_initial, backoff_cap, rng)
        self._on_value = on_value
        self._on_error = on_error
        self._on_state = on_state
        self._clock = clock

        self._task: asyncio.Task[None] | None = None
        self._transport: Any = None
        self._protocol: _PortProtocol | None = None
        self._closer: _OffLoopClose | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._reported: bool | None = None  # connected state last reported; None: none yet
        self._bad_lines = 0

    @property
    def port(self) -> str:
        """The port URL or device path."""
        return self._device.port

    @property
    def connected(self) -> bool:
        """Whether the device is open now."""
        return self._connected.is_set()

    @property
    def bad_lines(self) -> int:
        """How many lines were dropped so far (unparsable or overlong)."""
        return self._bad_lines

    async def start(self) -> None:
        """Start opening the device in the background; return at once.

        Raises:
            SerialError: the link was started before, or pyserial-asyncio is missing.
        """
        if self._task is not None or self._closed:
            raise SerialError(f"serial {self.port}: a link is started only once")
        _serial_modules()
        self._task = asyncio.create_task(self._supervise(), name=f"serial {self.port}")

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the device is open.

        Raises:
            asyncio.TimeoutError: it was not open within ``timeout`` seconds.
        """
        await asyncio.wait_for(self._connected.wait(), timeout)

    def send(self, command: str) -> None:
        """Write a command followed by the terminator.

        The bytes are queued on the transport and leave as fast as the port takes them.

        Args:
            command: the command, without a terminator; encoded as UTF-8.

        Raises:
            SerialConfigError: the command holds a line break, which the device would read
                as the end of a command.
            SerialLinkDownError: the device is not connected; nothing is sent.
        """
        if "\r" in command or "\n" in command:
            raise SerialConfigError(f"serial {self.port}: command {_shown(command)} has a break")
        if self._transport is None or not self.connected:
            raise SerialLinkDownError(f"serial {self.port}: not connected, command not sent")
        self._transport.write(command.encode("utf-8") + self._terminator)
        log.debug("serial %s: sent %s", self.port, _shown(command))

    async def close(self) -> None:
        """Close the device and stop reconnecting. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_connection()
        if task is not None:
            self._report(LinkState(self.port, False, "closed"))

    async def __aenter__(self) -> SerialLink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # The connection loop.

    async def _supervise(self) -> None:
        while True:
            try:
                lost = await self._open()
            except (OSError, ValueError) as err:
                # pyserial's SerialException is an OSError; a setting the port refuses is a
                # ValueError.
                reason = f"cannot open: {err}"
            except Exception as err:
                # Not a failure pyserial documents: keep retrying, but leave the traceback.
                log.exception("serial %s: opening failed unexpectedly", self.port)
                reason = f"cannot open: {err!r}"
            else:
                opened_at = time.monotonic()
                self._connected.set()
                self._report(LinkState(self.port, True))
                # Shielded: cancelling the link must not cancel the future close() waits on.
                exc = await asyncio.shield(lost)
                reason = "device went away" + (f": {exc}" if exc is not None else "")
                await self._drop_connection()
                if time.monotonic() - opened_at >= _STABLE_CONNECTION_S:
                    self._backoff.reset()

            delay = self._backoff.next()
            self._report(LinkState(self.port, False, reason, retry_in=delay))
            await asyncio.sleep(delay)

    async def _open(self) -> asyncio.Future[Exception | None]:
        """Open the port and attach a protocol to it; return the future of its end."""
        serial_mod, serial_asyncio = _serial_modules()
        device = self._device

        # Step 1: open the port off the loop. Opening can block: a socket:// connect waits
        # for the peer, a stuck USB adapter stalls open().
        opening = asyncio.ensure_future(
            asyncio.to_thread(
                serial_mod.serial_for_url,
                device.port,
                baudrate=device.baudrate,
                bytesize=device.bytesize,
                parity=device.parity,
                stopbits=device.stopbits,
            )
        )
        try:
            port = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # Closed while opening: close the port whenever the open finishes.
            opening.add_done_callback(_close_opened_port)
            raise

        # Step 2: attach it to the loop, by its descriptor when it has one.
        self._splitter.reset()
        protocol = _PortProtocol(self._on_bytes)
        try:
            has_descriptor = isinstance(port.fileno(), int)
        except (AttributeError, OSError, ValueError):
            has_descriptor = False
        if has_descriptor:
            loop = asyncio.get_running_loop()
            self._closer = _OffLoopClose(port, loop)
            transport, _ = await serial_asyncio.connection_for_serial(loop, lambda: protocol, port)
        else:
            transport = _PolledPort(port, protocol, serial_mod)
        self._transport, self._protocol = transport, protocol
        return protocol.lost

    async def _drop_connection(self) -> None:
        self._connected.clear()
        transport, protocol, closer = self._transport, self._protocol, self._closer
        self._transport = self._protocol = self._closer = None
        if transport is None or protocol is None:
            return
        transport.close()

        # Step 1: wait for the transport to flush and let go of the port.
        if not protocol.lost.done():
            try:
                await asyncio.wait_for(asyncio.shield(protocol.lost), _CLOSE_WAIT_S)
            except asyncio.TimeoutError:
                abort = getattr(transport, "abort", None)
                if abort is not None:
                    abort()

        # Step 2: wait for the port itself to close, so a device path can be opened again.
        if closer is not None:
            await closer.wait(self.port)

    # Lines.

    def _on_bytes(self, data: bytes) -> None:
        for item in self._splitter.feed(data):
            if isinstance(item, OverlongLine):
                limit = self._splitter.max_bytes
                self._bad(
                    OverlongLineError(
                        _shown(item.head), f"is longer than {limit} bytes and was dropped"
                    )
                )
            else:
                self._line(item)

    def _line(self, raw: bytes) -> None:
        timestamp = self._clock()
        try:
            text = self._parser.decode(raw)
            if not text.strip():
                log.debug("serial %s: empty line skipped", self.port)
                return
            value = self._parser.parse(text)
        except LineParseError as err:
            self._bad(err)
            return
        try:
            self._on_value(value, text, timestamp)
        except Exception:
            log.exception("serial %s: value callback failed", self.port)

    def _bad(self, err: LineParseError) -> None:
        # The first bad line of a link is worth a warning; a device that keeps sending them
        # would otherwise flood the log.
        self._bad_lines += 1
        level = logging.WARNING if self._bad_lines == 1 else logging.DEBUG
        log.log(level, "serial %s: %s", self.port, err)
        if self._on_error is not None:
            try:
                self._on_error(err)
            except Exception:
                log.exception("serial %s: error callback failed", self.port)

    def _report(self, state: LinkState) -> None:
        # Only changes are reported and logged loudly: a device that stays away for an hour
        # logs one warning, then one debug line per attempt.
        changed = state.connected != self._reported or state.reason == "closed"
        self._reported = state.connected
        if state.connected:
            log.info("serial %s: connected", self.port)
        elif state.reason == "closed":
            log.info("serial %s: closed", self.port)
        else:
            level = logging.WARNING if changed else logging.DEBUG
            log.log(
                level, "serial %s: %s; retrying in %.2f s", self.port, state.reason, state.retry_in
            )
        if not changed or self._on_state is None:
            return
        try:
            self._on_state(state)
        except Exception:
            log.exception("serial %s: state callback failed", self.port)


def _close_opened_port(opening: asyncio.Future[Any]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return
    # Off the loop, for the same reason as _OffLoopClose; an error here has nobody to tell.
    opening.get_loop().run_in_executor(None, _close_quietly, opening.result())


def _close_quietly(port: Any) -> None:
    with contextlib.suppress(Exception):
        port.close()
