"""Serial devices: the pure line splitter and parser, and a link to a device served over TCP.

The device is a real TCP server on 127.0.0.1 reached through pyserial's ``socket://`` URL, so
the link runs exactly the code it runs against ``/dev/ttyUSB0``, minus the tty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from krill_crdt.errors import KrillError
from krill_crdt.model.meta import SerialDeviceMeta
from krill_crdt.runtime.hardware.serial import (
    MAX_LINE_BYTES,
    Backoff,
    LineParseError,
    LineParser,
    LineSplitter,
    LinkState,
    OverlongLine,
    OverlongLineError,
    SerialConfigError,
    SerialLink,
    SerialLinkDownError,
    parse_number,
)

# Every wait in these tests ends within this many seconds, whatever happens.
BOUND_S = 3.0

# Reconnect delays short enough for tests, still exercising the backoff.
FAST = {"backoff_initial": 0.02, "backoff_cap": 0.1}


async def until(condition: Callable[[], bool], timeout: float = BOUND_S) -> None:
    """Wait until ``condition()`` holds, failing the test after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class Device:
    """A serial device simulated by a TCP server on loopback: it streams and records bytes."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    @property
    def clients(self) -> int:
        return sum(not w.is_closing() for w in self._writers)

    async def start(self) -> None:
        # The first start picks a free port; a restart takes the same one again.
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        while chunk := await reader.read(1024):
            self.received += chunk

    async def emit(self, data: bytes) -> None:
        for writer in self._writers:
            if not writer.is_closing():
                writer.write(data)
                await writer.drain()

    async def stop(self) -> None:
        """Go away: stop listening and drop every connection."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()


@pytest.fixture
async def device() -> AsyncIterator[Device]:
    dev = Device()
    await dev.start()
    yield dev
    if dev._server is not None and dev._server.is_serving():
        await dev.stop()


@dataclass
class Seen:
    """What a link handed to its callbacks."""

    values: list[float | str] = field(default_factory=list)
    raws: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    errors: list[LineParseError] = field(default_factory=list)
    states: list[LinkState] = field(default_factory=list)

    def on_value(self, value: float | str, raw: str, timestamp: float) -> None:
        self.values.append(value)
        self.raws.append(raw)
        self.times.append(timestamp)

    def link(self, meta: SerialDeviceMeta, **kwargs: object) -> SerialLink:
        options: dict[str, object] = {**FAST, **kwargs}
        return SerialLink(
            meta,
            self.on_value,
            on_error=self.errors.append,
            on_state=self.states.append,
            **options,  # type: ignore[arg-type]
        )


# The link against a device over TCP.


async def test_link_delivers_parsed_values_in_order(device: Device) -> None:
    seen = Seen()
    async with seen.link(SerialDeviceMeta(port=device.url)) as link:
        await link.wait_connected(BOUND_S)
        await until(lambda: device.clients == 1)
        await device.emit(b"21.5\n21.6 C\n-3 \xc2\xb0C\n")
        await device.emit(b"1e3\n")
        await until(lambda: len(seen.values) == 4)

    assert seen.values == [21.5, 21.6, -3.0, 1000.0]
    assert seen.raws == ["21.5", "21.6 C", "-3 °C", "1e3"]
    assert seen.errors == []


async def test_values_carry_the_clock_time_of_their_line(device: Device) -> None:
    seen = Seen()
    ticks = iter([100.0, 101.5])
    async with seen.link(SerialDeviceMeta(port=device.url), clock=lambda: next(ticks)) as link:
        await link.wait_connected(BOUND_S)
        await until(lambda: device.clients == 1)
        await device.emit(b"1\n2\n")
        await until(lambda: len(seen.values) == 2)

    assert seen.times == [100.0, 101.5]


async def test_unparsable_line_is_reported_and_the_stream_continues(device: Device) -> None:
    seen = Seen()
    async with seen.link(SerialDeviceMeta(port=device.url)) as link:
        await link.wait_connected(BOUND_S)
        await until(lambda: device.clients == 1)
        await device.emit(b"1\nabc\n\xff\xfe\n2\n")
        await until(lambda: len(seen.values) == 2)

        assert link.bad_lines == 2

    assert seen.values == [1.0, 2.0]
    assert [str(e) for e in seen.errors] == [
        "line 'abc' is not a number",
        "line b'\\xff\\xfe' is not UTF-8 text",
    ]


async def test_blank_lines_are_skipped_without_a_report(device: Device) -> None:
    seen = Seen()
    meta = SerialDeviceMeta(port=device.url, terminator="\r")
    async with seen.link(meta) as link:
        await link.wait_connected(BOUND_S)
        await until(lambda: device.clients == 1)
        # A device that ends lines with \r\n, read by a link that cuts at \r.
        await device.emit(b"4\r\n5\r\n\r\n6\r")
        await until(lambda: len(seen.values) == 3)

    assert seen.values == [4.0, 5.0, 6.0]
    assert seen.errors == []


async def test_sent_command_arrives_with_the_terminator(device: Device) -> None:
    seen = Seen()
    meta = SerialDeviceMeta(port=device.url, terminator="\r\n")
    async with seen.link(meta) as link:
        await link.wait_connected(BOUND_S)
        link.send("READ?")
        link.send("UNIT C")
        await until(lambda: bytes(device.received) == b"READ?\r\nUNIT C\r\n")


async def test_command_with_a_line_break_is_refused(device: Device) -> None:
    seen = Seen()
    async with seen.link(SerialDeviceMeta(port=device.url)) as link:
        await link.wait_connected(BOUND_S)
        with pytest.raises(SerialConfigError, match="break"):
            link.send("A\nB")


async def test_link_reconnects_with_backoff_and_resumes(device: Device) -> None:
    seen = Seen()
    async with seen.link(SerialDeviceMeta(port=device.url)) as link:
        await link.wait_connected(BOUND_S)
        await until(lambda: device.clients == 1)
        await device.emit(b"1\n")
        await until(lambda: seen.values == [1.0])

        # Step 1: the device goes away; the link says so and keeps retrying.
        await device.stop()
        await until(lambda: not link.connected)
        await asyncio.sleep(0.3)  # several failed attempts at the capped backoff
        assert [s.connected for s in seen.states] == [True, False]
        lost = seen.states[1]
        assert lost.reason.startswith("device went away")
        assert lost.retry_in is not None and 0 < lost.retry_in <= FAST["backoff_cap"]
        with pytest.raises(SerialLinkDownError):
            link.send("READ?")

        # Step 2: it comes back on the same port; the link reconnects and reads on.
        await device.start()
        await link.wait_connected(BOUND_S)
        await until(lambda: device.clients == 1)
        await device.emit(b"2\n")
        await until(lambda: seen.values == [1.0, 2.0])

    assert [s.connected for s in seen.states] == [True, False, True, False]
    assert seen.states[-1].reason == "closed"


async def test_device_going_away_does_not_stall_the_event_loop(device: Device) -> None:
    # pyserial's socket:// close() sleeps; the link must not do that on the loop thread.
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - last)
            last = loop.time()

    seen = Seen()
    async with seen.link(SerialDeviceMeta(port=device.url)) as link:
        await link.wait_connected(BOUND_S)
        ticking = asyncio.create_task(ticker())
        await device.stop()
        await until(lambda: len(seen.states) >= 2)
        await link.close()
        ticking.cancel()

    assert gaps
    assert max(gaps) < 0.2


async def test_link_retries_a_device_that_cannot_be_opened(device: Device) -> None:
    await device.stop()
    seen = Seen()
    async with seen.link(SerialDeviceMeta(port=device.url)) as link:
        await until(lambda: bool(seen.states))
        assert not link.connected
        assert seen.states[0].reason.startswith("cannot open")
        assert device.url.removeprefix("socket://") in seen.states[0].reason

        await device.start()
        await link.wait_connected(BOUND_S)

    assert [s.connected for s in seen.states] == [False, True, False]


async def test_disconnect_is_logged_once_at_warning_and_names_the_port(
    device: Device, caplog: pytest.LogCaptureFixture
) -> None:
    await device.stop()
    seen = Seen()
    with caplog.at_level(logging.DEBUG, logger="krill.runtime.serial"):
        async with seen.link(SerialDeviceMeta(port=device.url)):
            await asyncio.sleep(0.3)

    records = [r for r in caplog.records if r.name == "krill.runtime.serial"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert device.url in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in records) >= 1


async def test_close_is_idempotent_and_stops_reconnecting(device: Device) -> None:
    seen = Seen()
    link = seen.link(SerialDeviceMeta(port=device.url))
    await link.start()
    await link.wait_connected(BOUND_S)
    await link.close()
    await link.close()
    await device.stop()
    await device.start()
    await asyncio.sleep(0.2)

    assert not link.connected
    assert device.clients == 0
    assert [s.connected for s in seen.states] == [True, False]
    with pytest.raises(SerialLinkDownError):
        link.send("READ?")


async def test_overlong_line_is_dropped_and_reported_and_the_next_line_arrives(
    device: Device,
) -> None:
    seen = Seen()
    meta = SerialDeviceMeta(port=device.url, parse="text")
    async with seen.link(meta, max_line_bytes=16) as link:
        await link.wait_connected(BOUND_S)
        await until(lambda: device.clients == 1)
        await device.emit(b"short\n" + b"x" * 40)
        await device.emit(b"y" * 40 + b"\nafter\n")
        await until(lambda: len(seen.values) == 2)

    assert seen.values == ["short", "after"]
    assert len(seen.errors) == 1
    assert isinstance(seen.errors[0], OverlongLineError)
    assert "is longer than 16 bytes and was dropped" in str(seen.errors[0])


# The link on pyserial's loop:// port, which has no file descriptor and is polled.


async def test_loop_url_echoes_what_is_sent() -> None:
    seen = Seen()
    async with seen.link(SerialDeviceMeta(port="loop://", parse="text")) as link:
        await link.wait_connected(BOUND_S)
        link.send("hello device")
        link.send("42 ok")
        await until(lambda: len(seen.values) == 2)

    assert seen.values == ["hello device", "42 ok"]


async def test_regex_rule_on_a_link_passes_the_captured_text() -> None:
    seen = Seen()
    meta = SerialDeviceMeta(port="loop://", parse="regex", pattern=r"T=(?P<value>-?\d+\.\d+)")
    async with seen.link(meta) as link:
        await link.wait_connected(BOUND_S)
        link.send("H=40.0 T=21.75")
        link.send("no reading")
        await until(lambda: len(seen.values) == 1 and len(seen.errors) == 1)

    assert seen.values == ["21.75"]
    assert "does not match the pattern" in str(seen.errors[0])


async def test_link_is_started_only_once() -> None:
    seen = Seen()
    link = seen.link(SerialDeviceMeta(port="loop://"))
    await link.start()
    try:
        with pytest.raises(KrillError, match="started only once"):
            await link.start()
    finally:
        await link.close()


# LineParser.


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("21.5", 21.5),
        ("  21.5 C  ", 21.5),
        ("-3°C", -3.0),
        ("+7", 7.0),
        (".5", 0.5),
        ("1013.2hPa", 1013.2),
        ("55 %", 55.0),
        ("2.5e-3 m/s", 0.0025),
        ("12 kWh", 12.0),
    ],
)
def test_number_rule_reads_a_number_with_an_optional_unit(line: str, value: float) -> None:
    assert LineParser("number").parse(line) == value


@pytest.mark.parametrize(
    "line", ["abc", "1,5", "1.013,2", "0x1F", "nan", "inf", "1 2", "21.5 C 22", "--1", "C 21"]
)
def test_number_rule_refuses_what_is_not_one_number(line: str) -> None:
    with pytest.raises(LineParseError, match="is not a number"):
        LineParser("number").parse(line)


def test_number_rule_refuses_a_number_too_large_for_a_float() -> None:
    with pytest.raises(LineParseError, match="not a finite number"):
        parse_number("1e999")


def test_text_rule_strips_the_line_and_refuses_control_characters() -> None:
    parser = LineParser("text")
    assert parser.parse("  door open \r") == "door open"
    with pytest.raises(LineParseError, match="control character"):
        parser.parse("bell\x07")


def test_regex_rule_takes_the_first_group_without_a_named_one() -> None:
    parser = LineParser("regex", r"(\w+)=(\d+)")
    assert parser.parse("rpm=1200 temp=40") == "rpm"


def test_regex_rule_prefers_the_group_named_value() -> None:
    parser = LineParser("regex", r"(\w+)=(?P<value>\d+)")
    assert parser.parse("rpm=1200") == "1200"


def test_regex_rule_refuses_an_empty_capture() -> None:
    with pytest.raises(LineParseError, match="captured nothing"):
        LineParser("regex", r"T=(\d*)").parse("T=")


@pytest.mark.parametrize(
    ("rule", "pattern", "message"),
    [("json", "", "parse rule"), ("regex", "(", "invalid"), ("regex", r"\d+", "no capture")],
)
def test_parser_refuses_a_bad_rule_or_pattern(rule: str, pattern: str, message: str) -> None:
    with pytest.raises(SerialConfigError, match=message):
        LineParser(rule, pattern)


def test_parser_refuses_a_line_over_its_limit_before_matching() -> None:
    with pytest.raises(OverlongLineError):
        LineParser("regex", r"(a+)+$", max_chars=64).parse("a" * 65 + "!")


def test_parse_errors_are_value_errors_of_the_krill_family() -> None:
    assert issubclass(LineParseError, KrillError)
    assert issubclass(LineParseError, ValueError)


@pytest.mark.parametrize(
    ("rule", "pattern"),
    [("number", ""), ("text", ""), ("regex", r"T=(?P<value>[-\d.]+)"), ("regex", r"^(.*)$")],
)
@given(raw=st.binary(max_size=2 * MAX_LINE_BYTES))
def test_parser_raises_nothing_but_parse_errors_on_any_bytes(
    rule: str, pattern: str, raw: bytes
) -> None:
    parser = LineParser(rule, pattern)
    try:
        value = parser.parse(raw)
    except LineParseError:
        return
    assert isinstance(value, float if rule == "number" else str)


@given(line=st.text(max_size=200))
def test_parser_raises_nothing_but_parse_errors_on_any_text(line: str) -> None:
    for parser in (LineParser("number"), LineParser("text"), LineParser("regex", r"(\S+)")):
        with contextlib.suppress(LineParseError):
            parser.parse(line)


# LineSplitter.


def test_splitter_joins_a_line_and_a_terminator_split_across_chunks() -> None:
    splitter = LineSplitter(b"\r\n", max_bytes=16)
    assert splitter.feed(b"12.") == []
    assert splitter.feed(b"5\r") == []
    assert splitter.feed(b"\n13\r\n14") == [b"12.5", b"13"]
    assert splitter.feed(b"\r\n") == [b"14"]


def test_splitter_keeps_a_line_of_exactly_the_limit() -> None:
    splitter = LineSplitter(b"\r\n", max_bytes=4)
    assert splitter.feed(b"abcd\r") == []
    assert splitter.feed(b"\n") == [b"abcd"]


def test_splitter_reports_an_overlong_line_once_and_drops_it_to_its_end() -> None:
    splitter = LineSplitter(b"\n", max_bytes=8)
    out = splitter.feed(b"0123456789")
    assert out == [OverlongLine(b"0123456789")]
    assert splitter.feed(b"still the same line") == []
    assert splitter.feed(b" end\nnext\n") == [b"next"]


def test_splitter_reset_forgets_a_partial_line() -> None:
    splitter = LineSplitter(b"\n")
    splitter.feed(b"half a li")
    splitter.reset()
    assert splitter.feed(b"whole\n") == [b"whole"]


lines_st = st.lists(st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b))


@given(lines=lines_st, cuts=st.lists(st.integers(min_value=0, max_value=2000)))
def test_splitter_gives_the_same_lines_however_the_bytes_are_chunked(
    lines: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(line + b"\r\n" for line in lines)
    splitter = LineSplitter(b"\r\n", max_bytes=24)
    out: list[bytes | OverlongLine] = []
    start = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        out += splitter.feed(stream[start:cut])
        start = max(start, cut)

    expected = [line if len(line) <= 24 else "overlong" for line in lines]
    got = [item if isinstance(item, bytes) else "overlong" for item in out]
    assert got == expected
    assert splitter.buffered <= 24 + 1


# Backoff.


def test_backoff_grows_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(0.5, 30.0, random.Random(7))
    delays = [backoff.next() for _ in range(12)]
    ceilings = [min(30.0, 0.5 * 2**n) for n in range(12)]

    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 30.0
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder


def test_backoff_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(1.0, 30.0, random.Random(1))
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


def test_backoff_stays_bounded_after_very_many_attempts() -> None:
    backoff = Backoff(0.5, 30.0, random.Random(3))
    for _ in range(5000):
        assert backoff.next() <= 30.0
