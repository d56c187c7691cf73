"""The client-facing ``GET /ws/{doc}`` route: plain y-protocols, for stock Yjs clients.

A browser or Node.js script using y-websocket joins one host doc by connecting to
``ws://HOST:PORT/ws/{doc}`` (with ``?token=...`` or an ``Authorization: Bearer`` header).
Everyone connected to the same doc shares a *room*:

* on open the server sends its sync step 1 (its state vector) and the awareness states it
  remembers; every client step 1 is answered with a step 2, even an empty one, because a
  y-websocket client counts itself synced only once a step 2 arrives;
* a client's step 2 or update is applied to the host doc with origin
  ``Origin("client-N", "ws-client")``, after the write check of the ``authorize`` hook;
* every update of the host doc, whoever made it (this peer's API, remote peers, other
  clients, the orphan rule), is pushed to every client of the room except the one it came
  from. One :meth:`HostDoc.on_update <krill_crdt.store.HostDoc.on_update>` listener serves
  the whole room, registered once, and rooms live as long as this object (pycrdt does not
  free callbacks on unobserve);
* awareness (presence) is relayed between the clients of a room and remembered, so a
  query-awareness is answered and a newcomer sees who is there; when a client leaves, the
  others are told its states are gone.

Close codes: 4401 (the token may not read the doc), 4403 (a write by a token that may only
read), 4404 (no such doc). y-websocket treats 4400-4499 as final and does not reconnect.
A client too slow to take what it is sent is closed with 1013 (try again later), so it
reconnects and catches up with a fresh step 1/step 2 instead of making the server buffer.

Updates accepted here reach the host doc with transport ``"ws-client"``; forwarding them to
the swarm is the peer runtime's job, as for any other local change.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from aiohttp.http_websocket import WebSocketError
from pycrdt import get_state

from ..errors import (
    FrameError,
    NodeNotFoundError,
    OversizedFrameError,
    StoreClosedError,
    TruncatedFrameError,
    UpdateRejectedError,
)
from ..metrics import Metrics
from ..store.hostdoc import HostDoc
from ..store.origin import Origin
from .limits import RateLimit, TokenBucket
from .yprotocol import (
    EMPTY_UPDATE,
    MAX_MESSAGE_SIZE,
    Auth,
    AwarenessEntry,
    AwarenessUpdate,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    decode_message,
    decode_state_vector,
    encode_awareness,
    encode_message,
)

__all__ = [
    "CLOSE_FORBIDDEN",
    "CLOSE_SLOW_CLIENT",
    "CLOSE_UNAUTHORIZED",
    "CLOSE_UNKNOWN_DOC",
    "DEFAULT_HEARTBEAT_SECONDS",
    "DEFAULT_KEEPALIVE_SECONDS",
    "DEFAULT_SEND_QUEUE_BYTES",
    "DEFAULT_SEND_QUEUE_MESSAGES",
    "MAX_AWARENESS_STATE_BYTES",
    "MAX_REMEMBERED_AWARENESS",
    "ROUTE",
    "TRANSPORT",
    "Authorize",
    "DocGetter",
    "YjsRooms",
    "YwsOptions",
    "allow_all",
]

log = logging.getLogger("krill.transport.ws")

#: The ``transport`` of every origin, metric label and log line of this route.
TRANSPORT = "ws-client"

#: The route; y-websocket builds its URL as ``server + "/" + room``.
ROUTE = "/ws/{doc}"

#: The token may not read this doc (sent at connect). Permanent for y-websocket (4400-4499).
CLOSE_UNAUTHORIZED = 4401
#: The token may read but not write, and the client sent a write. Permanent.
CLOSE_FORBIDDEN = 4403
#: No such host doc. Permanent.
CLOSE_UNKNOWN_DOC = 4404
#: The client did not take what it was sent fast enough (RFC 6455 "try again later"):
#: deliberately outside 4400-4499 so the client reconnects and resyncs.
CLOSE_SLOW_CLIENT = 1013
#: This peer is shutting down (RFC 6455 "going away").
_CLOSE_GOING_AWAY = 1001

#: Longest silence towards a client. y-websocket drops a connection on which nothing arrived
#: for 30 s; sending at least every 15 s leaves room for one late message, and is also how
#: often the awareness protocol renews a client's own state.
DEFAULT_KEEPALIVE_SECONDS = 15.0

#: WebSocket ping interval, to find clients that vanished without closing (a laptop lid shut,
#: a Wi-Fi drop). aiohttp closes the socket when no pong comes within half of it.
DEFAULT_HEARTBEAT_SECONDS = 30.0

#: Messages queued for one client before it counts as too slow. A burst of local writes
#: (an import, a chain run touching many nodes) produces one update per transaction; a
#: thousand is seconds of such a burst, and a client that falls further behind is better
#: served by a fresh step 2 than by the backlog.
DEFAULT_SEND_QUEUE_MESSAGES = 1024

#: Bytes queued for one client before it counts as too slow. 8 MiB unsent is minutes of
#: backlog for a client on Wi-Fi to a Raspberry Pi; catching up by reconnecting costs one
#: step 2. A message is queued as long as the backlog is under this, whatever its own size,
#: so the step 2 of a host doc larger than the budget still goes out; one client can thus
#: hold at most this plus one message.
DEFAULT_SEND_QUEUE_BYTES = 8 * 1024 * 1024

#: Awareness states a room remembers (to answer query-awareness and greet newcomers). One
#: per open editor; more than this in one room is abuse, and further states are still
#: relayed, only not remembered.
MAX_REMEMBERED_AWARENESS = 256

#: Largest awareness state a room remembers. Real states (a user name, a colour, a cursor)
#: are well under 1 KiB; the cap bounds a room's memory at 256 x 16 KiB = 4 MiB.
MAX_AWARENESS_STATE_BYTES = 16 * 1024

#: Remote addresses remembered for "warn once per source" on refused connections; the set
#: starts over when full, so a flood of sources costs bounded memory and some repeated lines.
_MAX_WARNED_SOURCES = 4096

#: Seconds given to a close handshake before the connection is cut.
_CLOSE_TIMEOUT_SECONDS = 5.0

#: An awareness update with no entries: the cheapest message that a y-websocket client
#: counts as a sign of life and otherwise ignores.
_KEEPALIVE = encode_message(AwarenessUpdate(encode_awareness([])))

#: ``authorize(doc, token, write)``: may the holder of ``token`` (``None`` without one) read
#: the doc (``write=False``) or also write it (``write=True``)?
Authorize = Callable[[str, str | None, bool], bool]

#: Returns the host doc of a doc id, or raises NodeNotFoundError.
DocGetter = Callable[[str], HostDoc]


def allow_all(doc: str, token: str | None, write: bool) -> bool:
    """The default access hook: everyone may read and write every doc.

    Returns:
        Always True.
    """
    return True


@dataclass(frozen=True, slots=True)
class YwsOptions:
    """Limits and timings of the ``/ws/{doc}`` route.

    Attributes:
        max_message_size: largest message accepted from a client, in bytes; larger ones
            close the socket (aiohttp's ``max_msg_size``, code 1009).
        keepalive: longest silence towards a client, in seconds; then an empty awareness
            update is sent.
        heartbeat: WebSocket ping interval in seconds, or None for no pings.
        send_queue_messages: messages queued per client before it is closed as too slow.
        send_queue_bytes: backlog in bytes per client at which it is closed as too slow
            (see :data:`DEFAULT_SEND_QUEUE_BYTES`).
        message_rate: messages per second read from one client on average; a client above
            it is read more slowly (TCP pushes back on it), never cut off.
        message_burst: messages one client may send at once above that rate.

    Raises:
        ValueError: a limit or timing is not positive.
    """

    max_message_size: int = MAX_MESSAGE_SIZE
    keepalive: float = DEFAULT_KEEPALIVE_SECONDS
    heartbeat: float | None = DEFAULT_HEARTBEAT_SECONDS
    send_queue_messages: int = DEFAULT_SEND_QUEUE_MESSAGES
    send_queue_bytes: int = DEFAULT_SEND_QUEUE_BYTES
    # An editor sends an update per keystroke and awareness a few times a second: a thousand
    # a second is far above any person and still bounds what one socket can make us do.
    message_rate: float = 1000.0
    message_burst: float = 4000.0

    def __post_init__(self) -> None:
        for name in (
            "max_message_size",
            "keepalive",
            "send_queue_messages",
            "send_queue_bytes",
            "message_rate",
            "message_burst",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.heartbeat is not None and not self.heartbeat > 0:
            raise ValueError(f"heartbeat must be positive or None, got {self.heartbeat!r}")


@dataclass(eq=False, slots=True)
class _Client:
    """One open WebSocket of a room, with its bounded send queue."""

    origin: Origin
    doc: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    token: str | None
    options: YwsOptions
    queue: deque[tuple[bytes, str]] = field(default_factory=deque)
    queued_bytes: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.Task[None] | None = None
    eviction: asyncio.Task[None] | None = None
    warned: bool = False
    # Awareness client ids whose states this connection sent.
    awareness_ids: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.origin.peer

    @property
    def gone(self) -> bool:
        return self.eviction is not None or self.ws.closed

    def has_room(self) -> bool:
        """Whether the backlog is small enough to queue one more message."""
        return (
            len(self.queue) < self.options.send_queue_messages
            and self.queued_bytes < self.options.send_queue_bytes
        )


@dataclass(eq=False, slots=True)
class _Room:
    """The clients of one host doc and the awareness states they shared."""

    doc: str
    host_doc: HostDoc
    clients: dict[str, _Client] = field(default_factory=dict)
    awareness: dict[int, AwarenessEntry] = field(default_factory=dict)
    # Awareness client id -> name of the connection that last sent its state.
    owners: dict[int, str] = field(default_factory=dict)

    def awareness_message(self) -> bytes:
        return encode_message(AwarenessUpdate(encode_awareness(list(self.awareness.values()))))


class YjsRooms:
    """Serves ``GET /ws/{doc}`` to stock Yjs clients, one room per host doc.

    Args:
        get_doc: returns the host doc of a doc id; raises
            :class:`~krill_crdt.errors.NodeNotFoundError` for an unknown one.
        authorize: the access hook (see :data:`Authorize`); asked at connect with
            ``write=False`` and before every write with ``write=True``, so a revoked token
            takes effect on its next write. Must be cheap and must not block. An exception
            in it counts as a refusal.
        metrics: where frames are counted (a private :class:`Metrics` if not given).
        options: limits and timings.

    All methods must run on the event loop that owns the host docs.

    Example:
        >>> rooms = YjsRooms(docs.get)  # doctest: +SKIP
        >>> rooms.attach(app)  # doctest: +SKIP
    """

    def __init__(
        self,
        get_doc: DocGetter,
        *,
        authorize: Authorize = allow_all,
        metrics: Metrics | None = None,
        options: YwsOptions | None = None,
    ) -> None:
        self._get_doc = get_doc
        self._authorize = authorize
        self.metrics = metrics if metrics is not None else Metrics()
        self.options = options if options is not None else YwsOptions()
        self._rooms: dict[str, _Room] = {}
        self._numbers = itertools.count(1)
        self._warned_sources: set[str] = set()

    # ------------------------------------------------------------------------------ mounting

    def routes(self) -> list[web.RouteDef]:
        """Return the route table entry for ``GET /ws/{doc}``."""
        return [web.get(ROUTE, self.handle)]

    def attach(self, app: web.Application) -> None:
        """Mount the route on ``app`` and close every client when the app shuts down."""
        app.add_routes(self.routes())
        app.on_shutdown.append(self._on_shutdown)

    def clients(self, doc: str) -> int:
        """Return how many clients are connected to a doc's room."""
        room = self._rooms.get(doc)
        return len(room.clients) if room is not None else 0

    async def close(self) -> None:
        """Close every client connection with 1001 (going away). Idempotent.

        Rooms and their host doc listeners stay, so the object can serve again.
        """
        evictions = [
            self._kick(client, _CLOSE_GOING_AWAY, "server shutting down")
            for room in self._rooms.values()
            for client in list(room.clients.values())
        ]
        await asyncio.gather(*evictions, return_exceptions=True)

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()

    # ---------------------------------------------------------------------------- connection

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one WebSocket connection until it closes.

        Returns:
            The WebSocket response, closed.
        """
        doc = request.match_info["doc"]
        token = _token(request)
        ws = web.WebSocketResponse(
            max_msg_size=self.options.max_message_size,
            heartbeat=self.options.heartbeat,
            timeout=_CLOSE_TIMEOUT_SECONDS,
        )
        await ws.prepare(request)
        _set_nodelay(request)

        # Step 1: access before existence, so a stranger cannot probe which docs exist.
        if not self._allowed(doc, token, write=False):
            self.metrics.rejected(TRANSPORT, "unauthorized")
            self._log_refusal(
                request.remote, "ws client from %s refused for doc %s: not authorized", doc
            )
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"not authorized for this doc")
            return ws
        try:
            host_doc = self._get_doc(doc)
        except NodeNotFoundError:
            self.metrics.rejected(TRANSPORT, "unknown-doc")
            self._log_refusal(request.remote, "ws client from %s asked for unknown doc %s", doc)
            await ws.close(code=CLOSE_UNKNOWN_DOC, message=b"no such doc")
            return ws

        # Step 2: join the room and serve.
        room = self._room(doc, host_doc)
        origin = Origin(f"client-{next(self._numbers)}", TRANSPORT)
        client = _Client(origin, doc, ws, request.transport, token, self.options)
        await self._serve(room, client, request.remote)
        return ws

    async def _serve(self, room: _Room, client: _Client, remote: str | None) -> None:
        room.clients[client.name] = client
        log.info(
            "ws client %s (%s) joined doc %s; %d client(s) in the room",
            client.name,
            remote,
            room.doc,
            len(room.clients),
        )
        self._push(client, encode_message(SyncStep1(room.host_doc.state_vector())), "sync-step1")
        if room.awareness:
            self._push(client, room.awareness_message(), "awareness")
        client.writer = asyncio.create_task(self._write_loop(client))
        try:
            await self._read_loop(room, client)
        finally:
            self._leave(room, client)
            client.writer.cancel()
            await asyncio.gather(client.writer, return_exceptions=True)
            if client.eviction is not None:
                await asyncio.gather(client.eviction, return_exceptions=True)
            elif not client.ws.closed:
                await client.ws.close()
            log.info(
                "ws client %s left doc %s (close code %s)",
                client.name,
                room.doc,
                client.ws.close_code,
            )

    async def _read_loop(self, room: _Room, client: _Client) -> None:
        # Ends when the socket closes; every message is handled before the next is read.
        loop = asyncio.get_running_loop()
        limit = RateLimit(self.options.message_rate, self.options.message_burst)
        bucket = TokenBucket(limit, loop.time())
        async for message in client.ws:
            if message.type == WSMsgType.BINARY:
                if not await self._on_message(room, client, message.data):
                    return
                wait = bucket.delay(loop.time())
                if wait > 0:
                    await asyncio.sleep(wait)
            elif message.type == WSMsgType.TEXT:
                self._refuse(client, room, "malformed", "a text message (y-protocols is binary)")
            elif message.type == WSMsgType.ERROR:
                error = message.data
                if isinstance(error, WebSocketError) and error.code == 1009:
                    # NOTE: aiohttp closes an oversized message with 1009, which y-websocket
                    # NOTE: retries: a client whose step 2 alone exceeds max_message_size
                    # NOTE: reconnects and is refused again, backing off to 2.5 s.
                    self._refuse(client, room, "oversized", str(error))
                else:
                    log.debug(
                        "ws client %s on doc %s: socket error %s", client.name, room.doc, error
                    )
                return

    async def _write_loop(self, client: _Client) -> None:
        # The only task that sends on this socket, so messages leave in the order queued.
        keepalive = self.options.keepalive
        try:
            while not client.gone:
                if not client.queue:
                    client.wakeup.clear()
                    try:
                        await asyncio.wait_for(client.wakeup.wait(), keepalive)
                    except asyncio.TimeoutError:
                        self._push(client, _KEEPALIVE, "awareness")
                while client.queue and not client.gone:
                    data, kind = client.queue.popleft()
                    client.queued_bytes -= len(data)
                    await client.ws.send_bytes(data)
                    self.metrics.sent(TRANSPORT, kind)
        except ConnectionError as exc:
            # The reader sees the socket close and cleans up.
            log.debug("ws client %s on doc %s: send failed: %s", client.name, client.doc, exc)

    def _push(self, client: _Client, data: bytes, kind: str) -> None:
        """Queue one message for a client; a client whose queue is full is evicted."""
        if client.gone:
            return
        if not client.has_room():
            self.metrics.frames_dropped.labels(TRANSPORT).inc(len(client.queue) + 1)
            self.metrics.rejected(TRANSPORT, "slow-client")
            log.warning(
                "ws client %s on doc %s: %d message(s), %d bytes unsent; closing it as too slow",
                client.name,
                client.doc,
                len(client.queue),
                client.queued_bytes,
            )
            self._kick(client, CLOSE_SLOW_CLIENT, "too slow: send queue full")
            return
        client.queue.append((data, kind))
        client.queued_bytes += len(data)
        client.wakeup.set()

    def _kick(self, client: _Client, code: int, reason: str) -> asyncio.Task[None]:
        """Start closing a client's socket with ``code`` (once); return the closing task."""
        if client.eviction is None:
            client.eviction = asyncio.get_running_loop().create_task(
                self._evict(client, code, reason)
            )
        return client.eviction

    async def _evict(self, client: _Client, code: int, reason: str) -> None:
        client.queue.clear()
        client.queued_bytes = 0
        if client.writer is not None:
            # A writer stuck on a client that does not read would hold the close up.
            client.writer.cancel()
        try:
            await asyncio.wait_for(
                client.ws.close(code=code, message=reason.encode("utf-8")),
                _CLOSE_TIMEOUT_SECONDS * 2,
            )
        except (asyncio.TimeoutError, ConnectionError) as exc:
            # A client that takes nothing does not take a close frame either: cut it off.
            log.debug(
                "ws client %s on doc %s: close with %d failed: %s",
                client.name,
                client.doc,
                code,
                exc,
            )
            if client.transport is not None:
                client.transport.abort()

    # ------------------------------------------------------------------------------ messages

    async def _on_message(self, room: _Room, client: _Client, data: bytes) -> bool:
        """Handle one binary message; return False once the connection was closed."""
        try:
            message = decode_message(data, max_size=self.options.max_message_size)
        except FrameError as exc:
            self._refuse(client, room, _reason(exc), str(exc))
            return True

        if isinstance(message, SyncStep1):
            try:
                reply = room.host_doc.diff(message.state_vector)
            except UpdateRejectedError as exc:
                self._refuse(client, room, "bad-state-vector", str(exc))
                return True
            self.metrics.received(TRANSPORT, "sync-step1")
            self._push(client, encode_message(SyncStep2(reply)), "sync-step2")
        elif isinstance(message, SyncStep2):
            return await self._on_update(room, client, message.update, "sync-step2")
        elif isinstance(message, SyncUpdate):
            return await self._on_update(room, client, message.update, "update")
        elif isinstance(message, AwarenessUpdate):
            self._on_awareness(room, client, data, message.update)
        elif isinstance(message, QueryAwareness):
            self.metrics.received(TRANSPORT, "query-awareness")
            self._push(client, room.awareness_message(), "awareness")
        elif isinstance(message, Auth):
            # Auth messages flow from server to client in y-protocols; one from a client
            # means nothing here.
            self.metrics.received(TRANSPORT, "auth")
            log.debug("ws client %s on doc %s: auth message ignored", client.name, room.doc)
        return True

    async def _on_update(self, room: _Room, client: _Client, update: bytes, kind: str) -> bool:
        # Step 1: an empty update (a step 2 of a client with nothing new) changes nothing.
        if update == EMPTY_UPDATE:
            self.metrics.received(TRANSPORT, kind)
            return True

        # Step 2: the write check, before anything is applied.
        if not self._allowed(room.doc, client.token, write=True):
            if not _adds_content(update, room.host_doc.state_vector()):
                # A read-only client's step 2 repeats the delete set it was sent; it holds
                # nothing this doc lacks. Dropping it is exact for what it repeats.
                # NOTE: a read-only client's deletion of items this doc still has is
                # NOTE: dropped too, without closing it: telling the two apart would need
                # NOTE: a copy of the whole doc per message.
                log.debug(
                    "ws client %s on doc %s: read-only, update without new items dropped",
                    client.name,
                    room.doc,
                )
                return True
            self.metrics.rejected(TRANSPORT, "forbidden")
            log.warning(
                "ws client %s on doc %s: write refused, the token may only read; closing",
                client.name,
                room.doc,
            )
            await self._kick(client, CLOSE_FORBIDDEN, "read-only: writes are not allowed")
            return False

        # Step 3: apply; the host doc listener pushes it on to the other clients.
        try:
            room.host_doc.apply(update, origin=client.origin)
        except UpdateRejectedError as exc:
            self._refuse(client, room, "bad-update", str(exc))
            return True
        except StoreClosedError:
            await self._kick(client, _CLOSE_GOING_AWAY, "doc closed")
            return False
        self.metrics.received(TRANSPORT, kind)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "ws client %s on doc %s: %s of %d bytes applied",
                client.name,
                room.doc,
                kind,
                len(update),
            )
        return True

    def _on_awareness(self, room: _Room, client: _Client, data: bytes, update: bytes) -> None:
        try:
            entries = decode_awareness(update)
        except FrameError as exc:
            self._refuse(client, room, _reason(exc), f"awareness: {exc}")
            return
        self.metrics.received(TRANSPORT, "awareness")

        # Step 1: remember the latest state of each awareness client, within bounds.
        for entry in entries:
            if entry.is_removal:
                room.awareness.pop(entry.client_id, None)
                room.owners.pop(entry.client_id, None)
                client.awareness_ids.discard(entry.client_id)
                continue
            known = room.awareness.get(entry.client_id)
            if known is not None and entry.clock < known.clock:
                continue  # stale: y-protocols keeps the higher clock
            if len(entry.state.encode("utf-8")) > MAX_AWARENESS_STATE_BYTES or (
                known is None and len(room.awareness) >= MAX_REMEMBERED_AWARENESS
            ):
                log.debug(
                    "ws client %s on doc %s: awareness of %d relayed, not remembered",
                    client.name,
                    room.doc,
                    entry.client_id,
                )
                continue
            room.awareness[entry.client_id] = entry
            room.owners[entry.client_id] = client.name
            client.awareness_ids.add(entry.client_id)

        # Step 2: relay the message as sent to everyone else in the room.
        for other in list(room.clients.values()):
            if other is not client:
                self._push(other, data, "awareness")

    def _leave(self, room: _Room, client: _Client) -> None:
        """Remove a client; tell the others that the awareness states it owned are gone."""
        room.clients.pop(client.name, None)
        gone = []
        for client_id in sorted(client.awareness_ids):
            if room.owners.get(client_id) != client.name:
                continue  # the same editor reconnected and now speaks on another socket
            entry = room.awareness.pop(client_id)
            room.owners.pop(client_id)
            gone.append(AwarenessEntry(client_id, entry.clock + 1, "null"))
        if gone:
            data = encode_message(AwarenessUpdate(encode_awareness(gone)))
            for other in list(room.clients.values()):
                self._push(other, data, "awareness")

    # ------------------------------------------------------------------------------- helpers

    def _room(self, doc: str, host_doc: HostDoc) -> _Room:
        room = self._rooms.get(doc)
        if room is not None and room.host_doc is host_doc:
            return room
        # NOTE: a doc id whose host doc was replaced (closed and reopened) gets a new room;
        # NOTE: clients still in the old one stay on the old host doc until they reconnect.
        room = _Room(doc, host_doc)
        self._rooms[doc] = room
        host_doc.on_update(lambda update, origin: self._broadcast(room, update, origin))
        return room

    def _broadcast(self, room: _Room, update: bytes, origin: Origin) -> None:
        # Runs inside the host doc's commit: queue only, never write to the doc.
        if update == EMPTY_UPDATE or not room.clients:
            return
        data = encode_message(SyncUpdate(update))
        source = origin.peer if origin.transport == TRANSPORT else None
        for name, client in list(room.clients.items()):
            if name != source:
                self._push(client, data, "update")

    def _allowed(self, doc: str, token: str | None, *, write: bool) -> bool:
        try:
            return bool(self._authorize(doc, token, write))
        except Exception:
            # Fail closed: a broken access hook must not open the doc to everyone.
            log.exception("ws access hook failed for doc %s (write=%s); refusing", doc, write)
            return False

    def _log_refusal(self, remote: str | None, text: str, doc: str) -> None:
        """Log a refused connection at warning once per remote address, then at debug."""
        source = remote or "?"
        if source in self._warned_sources:
            log.debug(text, source, doc)
            return
        if len(self._warned_sources) >= _MAX_WARNED_SOURCES:
            self._warned_sources.clear()
        self._warned_sources.add(source)
        log.warning(text + " (later refusals of this source are logged at debug)", source, doc)

    def _refuse(self, client: _Client, room: _Room, reason: str, detail: str) -> None:
        """Count a refused message; log it at warning once per client, then at debug."""
        self.metrics.rejected(TRANSPORT, reason)
        if client.warned:
            log.debug(
                "ws client %s on doc %s: %s message refused: %s",
                client.name,
                room.doc,
                reason,
                detail,
            )
            return
        client.warned = True
        log.warning(
            "ws client %s on doc %s: %s message refused: %s (later ones are logged at debug)",
            client.name,
            room.doc,
            reason,
            detail,
        )


def _token(request: web.Request) -> str | None:
    """The client's token: ``Authorization: Bearer X`` (Node.js clients), else ``?token=X``.

    Browsers cannot set headers on a WebSocket, hence the query parameter.
    """
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token") or None


def _reason(exc: FrameError) -> str:
    """The ``reason`` label of a refused message."""
    if isinstance(exc, OversizedFrameError):
        return "oversized"
    if isinstance(exc, TruncatedFrameError):
        return "truncated"
    return "malformed"


def _adds_content(update: bytes, state_vector: bytes) -> bool:
    """Whether ``update`` holds items a doc at ``state_vector`` lacks (True if unsure)."""
    try:
        theirs = decode_state_vector(get_state(update))
        ours = decode_state_vector(state_vector)
    except (ValueError, FrameError):
        return True
    return any(clock > ours.get(client_id, 0) for client_id, clock in theirs.items())


def _set_nodelay(request: web.Request) -> None:
    # Small updates must leave at once, not wait for Nagle's algorithm to batch them.
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
