"""The ``/ws/{doc}`` route and its y-protocols codec, against a real server on loopback.

The client side is aiohttp's WebSocket client plus a pycrdt doc, speaking y-protocols the
way y-websocket does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import BaseTestServer, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from krill_crdt.errors import (
    FrameError,
    MalformedFrameError,
    NodeNotFoundError,
    OversizedFrameError,
    TruncatedFrameError,
)
from krill_crdt.model import Node, NodeType
from krill_crdt.store import HostDoc, Origin
from krill_crdt.transport.yprotocol import (
    MAX_AWARENESS_ENTRIES,
    Auth,
    AwarenessEntry,
    AwarenessUpdate,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    decode_message,
    decode_state_vector,
    encode_awareness,
    encode_message,
    read_varuint,
    write_varuint,
)
from krill_crdt.transport.yws import (
    CLOSE_FORBIDDEN,
    CLOSE_SLOW_CLIENT,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNKNOWN_DOC,
    TRANSPORT,
    YjsRooms,
    YwsOptions,
)

HOST = "host-a"
WAIT = 5.0  # seconds any single expectation may take on loopback


# ------------------------------------------------------------------------------------ codec

varuints = st.integers(min_value=0, max_value=2**53 - 1)
payloads = st.binary(max_size=300)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(SyncStep1, payloads),
    st.builds(SyncStep2, payloads),
    st.builds(SyncUpdate, payloads),
    st.builds(AwarenessUpdate, payloads),
    st.builds(Auth, varuints, st.text(max_size=50)),
    st.just(QueryAwareness()),
)
entries = st.builds(AwarenessEntry, varuints, varuints, st.text(max_size=40))


@given(varuints)
def test_varuint_round_trips(value: int) -> None:
    encoded = write_varuint(value)
    assert read_varuint(encoded, 0) == (value, len(encoded))


@given(messages)
def test_message_round_trips(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


@given(st.lists(entries, max_size=20))
def test_awareness_update_round_trips(items: list[AwarenessEntry]) -> None:
    assert decode_awareness(encode_awareness(items)) == items


@given(messages, st.data())
def test_every_strict_prefix_of_a_message_is_truncated(message: Message, data: Any) -> None:
    encoded = encode_message(message)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(TruncatedFrameError):
        decode_message(encoded[:cut])


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_frame_errors(data: bytes) -> None:
    for decode in (decode_message, decode_awareness, decode_state_vector):
        # Anything else (IndexError, UnicodeDecodeError, ...) escapes and fails the test.
        with suppress(FrameError):
            decode(data)


@given(messages, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_malformed(message: Message, tail: bytes) -> None:
    with pytest.raises(MalformedFrameError):
        decode_message(encode_message(message) + tail)


def test_unknown_message_type_is_malformed() -> None:
    with pytest.raises(MalformedFrameError, match="type 9"):
        decode_message(b"\x09")
    with pytest.raises(MalformedFrameError, match="sync message type 7"):
        decode_message(b"\x00\x07\x00")


def test_overlong_varint_is_malformed() -> None:
    with pytest.raises(MalformedFrameError):
        decode_message(b"\x00\x00" + b"\xff" * 8 + b"\x01")


def test_message_over_the_size_limit_is_oversized() -> None:
    with pytest.raises(OversizedFrameError):
        decode_message(encode_message(SyncUpdate(b"x" * 100)), max_size=50)


def test_payload_announcing_more_than_the_limit_is_oversized() -> None:
    # Refused from the length prefix alone, before waiting for bytes that never come.
    with pytest.raises(OversizedFrameError):
        decode_message(b"\x00\x02" + write_varuint(2**40), max_size=1024)


def test_awareness_with_too_many_entries_is_oversized() -> None:
    with pytest.raises(OversizedFrameError):
        decode_awareness(write_varuint(MAX_AWARENESS_ENTRIES + 1))


def test_state_vector_decodes_to_clocks() -> None:
    doc: Doc[Any] = Doc(client_id=77)
    doc.get("nodes", type=Map)["x"] = 1
    assert decode_state_vector(doc.get_state()) == {77: 1}


# ------------------------------------------------------------------------------- y client


class YClient:
    """A minimal y-websocket-like client: a pycrdt doc synced over one WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, client_id: int) -> None:
        self.ws = ws
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self.nodes: Map[Any] = self.doc.get("nodes", type=Map)
        self.synced = False
        self.received: list[Message] = []
        self.awareness: dict[int, AwarenessEntry] = {}
        self.closed = False

    async def send(self, message: Message) -> None:
        await self.ws.send_bytes(encode_message(message))

    async def hello(self) -> None:
        """Do what y-websocket does on open: send step 1."""
        await self.send(SyncStep1(self.doc.get_state()))

    async def pump(self, until: Callable[[], bool], timeout: float = WAIT) -> None:
        """Handle incoming messages until ``until()`` holds; fail after ``timeout``."""

        async def run() -> None:
            while not until():
                msg = await self.ws.receive()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    self.closed = True
                    raise AssertionError(f"socket closed: {self.ws.close_code}")
                assert msg.type == WSMsgType.BINARY, msg
                await self._handle(decode_message(msg.data))

        await asyncio.wait_for(run(), timeout)

    async def wait_closed(self, timeout: float = WAIT) -> int | None:
        """Read (and drop) messages until the server closes; return its close code."""

        async def run() -> int | None:
            for _ in range(10_000):
                msg = await self.ws.receive()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    self.closed = True
                    return self.ws.close_code
            raise AssertionError("the server kept sending and never closed")

        return await asyncio.wait_for(run(), timeout)

    async def _handle(self, message: Message) -> None:
        self.received.append(message)
        if isinstance(message, SyncStep1):
            await self.send(SyncStep2(self.doc.get_update(message.state_vector)))
        elif isinstance(message, SyncStep2 | SyncUpdate):
            self.doc.apply_update(message.update)
            if isinstance(message, SyncStep2):
                self.synced = True
        elif isinstance(message, AwarenessUpdate):
            for entry in decode_awareness(message.update):
                if entry.is_removal:
                    self.awareness.pop(entry.client_id, None)
                else:
                    self.awareness[entry.client_id] = entry

    async def sync(self) -> None:
        await self.hello()
        await self.pump(lambda: self.synced)

    async def write_node(self, node: Node) -> None:
        """Create a node locally and send the update, as a Yjs provider does."""
        before = self.doc.get_state()
        self.nodes[node.id] = Map(node.to_fields())
        await self.send(SyncUpdate(self.doc.get_update(before)))

    def node_ids(self) -> set[str]:
        return set(self.nodes.keys())


# ---------------------------------------------------------------------------------- fixtures


async def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait until ``condition()`` holds, polling; fail after ``timeout``."""

    async def run() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(run(), timeout)


def project(node_id: str, parent: str = "srv") -> Node:
    return Node.new(NodeType.Project, host=HOST, parent=parent, id=node_id, name=node_id)


@pytest.fixture
def host_doc() -> HostDoc:
    doc = HostDoc(HOST, client_id=1)
    doc.create(Node.new(NodeType.Server, host=HOST, id="srv", name="server"))
    return doc


def tokens(doc: str, token: str | None, write: bool) -> bool:
    """Test access rule: ``rw`` reads and writes, ``ro`` only reads, anything else nothing."""
    return token == "rw" or (token == "ro" and not write)


class Harness:
    def __init__(
        self, rooms: YjsRooms, server: BaseTestServer, session: aiohttp.ClientSession
    ) -> None:
        self.rooms = rooms
        self.server = server
        self.session = session
        self._ids = itertools.count(1000)

    @asynccontextmanager
    async def client(self, doc: str = HOST, token: str | None = None) -> AsyncIterator[YClient]:
        query = f"?token={token}" if token is not None else ""
        url = f"ws://127.0.0.1:{self.server.port}/ws/{doc}{query}"
        async with self.session.ws_connect(
            url, timeout=aiohttp.ClientWSTimeout(ws_close=WAIT)
        ) as ws:
            yield YClient(ws, next(self._ids))

    def rejected(self, reason: str) -> float:
        return self.rooms.metrics.value(
            "krill_frames_rejected_total", transport=TRANSPORT, reason=reason
        )

    def received(self, kind: str) -> float:
        return self.rooms.metrics.value(
            "krill_frames_received_total", transport=TRANSPORT, kind=kind
        )


@asynccontextmanager
async def serving(
    host_doc: HostDoc, options: YwsOptions | None = None, authorize: Any = None
) -> AsyncIterator[Harness]:
    def get_doc(doc: str) -> HostDoc:
        if doc != host_doc.host:
            raise NodeNotFoundError(f"no host doc {doc!r}")
        return host_doc

    extra = {"authorize": authorize} if authorize is not None else {}
    rooms = YjsRooms(get_doc, options=options or YwsOptions(), **extra)
    app = web.Application()
    rooms.attach(app)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        yield Harness(rooms, server, session)


@pytest.fixture
async def harness(host_doc: HostDoc) -> AsyncIterator[Harness]:
    async with serving(host_doc) as h:
        yield h


# ------------------------------------------------------------------------------------ sync


async def test_server_sends_step1_on_open(harness: Harness, host_doc: HostDoc) -> None:
    async with harness.client() as c:
        await c.pump(lambda: bool(c.received))
        assert c.received[0] == SyncStep1(host_doc.state_vector())


async def test_client_gets_synced_with_existing_nodes(harness: Harness) -> None:
    async with harness.client() as c:
        await c.sync()
        assert c.node_ids() == {"srv"}
        assert c.nodes["srv"]["type"] == "Server"


async def test_step1_is_answered_with_step2_even_when_empty(
    harness: Harness, host_doc: HostDoc
) -> None:
    async with harness.client() as c:
        await c.sync()
        c.received.clear()
        await c.send(SyncStep1(host_doc.state_vector()))
        await c.pump(lambda: any(isinstance(m, SyncStep2) for m in c.received))
        assert harness.received("sync-step1") == 2


async def test_client_write_reaches_host_doc_with_ws_client_origin(
    harness: Harness, host_doc: HostDoc
) -> None:
    origins: list[Origin] = []
    host_doc.on_update(lambda update, origin: origins.append(origin))
    async with harness.client() as c:
        await c.sync()
        await c.write_node(project("p1"))
        await eventually(lambda: "p1" in host_doc)
    assert host_doc.get("p1").parent == "srv"
    assert origins[-1].transport == "ws-client"
    assert origins[-1].peer.startswith("client-")
    assert harness.received("update") == 1


async def test_server_side_edit_reaches_client(harness: Harness, host_doc: HostDoc) -> None:
    async with harness.client() as c:
        await c.sync()
        host_doc.create(project("p2"))
        await c.pump(lambda: "p2" in c.node_ids())
        assert c.nodes["p2"]["parent"] == "srv"


async def test_two_clients_see_each_others_edits(harness: Harness) -> None:
    async with harness.client() as a, harness.client() as b:
        await a.sync()
        await b.sync()
        await a.write_node(project("from-a"))
        await b.pump(lambda: "from-a" in b.node_ids())
        await b.write_node(project("from-b"))
        await a.pump(lambda: "from-b" in a.node_ids())


async def test_update_is_not_echoed_to_its_sender(harness: Harness, host_doc: HostDoc) -> None:
    async with harness.client() as a, harness.client() as b:
        await a.sync()
        await b.sync()
        a.received.clear()
        await a.write_node(project("mine"))
        await b.pump(lambda: "mine" in b.node_ids())
        # A later server edit is a marker: everything sent before it has arrived by then.
        host_doc.create(project("marker"))
        await a.pump(lambda: "marker" in a.node_ids())
        assert sum(isinstance(m, SyncUpdate) for m in a.received) == 1


# ------------------------------------------------------------------------------- awareness


def presence(client_id: int, clock: int, name: str) -> AwarenessUpdate:
    state = "null" if not name else f'{{"user":{{"name":"{name}"}}}}'
    return AwarenessUpdate(encode_awareness([AwarenessEntry(client_id, clock, state)]))


async def test_awareness_is_relayed_to_the_other_clients(harness: Harness) -> None:
    async with harness.client() as a, harness.client() as b:
        await a.sync()
        await b.sync()
        await a.send(presence(11, 1, "ann"))
        await b.pump(lambda: 11 in b.awareness)
        assert "ann" in b.awareness[11].state


async def test_query_awareness_is_answered_with_remembered_states(harness: Harness) -> None:
    async with harness.client() as a, harness.client() as b:
        await a.sync()
        await a.send(presence(11, 1, "ann"))
        await a.send(presence(11, 2, "ann-renamed"))
        # Round trip on a's socket: its messages have been handled once the reply comes.
        await a.send(QueryAwareness())
        await a.pump(lambda: 11 in a.awareness)
        await b.sync()
        b.awareness.clear()
        await b.send(QueryAwareness())
        await b.pump(lambda: 11 in b.awareness)
        assert b.awareness[11].clock == 2
        assert "ann-renamed" in b.awareness[11].state


async def test_newcomer_is_told_the_present_states(harness: Harness) -> None:
    async with harness.client() as a:
        await a.sync()
        await a.send(presence(11, 1, "ann"))
        await a.send(QueryAwareness())
        await a.pump(lambda: 11 in a.awareness)
        async with harness.client() as b:
            await b.pump(lambda: 11 in b.awareness)


async def test_leaving_client_is_removed_from_the_others_awareness(harness: Harness) -> None:
    async with harness.client() as b:
        await b.sync()
        async with harness.client() as a:
            await a.sync()
            await a.send(presence(11, 1, "ann"))
            await b.pump(lambda: 11 in b.awareness)
        await b.pump(lambda: 11 not in b.awareness)


async def test_auth_message_is_ignored_without_closing(harness: Harness) -> None:
    async with harness.client() as c:
        await c.sync()
        await c.send(Auth(0, "whatever"))
        await c.send(QueryAwareness())
        await c.pump(lambda: isinstance(c.received[-1], AwarenessUpdate))
        assert not c.closed
        assert harness.received("auth") == 1


# ---------------------------------------------------------------------------------- access


async def test_bad_token_is_closed_with_4401(host_doc: HostDoc) -> None:
    async with serving(host_doc, authorize=tokens) as h, h.client(token="nope") as c:
        assert await c.wait_closed() == CLOSE_UNAUTHORIZED
        assert h.rejected("unauthorized") == 1


async def test_unknown_doc_is_closed_with_4404(harness: Harness) -> None:
    async with harness.client(doc="nobody") as c:
        assert await c.wait_closed() == CLOSE_UNKNOWN_DOC
        assert harness.rejected("unknown-doc") == 1


async def test_read_only_token_syncs_and_reads(host_doc: HostDoc) -> None:
    async with serving(host_doc, authorize=tokens) as h, h.client(token="ro") as c:
        await c.sync()
        host_doc.create(project("p3"))
        await c.pump(lambda: "p3" in c.node_ids())
        assert not c.closed


async def test_read_only_client_repeating_known_deletions_stays_connected(
    host_doc: HostDoc,
) -> None:
    host_doc.create(project("gone"))
    host_doc.delete("gone")
    async with serving(host_doc, authorize=tokens) as h, h.client(token="ro") as c:
        # A client that already holds the doc: its step 2 is empty of items but repeats the
        # delete set, which is no write.
        c.doc.apply_update(host_doc.diff())
        before = host_doc.state_vector()
        await c.sync()
        await c.send(QueryAwareness())
        await c.pump(lambda: isinstance(c.received[-1], AwarenessUpdate))
        assert any(isinstance(m, SyncStep1) for m in c.received)
        assert not c.closed
        assert host_doc.state_vector() == before
        assert h.rejected("forbidden") == 0


async def test_read_only_token_write_is_refused_with_4403(host_doc: HostDoc) -> None:
    async with serving(host_doc, authorize=tokens) as h, h.client(token="ro") as c:
        await c.sync()
        before = host_doc.state_vector()
        await c.write_node(project("sneaky"))
        assert await c.wait_closed() == CLOSE_FORBIDDEN
        assert c.ws.close_code == CLOSE_FORBIDDEN
        assert host_doc.state_vector() == before
        assert "sneaky" not in host_doc
        assert h.rejected("forbidden") == 1


async def test_read_write_token_may_write(host_doc: HostDoc) -> None:
    async with serving(host_doc, authorize=tokens) as h, h.client(token="rw") as c:
        await c.sync()
        await c.write_node(project("fine"))
        await eventually(lambda: "fine" in host_doc)


# ------------------------------------------------------------------------------- bad input


async def refused_then_alive(h: Harness, c: YClient, data: bytes, reason: str) -> None:
    """Send ``data``; the server counts it as ``reason`` and still answers on the socket."""
    await c.ws.send_bytes(data)
    c.received.clear()
    await c.send(QueryAwareness())
    await c.pump(lambda: bool(c.received))
    assert h.rejected(reason) == 1
    assert not c.closed


async def test_garbage_message_is_refused_and_counted(harness: Harness, host_doc: HostDoc) -> None:
    before = host_doc.diff()
    async with harness.client() as c:
        await c.sync()
        await refused_then_alive(harness, c, b"\x07\x01\x02", "malformed")
    assert host_doc.diff() == before


async def test_truncated_message_is_refused_and_counted(
    harness: Harness, host_doc: HostDoc
) -> None:
    before = host_doc.diff()
    async with harness.client() as c:
        await c.sync()
        await refused_then_alive(harness, c, b"\x00\x02\x10abc", "truncated")
    assert host_doc.diff() == before


async def test_undecodable_update_is_refused_and_counted(
    harness: Harness, host_doc: HostDoc
) -> None:
    before = host_doc.diff()
    async with harness.client() as c:
        await c.sync()
        data = encode_message(SyncUpdate(b"\xff\xff\xff\x01\x02"))
        await refused_then_alive(harness, c, data, "bad-update")
    assert host_doc.diff() == before


async def test_text_message_is_refused_and_counted(harness: Harness) -> None:
    async with harness.client() as c:
        await c.sync()
        await c.ws.send_str("hello")
        await c.send(QueryAwareness())
        await c.pump(lambda: isinstance(c.received[-1], AwarenessUpdate))
        assert harness.rejected("malformed") == 1
        assert not c.closed


async def test_oversized_message_closes_the_socket_and_is_counted(host_doc: HostDoc) -> None:
    before = host_doc.diff()
    options = YwsOptions(max_message_size=4096)
    async with serving(host_doc, options=options) as h, h.client() as c:
        await c.sync()
        await c.send(SyncUpdate(b"\x00" * 10_000))
        assert await c.wait_closed() == 1009
        await eventually(lambda: h.rejected("oversized") == 1)
    assert host_doc.diff() == before


# ------------------------------------------------------------------------- flow and liveness


async def test_keepalive_is_sent_within_the_interval(host_doc: HostDoc) -> None:
    async with serving(host_doc, options=YwsOptions(keepalive=0.2)) as h, h.client() as c:
        await c.sync()
        c.received.clear()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await c.pump(lambda: bool(c.received), timeout=1.0)
        assert loop.time() - start < 0.6
        assert c.received == [AwarenessUpdate(encode_awareness([]))]


async def test_slow_client_is_closed_instead_of_buffered(host_doc: HostDoc) -> None:
    options = YwsOptions(send_queue_messages=3)
    async with serving(host_doc, options=options) as h, h.client() as c:
        await c.sync()
        # Writes in one go, with no await between them: the writer cannot drain meanwhile.
        for number in range(10):
            host_doc.create(project(f"burst-{number}"))
        assert await c.wait_closed() == CLOSE_SLOW_CLIENT
        assert h.rejected("slow-client") == 1
        await eventually(lambda: h.rooms.clients(HOST) == 0)


async def test_frames_are_counted_by_kind(harness: Harness) -> None:
    async with harness.client() as c:
        await c.sync()
        await c.write_node(project("counted"))
        await c.send(QueryAwareness())
        await c.pump(lambda: isinstance(c.received[-1], AwarenessUpdate))
    metrics = harness.rooms.metrics
    for kind in ("sync-step1", "sync-step2", "awareness"):
        assert metrics.value("krill_frames_sent_total", transport=TRANSPORT, kind=kind) >= 1
    for kind in ("sync-step1", "sync-step2", "update", "query-awareness"):
        assert harness.received(kind) == 1


async def test_shutdown_closes_clients_with_going_away(harness: Harness) -> None:
    async with harness.client() as c:
        await c.sync()
        # The client must read to answer the close handshake, as a real one does.
        code, _ = await asyncio.gather(c.wait_closed(), harness.rooms.close())
        assert code == 1001
