"""Peer-to-peer WebSocket links over real sockets on 127.0.0.1.

Each peer is a :class:`WsLinkTransport` served by its own small aiohttp site. Hellos are
HMAC-signed test frames, so nothing here depends on the sync engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from krill_crdt.errors import ValidationError
from krill_crdt.sync.link import Link, Send
from krill_crdt.transport.ws import (
    CHALLENGE_HEADER,
    CLOSE_DUPLICATE_REASON,
    CLOSE_HELLO_REFUSED,
    WsLinkOptions,
    WsLinkTransport,
)

KEY = b"test swarm key, 32 bytes long!!!"
TAG = b"HELLO"

#: Fast redials and short timeouts keep the whole file within seconds.
FAST = WsLinkOptions(connect_timeout=1.0, backoff_min=0.02, backoff_max=0.2, close_timeout=1.0)


#: The challenge raw test clients send in their request header.
OUR_CHALLENGE = bytes(range(16))


def make_hello(peer: bytes, challenge: bytes) -> bytes:
    """A test hello: tag, peer id, the other end's challenge, and an HMAC over all three."""
    body = TAG + peer + challenge
    return body + hmac.new(KEY, body, hashlib.sha256).digest()[:16]


def identify(data: bytes, challenge: bytes) -> bytes | None:
    """Accept a well-signed test hello made for ``challenge`` and name its peer."""
    if len(data) != len(TAG) + 48 or not data.startswith(TAG):
        return None
    body, mac = data[:-16], data[-16:]
    if not hmac.compare_digest(mac, hmac.new(KEY, body, hashlib.sha256).digest()[:16]):
        return None
    if body[len(TAG) + 16 :] != challenge:
        return None
    return body[len(TAG) : len(TAG) + 16]


@contextlib.asynccontextmanager
async def raw_link(url: str) -> AsyncIterator[tuple[aiohttp.ClientWebSocketResponse, bytes]]:
    """Connect without the transport, as a dialer would; yield the socket and its challenge."""
    headers = {CHALLENGE_HEADER: OUR_CHALLENGE.hex()}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as ws:
        msg = await ws.receive(timeout=3.0)
        assert msg.type is aiohttp.WSMsgType.BINARY and len(msg.data) == 16
        yield ws, msg.data


def peer_id(n: int) -> bytes:
    return bytes([n]) * 16


@dataclass
class Node:
    """One peer: its transport, its site, what it received and its link events."""

    peer: bytes
    options: WsLinkOptions
    transport: WsLinkTransport
    runner: web.AppRunner | None = None
    port: int = 0
    frames: list[tuple[bytes, Link]] = field(default_factory=list)
    events: list[tuple[bytes, bool]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.options.path}"

    def deliver(self, data: bytes, link: Link) -> None:
        self.frames.append((data, link))

    async def serve(self) -> None:
        """Start the site (on the same port as before, if it had one) and the transport."""
        app = web.Application()
        self.transport.attach(app)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        await self.transport.start(self.deliver)

    async def shut(self) -> None:
        await self.transport.stop()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node() -> AsyncIterator[MakeNode]:
    nodes: list[Node] = []

    async def make(n: int, options: WsLinkOptions = FAST) -> Node:
        peer = peer_id(n)
        node = Node(peer, options, transport=None)  # type: ignore[arg-type]
        node.transport = WsLinkTransport(
            peer,
            hello=lambda challenge: make_hello(peer, challenge),
            identify=identify,
            options=options,
            on_link=lambda p, up: node.events.append((p, up)),
        )
        await node.serve()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.shut()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def frame(i: int) -> bytes:
    return b"frame-%06d" % i


def to(node: Node, data: bytes, kind: str = "update") -> Send:
    return Send(Link("ws", node.peer), data, kind)


async def linked(a: Node, b: Node) -> None:
    a.transport.dial(b.peer, b.url)
    await until(lambda: b.peer in a.transport.links() and a.peer in b.transport.links())


# -- options -----------------------------------------------------------------------------------


def test_defaults_match_the_codec_and_design() -> None:
    options = WsLinkOptions()
    assert options.path == "/krill/v1/link"
    assert options.max_message == 64 * 1024 * 1024
    assert (options.backoff_min, options.backoff_max) == (0.2, 30.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("path", "no-slash"),
        ("path", "/ws/{doc}"),
        ("connect_timeout", 0),
        ("heartbeat", float("nan")),
        ("queue_size", 0),
        ("queue_size", True),
        ("backoff_min", -1.0),
        ("backoff_max", 0.1),
        ("max_message", 10),
        ("max_message", 65 * 1024 * 1024),
    ],
)
def test_options_refuse_bad_values(name: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        WsLinkOptions(**{name: value})  # type: ignore[arg-type]
    assert err.value.field == name


# -- links -------------------------------------------------------------------------------------


async def test_dial_brings_the_link_up_on_both_sides(make_node: MakeNode) -> None:
    a, b = await make_node(1), await make_node(2)
    await linked(a, b)
    assert a.events == [(b.peer, True)]
    assert b.events == [(a.peer, True)]
    assert a.transport.link_dialer(b.peer) == b.transport.link_dialer(a.peer) == a.peer


async def test_tcp_nodelay_is_on_at_both_ends(make_node: MakeNode) -> None:
    a, b = await make_node(1), await make_node(2)
    await linked(a, b)
    for node, other in ((a, b), (b, a)):
        ws = node.transport._links[other.peer].ws
        sock = ws.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_a_burst_of_frames_arrives_complete_and_in_order_both_ways(
    make_node: MakeNode,
) -> None:
    a, b = await make_node(1), await make_node(2)
    await linked(a, b)
    count = 5000
    for i in range(count):
        a.transport.send(to(b, frame(i)))
        b.transport.send(to(a, frame(i), kind="sync_step1"))
    await until(lambda: len(a.frames) == count and len(b.frames) == count)

    expected = [frame(i) for i in range(count)]
    assert [data for data, _ in b.frames] == expected
    assert [data for data, _ in a.frames] == expected
    assert {link for _, link in b.frames} == {Link("ws", a.peer)}
    assert {link for _, link in a.frames} == {Link("ws", b.peer)}
    metrics = a.transport.metrics
    assert metrics.value("krill_frames_sent_total", transport="ws", kind="sync_step1") == 0
    assert metrics.value("krill_frames_sent_total", transport="ws", kind="update") == count


async def test_a_broadcast_send_reaches_every_link(make_node: MakeNode) -> None:
    a, b, c = await make_node(1), await make_node(2), await make_node(3)
    await linked(a, b)
    await linked(a, c)
    a.transport.send(Send(Link("ws", None), b"to all", "beacon"))
    await until(lambda: len(b.frames) == 1 and len(c.frames) == 1)
    assert b.frames[0] == (b"to all", Link("ws", a.peer))
    assert c.frames[0] == (b"to all", Link("ws", a.peer))


# -- handshake ---------------------------------------------------------------------------------


async def raw_close(url: str, first: Callable[[bytes], bytes] | None) -> tuple[int | None, str]:
    """Connect as a dialer, send ``first(challenge)`` (if any), return the close code and reason."""
    async with raw_link(url) as (ws, challenge):
        if first is not None:
            await ws.send_bytes(first(challenge))
        msg = await ws.receive(timeout=3.0)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        return msg.data, msg.extra or ""


async def test_a_bad_hello_is_closed_with_4401_and_no_link(make_node: MakeNode) -> None:
    b = await make_node(2)
    code, reason = await raw_close(b.url, lambda c: make_hello(peer_id(9), c)[:-1] + b"\x00")
    assert code == CLOSE_HELLO_REFUSED
    assert reason
    assert b.transport.links() == []
    assert b.events == []
    assert (
        b.transport.metrics.value("krill_frames_rejected_total", transport="ws", reason="hello")
        == 1
    )


async def test_a_replayed_hello_from_an_earlier_handshake_is_refused(make_node: MakeNode) -> None:
    b = await make_node(2)
    recorded: list[bytes] = []

    def record(challenge: bytes) -> bytes:
        recorded.append(make_hello(peer_id(9), challenge))
        return recorded[-1]

    async with raw_link(b.url) as (ws, challenge):
        await ws.send_bytes(record(challenge))
        answer = await ws.receive(timeout=3.0)
        assert identify(answer.data, OUR_CHALLENGE) == b.peer
    await until(lambda: b.events == [(peer_id(9), True), (peer_id(9), False)])

    # The same bytes, sent again: the new handshake's challenge differs, so they are refused.
    code, _ = await raw_close(b.url, lambda challenge: recorded[0])
    assert code == CLOSE_HELLO_REFUSED
    assert b.events == [(peer_id(9), True), (peer_id(9), False)]
    assert (
        b.transport.metrics.value("krill_frames_rejected_total", transport="ws", reason="hello")
        == 1
    )


async def test_a_dialer_without_a_challenge_is_refused(make_node: MakeNode) -> None:
    b = await make_node(2)
    async with aiohttp.ClientSession() as session, session.ws_connect(b.url) as ws:
        msg = await ws.receive(timeout=3.0)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, CLOSE_HELLO_REFUSED)
    assert b.transport.links() == []


async def test_a_dialer_that_says_nothing_is_closed_with_4401(make_node: MakeNode) -> None:
    b = await make_node(2, WsLinkOptions(connect_timeout=0.2))
    code, _ = await raw_close(b.url, None)
    assert code == CLOSE_HELLO_REFUSED
    assert (
        b.transport.metrics.value(
            "krill_frames_rejected_total", transport="ws", reason="hello_timeout"
        )
        == 1
    )


def unexpected(node: Node) -> float:
    return node.transport.metrics.value(
        "krill_frames_rejected_total", transport="ws", reason="unexpected_peer"
    )


async def test_a_dial_meant_for_another_peer_is_refused_before_any_link(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await make_node(1), await make_node(2)
    stranger = peer_id(7)
    caplog.set_level(logging.WARNING, logger="krill.transport.ws")
    a.transport.dial(stranger, b.url)

    await until(lambda: unexpected(a) >= 3)  # refused, and redialed with backoff
    assert a.transport.links() == [] and b.transport.links() == []
    assert a.events == [] and b.events == []
    warnings = [r.getMessage() for r in caplog.records if "another peer" in r.getMessage()]
    assert len(warnings) == 1
    assert "07070707" in warnings[0] and b.url in warnings[0]


async def test_a_hello_answer_naming_another_peer_is_refused(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    async def impostor(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        theirs = bytes.fromhex(request.headers[CHALLENGE_HEADER])
        await ws.send_bytes(bytes(16))
        await ws.receive(timeout=3.0)
        await ws.send_bytes(make_hello(peer_id(8), theirs))  # ignores whom the dialer asked for
        await ws.receive(timeout=3.0)
        return ws

    app = web.Application()
    app.router.add_get(FAST.path, impostor)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        a = await make_node(1)
        caplog.set_level(logging.WARNING, logger="krill.transport.ws")
        a.transport.dial(peer_id(7), f"ws://127.0.0.1:{runner.addresses[0][1]}{FAST.path}")
        await until(lambda: unexpected(a) >= 2)
        assert a.transport.links() == [] and a.events == []
        warnings = [r.getMessage() for r in caplog.records if "answer names" in r.getMessage()]
        assert len(warnings) == 1 and "08080808" in warnings[0]
        await a.transport.stop()
    finally:
        await runner.cleanup()


async def test_a_text_message_closes_the_link_with_1003(make_node: MakeNode) -> None:
    b = await make_node(2)
    async with raw_link(b.url) as (ws, challenge):
        await ws.send_bytes(make_hello(peer_id(9), challenge))
        answer = await ws.receive(timeout=3.0)
        assert identify(answer.data, OUR_CHALLENGE) == b.peer
        await ws.send_str("hello as text")
        msg = await ws.receive(timeout=3.0)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1003)
    await until(lambda: b.events == [(peer_id(9), True), (peer_id(9), False)])
    assert (
        b.transport.metrics.value("krill_frames_rejected_total", transport="ws", reason="text") == 1
    )


async def test_an_oversized_message_closes_the_link_with_1009(make_node: MakeNode) -> None:
    a = await make_node(1, WsLinkOptions(backoff_min=5.0, backoff_max=5.0))
    b = await make_node(2, WsLinkOptions(max_message=1024))
    await linked(a, b)
    a.transport.send(to(b, b"x" * 2000))
    await until(lambda: (a.peer, False) in b.events and (b.peer, False) in a.events)
    assert b.frames == []
    assert (
        b.transport.metrics.value("krill_frames_rejected_total", transport="ws", reason="oversized")
        == 1
    )


# -- one link per pair -------------------------------------------------------------------------


@pytest.mark.parametrize("first", [1, 2], ids=["smaller-id-first", "larger-id-first"])
async def test_simultaneous_dials_leave_one_link_per_pair(make_node: MakeNode, first: int) -> None:
    a, b = await make_node(1), await make_node(2)
    x, y = (a, b) if first == 1 else (b, a)
    x.transport.dial(y.peer, y.url)
    y.transport.dial(x.peer, x.url)

    def settled() -> bool:
        return (
            a.transport.links() == [b.peer]
            and b.transport.links() == [a.peer]
            and a.transport.link_dialer(b.peer) == b.transport.link_dialer(a.peer) == a.peer
            and len(a.transport._inbound) + len(a.transport._outbound) == 1
            and len(b.transport._inbound) + len(b.transport._outbound) == 1
        )

    await until(settled)
    await asyncio.sleep(0.3)  # long enough for several redials, were the loser to redial
    assert settled()

    for i in range(100):
        a.transport.send(to(b, frame(i)))
        b.transport.send(to(a, frame(i)))
    await until(lambda: len(a.frames) >= 100 and len(b.frames) >= 100)
    assert [d for d, _ in b.frames][-100:] == [frame(i) for i in range(100)]
    assert [d for d, _ in a.frames][-100:] == [frame(i) for i in range(100)]


async def test_duplicate_link_close_uses_a_normal_code_and_its_reason(make_node: MakeNode) -> None:
    a, b = await make_node(1), await make_node(2)
    await linked(a, b)  # dialed by the smaller id: this link wins
    async with raw_link(a.url) as (ws, challenge):
        await ws.send_bytes(make_hello(b.peer, challenge))
        msg = await ws.receive(timeout=3.0)
    assert (msg.type, msg.data, msg.extra) == (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSCloseCode.OK,
        CLOSE_DUPLICATE_REASON,
    )
    assert a.transport.link_dialer(b.peer) == a.peer


# -- redialing ---------------------------------------------------------------------------------


async def test_the_dialer_reconnects_after_the_server_restarts(make_node: MakeNode) -> None:
    a, b = await make_node(1), await make_node(2)
    await linked(a, b)

    await b.shut()
    await until(lambda: a.events == [(b.peer, True), (b.peer, False)])
    await asyncio.sleep(0.3)  # several refused redials under backoff
    await b.serve()

    await until(lambda: a.transport.links() == [b.peer] and b.transport.links() == [a.peer])
    assert a.events == [(b.peer, True), (b.peer, False), (b.peer, True)]
    a.transport.send(to(b, b"after restart"))
    await until(lambda: b.frames == [(b"after restart", Link("ws", a.peer))])


async def test_forget_closes_the_link_and_stops_redialing(make_node: MakeNode) -> None:
    a, b = await make_node(1), await make_node(2)
    await linked(a, b)
    a.transport.forget(b.peer)
    await until(lambda: a.transport.links() == [] and b.transport.links() == [])
    assert a.transport.dialing() == []
    await asyncio.sleep(0.3)
    assert a.transport.links() == [] and b.transport.links() == []
    assert a.events == [(b.peer, True), (b.peer, False)]


# -- dropping ----------------------------------------------------------------------------------


async def test_a_send_to_a_peer_without_a_link_is_dropped_and_counted(make_node: MakeNode) -> None:
    a, b = await make_node(1), await make_node(2)
    a.transport.send(to(b, b"nobody listens"))
    assert a.transport.metrics.value("krill_frames_dropped_total", transport="ws") == 1
    await linked(a, b)
    await asyncio.sleep(0.05)
    assert b.frames == []  # never queued for the absent link


async def test_a_full_queue_drops_new_frames_and_counts_them(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    a = await make_node(1, WsLinkOptions(queue_size=4))
    b = await make_node(2)
    await linked(a, b)
    caplog.set_level(logging.WARNING, logger="krill.transport.ws")
    for i in range(100):  # no await: the writer cannot drain in between
        a.transport.send(to(b, frame(i)))
    assert a.transport.metrics.value("krill_frames_dropped_total", transport="ws") == 96
    await until(lambda: len(b.frames) == 4)
    assert [d for d, _ in b.frames] == [frame(i) for i in range(4)]
    assert len([r for r in caplog.records if "stuck" in r.getMessage()]) == 1


# -- stop --------------------------------------------------------------------------------------


async def test_stop_closes_links_going_away_and_is_idempotent(make_node: MakeNode) -> None:
    b = await make_node(2)
    async with raw_link(b.url) as (ws, challenge):
        await ws.send_bytes(make_hello(peer_id(9), challenge))
        await ws.receive(timeout=3.0)
        await until(lambda: b.transport.links() == [peer_id(9)])
        await asyncio.gather(b.transport.stop(), b.transport.stop())
        msg = await ws.receive(timeout=3.0)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.GOING_AWAY)
    await b.transport.stop()
    assert b.transport.links() == []
    assert b.events == [(peer_id(9), True), (peer_id(9), False)]


async def test_stop_on_the_dialing_side_tells_the_peer(make_node: MakeNode) -> None:
    a, b = await make_node(1), await make_node(2)
    await linked(a, b)
    await a.transport.stop()
    await until(lambda: b.events == [(a.peer, True), (a.peer, False)])
    assert a.events == [(b.peer, True), (b.peer, False)]
    assert a.transport.dialing() == []


# -- arguments and backoff ---------------------------------------------------------------------


async def test_dial_refuses_bad_peers_and_a_stopped_transport() -> None:
    links = WsLinkTransport(
        peer_id(1), hello=lambda c: make_hello(peer_id(1), c), identify=identify
    )
    with pytest.raises(RuntimeError):
        links.dial(peer_id(2), "ws://127.0.0.1:9/krill/v1/link")
    await links.start(lambda data, link: None)
    try:
        with pytest.raises(ValidationError):
            links.dial(b"short", "ws://127.0.0.1:9/krill/v1/link")
        with pytest.raises(ValidationError):
            links.dial(peer_id(1), "ws://127.0.0.1:9/krill/v1/link")
        with pytest.raises(RuntimeError):
            await links.start(lambda data, link: None)
    finally:
        await links.stop()


def test_backoff_grows_with_full_jitter_up_to_its_cap() -> None:
    options = WsLinkOptions(backoff_min=0.2, backoff_max=30.0)
    links = WsLinkTransport(peer_id(1), hello=bytes, identify=identify, options=options)
    for failures in range(200):
        delay = links._backoff(failures)
        assert 0.2 <= delay <= min(30.0, 0.2 * 2**failures)
    late = [links._backoff(50) for _ in range(200)]
    assert max(late) > 15.0  # the whole range is used, not only its top
    assert min(late) < 15.0
