"""UDP multicast transport on the loopback interface.

Every datagram these tests send leaves through 127.0.0.1 only, to a random group in
239.255.0.0/16 on a random port, so parallel runs never hear each other and nothing reaches
a real network interface.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from krill_crdt._core.codec import DATAGRAM_BUDGET
from krill_crdt.errors import KrillError, ValidationError
from krill_crdt.metrics import Metrics
from krill_crdt.sync.link import Link, Send
from krill_crdt.transport.base import Deliver, Transport
from krill_crdt.transport.udp import MAX_DATAGRAM, MulticastOptions, UdpMulticastTransport

#: Upper bound on waiting for a datagram that should arrive; on loopback it takes microseconds.
WAIT = 3.0

#: How long to listen before concluding that nothing arrives: loopback delivery is immediate,
#: so a short quiet period is enough and keeps the suite fast.
QUIET = 0.3

#: The only interface these tests send from.
LOOPBACK = "127.0.0.1"

BROADCAST = Link("udp", None)


def random_options(**changes: object) -> MulticastOptions:
    """Return loopback options with a random group in 239.255.0.0/16 and a random port.

    Ports come from 20000..32000, below Linux's ephemeral range, so no outgoing socket of
    another test holds one by chance.
    """
    group = f"239.255.{1 + secrets.randbelow(254)}.{1 + secrets.randbelow(254)}"
    port = 20000 + secrets.randbelow(12000)
    fields: dict[str, object] = {"group": group, "port": port, "interface": LOOPBACK}
    fields.update(changes)
    return MulticastOptions(**fields)  # type: ignore[arg-type]


class Inbox:
    """A ``deliver`` callback that queues what it gets, with bounded waits."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Link]] = asyncio.Queue()

    def __call__(self, data: bytes, link: Link) -> None:
        self.queue.put_nowait((data, link))

    async def next(self) -> tuple[bytes, Link]:
        return await asyncio.wait_for(self.queue.get(), WAIT)

    async def assert_quiet(self) -> None:
        await asyncio.sleep(QUIET)
        assert self.queue.empty(), f"unexpected datagrams: {self.queue.qsize()}"


def frame(size: int = 68, fill: int = 0x4B) -> bytes:
    """Return ``size`` bytes standing in for a frame; the transport never decodes them."""
    return bytes([fill]) * size


def beacon(data: bytes, kind: str = "beacon") -> Send:
    return Send(BROADCAST, data, kind)


def raw_send(options: MulticastOptions, data: bytes) -> None:
    """Send one datagram to the group from a plain socket, out of the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.sendto(data, (options.group, options.port))


Starter = Callable[..., Awaitable[tuple[UdpMulticastTransport, Inbox]]]


@pytest.fixture
async def start_peer() -> AsyncIterator[Starter]:
    """Start transports with their own inbox; stops all of them after the test."""
    started: list[UdpMulticastTransport] = []

    async def start(
        options: MulticastOptions, deliver: Deliver | None = None
    ) -> tuple[UdpMulticastTransport, Inbox]:
        transport = UdpMulticastTransport(options, Metrics())
        inbox = Inbox()
        await transport.start(deliver if deliver is not None else inbox)
        started.append(transport)
        return transport, inbox

    yield start
    for transport in started:
        await transport.stop()


# -- delivery ---------------------------------------------------------------------------------


async def test_frame_reaches_every_peer_in_the_group_and_the_sender(start_peer: Starter) -> None:
    options = random_options()
    a, inbox_a = await start_peer(options)
    _, inbox_b = await start_peer(options)
    _, inbox_c = await start_peer(options)

    a.send(beacon(frame(100)))

    for inbox in (inbox_a, inbox_b, inbox_c):
        assert await inbox.next() == (frame(100), BROADCAST)
    for inbox in (inbox_a, inbox_b, inbox_c):
        await inbox.assert_quiet()


async def test_each_datagram_handed_to_the_socket_is_counted_by_kind(
    start_peer: Starter,
) -> None:
    options = random_options()
    a, _ = await start_peer(options)

    a.send(beacon(frame(), "beacon"))
    a.send(beacon(frame(), "update"))
    a.send(beacon(frame(), "update"))

    assert a.metrics.value("krill_frames_sent_total", transport="udp", kind="beacon") == 1
    assert a.metrics.value("krill_frames_sent_total", transport="udp", kind="update") == 2


async def test_loopback_off_on_the_sender_still_reaches_other_peers_on_the_host(
    start_peer: Starter,
) -> None:
    # On the loopback interface Linux hands every datagram back whatever IP_MULTICAST_LOOP
    # says, so only the other peers' side is asserted here; the namespace test checks that a
    # sender with loopback off does not hear itself on a real link.
    options = random_options()
    sender, _ = await start_peer(
        random_options(group=options.group, port=options.port, loopback=False)
    )
    _, inbox = await start_peer(options)

    sender.send(beacon(frame(80)))

    assert await inbox.next() == (frame(80), BROADCAST)


async def test_peers_of_another_group_on_the_same_port_hear_nothing(
    start_peer: Starter,
) -> None:
    options = random_options()
    other_group = "239.255.0.1" if options.group != "239.255.0.1" else "239.255.0.2"
    a, inbox_a = await start_peer(options)
    _, inbox_other = await start_peer(random_options(group=other_group, port=options.port))

    a.send(beacon(frame()))

    assert await inbox_a.next() == (frame(), BROADCAST)
    await inbox_other.assert_quiet()


async def test_transport_satisfies_the_transport_protocol() -> None:
    transport: Transport = UdpMulticastTransport(random_options())
    assert transport.name == "udp"


# -- options ----------------------------------------------------------------------------------


def test_default_options_stay_on_loopback_with_a_ttl_of_one() -> None:
    options = MulticastOptions()
    assert (options.group, options.port, options.ttl) == ("239.255.0.69", 45317, 1)
    assert options.interface == "127.0.0.1"
    assert options.loopback is True
    assert options.max_queue_bytes >= DATAGRAM_BUDGET


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("group", "10.0.0.1"),
        ("group", "not-an-address"),
        ("group", "ff02::1"),
        ("group", 239),
        ("port", 0),
        ("port", 65536),
        ("port", "45317"),
        ("port", True),
        ("ttl", 0),
        ("ttl", 256),
        ("interface", "0.0.0.0"),
        ("interface", "239.255.0.69"),
        ("interface", "255.255.255.255"),
        ("interface", "lo"),
        ("interface", "::1"),
        ("loopback", 1),
        ("max_queue_bytes", -1),
        ("max_queue_bytes", 1.5),
    ],
)
def test_invalid_option_raises_validation_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        MulticastOptions(**{field: value})  # type: ignore[arg-type]
    assert caught.value.field == f"discovery.{field}"
    assert caught.value.got == value
    assert f"discovery.{field}" in str(caught.value)


async def test_interface_address_not_on_this_host_raises_a_clear_error() -> None:
    # 203.0.113.0/24 is reserved for documentation (RFC 5737): never a local address. The
    # kernel refuses it before anything is sent.
    transport = UdpMulticastTransport(random_options(interface="203.0.113.77"))

    with pytest.raises(ValidationError) as caught:
        await transport.start(Inbox())

    assert isinstance(caught.value, KrillError)
    assert caught.value.field == "discovery.interface"
    assert "203.0.113.77" in str(caught.value)
    assert not transport.running


# -- sending limits ---------------------------------------------------------------------------


async def test_frame_over_the_datagram_budget_is_dropped_and_counted_not_sent(
    start_peer: Starter,
) -> None:
    options = random_options()
    a, _ = await start_peer(options)
    _, inbox = await start_peer(options)

    a.send(beacon(frame(DATAGRAM_BUDGET + 1, fill=1)))
    a.send(beacon(frame(DATAGRAM_BUDGET, fill=2)))

    # The first datagram to arrive is the one that fits the budget.
    assert await inbox.next() == (frame(DATAGRAM_BUDGET, fill=2), BROADCAST)
    await inbox.assert_quiet()
    assert a.metrics.value("krill_frames_dropped_total", transport="udp") == 1
    assert a.metrics.value("krill_frames_sent_total", transport="udp", kind="beacon") == 1


async def test_oversized_frames_warn_once_then_log_at_debug(
    start_peer: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = await start_peer(random_options())
    caplog.set_level(logging.DEBUG, logger="krill.transport.udp")

    for _ in range(3):
        a.send(beacon(frame(DATAGRAM_BUDGET + 10)))

    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert [r.levelno for r in drops] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert a.metrics.value("krill_frames_dropped_total", transport="udp") == 3


async def test_full_write_buffer_drops_and_counts(
    start_peer: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A loopback socket never backs up, so the asyncio transport is made to report a backlog.
    options = random_options(max_queue_bytes=4096)
    a, inbox = await start_peer(options)
    assert a._transport is not None
    monkeypatch.setattr(a._transport, "get_write_buffer_size", lambda: 4097)

    a.send(beacon(frame()))

    await inbox.assert_quiet()
    assert a.metrics.value("krill_frames_dropped_total", transport="udp") == 1
    assert a.metrics.value("krill_frames_sent_total", transport="udp", kind="beacon") == 0


async def test_point_to_point_link_raises_value_error(start_peer: Starter) -> None:
    a, _ = await start_peer(random_options())

    with pytest.raises(ValueError, match="broadcast"):
        a.send(Send(Link("udp", bytes(16)), frame(), "update"))
    assert a.metrics.value("krill_frames_dropped_total", transport="udp") == 0


async def test_link_of_another_transport_raises_value_error(start_peer: Starter) -> None:
    a, _ = await start_peer(random_options())

    with pytest.raises(ValueError, match="broadcast"):
        a.send(Send(Link("mqtt", None), frame(), "update"))


async def test_send_while_not_running_is_dropped_and_counted() -> None:
    transport = UdpMulticastTransport(random_options())

    transport.send(beacon(frame()))

    assert transport.metrics.value("krill_frames_dropped_total", transport="udp") == 1
    assert transport.metrics.value("krill_frames_sent_total", transport="udp", kind="beacon") == 0


# -- receiving limits -------------------------------------------------------------------------


async def test_datagram_over_max_datagram_is_rejected_and_counted(start_peer: Starter) -> None:
    options = random_options()
    receiver, inbox = await start_peer(options)

    raw_send(options, frame(MAX_DATAGRAM + 1, fill=1))
    raw_send(options, frame(MAX_DATAGRAM, fill=2))

    assert await inbox.next() == (frame(MAX_DATAGRAM, fill=2), BROADCAST)
    await inbox.assert_quiet()
    assert (
        receiver.metrics.value("krill_frames_rejected_total", transport="udp", reason="oversized")
        == 1
    )


async def test_a_failing_receiver_does_not_stop_the_transport(start_peer: Starter) -> None:
    options = random_options()
    inbox = Inbox()
    calls = 0

    def flaky(data: bytes, link: Link) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("receiver bug")
        inbox(data, link)

    receiver, _ = await start_peer(options, flaky)

    raw_send(options, frame(fill=1))
    raw_send(options, frame(fill=2))

    assert await inbox.next() == (frame(fill=2), BROADCAST)
    assert receiver.running


async def test_logs_name_the_group_and_never_show_payload_bytes(
    start_peer: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="krill.transport.udp")
    options = random_options()
    a, inbox = await start_peer(options)
    payload = b"SECRET-PAYLOAD-" * 4

    a.send(beacon(payload))
    a.send(beacon(payload * 100))
    raw_send(options, payload * 100)
    await inbox.next()
    await a.stop()

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"group {options.group} port {options.port} interface {LOOPBACK}" in text
    assert "SECRET" not in text
    assert payload.hex()[:16] not in text


# -- lifecycle --------------------------------------------------------------------------------


async def test_stop_is_idempotent_and_frees_the_port(start_peer: Starter) -> None:
    options = random_options()
    a, _ = await start_peer(options)

    await a.stop()
    await a.stop()

    assert not a.running
    # A socket without SO_REUSEADDR/SO_REUSEPORT binds only if nobody else holds the port.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as plain:
        plain.bind((options.group, options.port))
    b, inbox_b = await start_peer(options)
    b.send(beacon(frame()))
    assert await inbox_b.next() == (frame(), BROADCAST)


async def test_concurrent_stops_both_return_after_the_socket_is_closed(
    start_peer: Starter,
) -> None:
    options = random_options()
    a, _ = await start_peer(options)

    await asyncio.gather(a.stop(), a.stop())

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as plain:
        plain.bind((options.group, options.port))


async def test_stop_before_start_does_nothing() -> None:
    transport = UdpMulticastTransport(random_options())

    await transport.stop()

    assert not transport.running


async def test_start_while_running_raises_runtime_error(start_peer: Starter) -> None:
    a, _ = await start_peer(random_options())

    with pytest.raises(RuntimeError, match="already running"):
        await a.start(Inbox())
    assert a.running


async def test_transport_starts_again_after_stop(start_peer: Starter) -> None:
    options = random_options()
    a, _ = await start_peer(options)
    await a.stop()
    inbox = Inbox()

    await a.start(inbox)
    a.send(beacon(frame()))

    assert await inbox.next() == (frame(), BROADCAST)
