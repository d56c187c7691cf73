"""Peer-to-peer WebSocket links: one connection per pair of peers, krill frames both ways.

Peers found by beacon dial each other on :attr:`WsLinkOptions.path` and keep one WebSocket
per pair. Every binary message on it is exactly one krill frame (``docs/wire.md``), for any
followed host doc; the transport never decodes one.

The handshake authenticates both ends before a frame flows, each against a fresh random
challenge from the other, so a hello recorded on the network is worth nothing later:

1. The dialer connects, naming the peer it expects in the :data:`PEER_HEADER` request
   header and sending its challenge (16 random bytes, hex) in :data:`CHALLENGE_HEADER`.
2. The accepting side sends its own challenge (16 random bytes) as the first binary message.
3. The dialer answers with its hello for that challenge (a frame the engine signs, binding
   the challenge under the MAC).
4. The accepting side checks it with ``identify`` within ``connect_timeout``; a missing or
   refused hello, a missing challenge, or a dial meant for another peer, closes the socket
   with code :data:`CLOSE_HELLO_REFUSED`. Otherwise it answers with its own hello, for the
   dialer's challenge.
5. The dialer checks the answer with ``identify``; an answer naming another peer than the one
   it dialed closes the socket and the dialer retries with backoff.

When both peers dial each other at once, each end keeps the connection dialed by the peer with
the smaller id and closes the other with code 1000 and the reason ``"duplicate link"``; both
ends compute the same answer without talking about it. Frames still queued on the connection
given up move to the one kept; frames already in flight on it may be lost, which the engine's
anti-entropy heals.

Example:
    >>> links = WsLinkTransport(
    ...     peer_id,
    ...     hello=lambda challenge: engine.hello(time.time(), challenge),
    ...     identify=engine.identify,
    ... )
    >>> app.router.add_routes(links.routes())          # the caller owns the app and runner
    >>> await links.start(engine.deliver)
    >>> links.dial(other_peer_id, "ws://192.168.1.20:8442/krill/v1/link")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import ssl
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .._core.codec import FRAME_OVERHEAD, MAX_FRAME_SIZE
from ..errors import ValidationError
from ..metrics import Metrics
from ..sync.link import PEER_ID_SIZE, Link, Send
from .base import Deliver
from .limits import RateLimit, TokenBucket

__all__ = [
    "CHALLENGE_HEADER",
    "CHALLENGE_SIZE",
    "CLOSE_DUPLICATE_REASON",
    "CLOSE_HELLO_REFUSED",
    "CLOSE_WRONG_PEER_REASON",
    "PEER_HEADER",
    "WsLinkOptions",
    "WsLinkTransport",
]

log = logging.getLogger("krill.transport.ws")

#: Close code for a missing, late or refused hello. Codes 4400-4499 read as "permanent" to
#: y-websocket clients, so a browser that wanders onto this route does not retry forever.
CLOSE_HELLO_REFUSED = 4401

#: Close reason of the connection given up when two links to the same peer came up.
CLOSE_DUPLICATE_REASON = "duplicate link"

#: Close reason (with :data:`CLOSE_HELLO_REFUSED`) when the dialer asked for another peer.
CLOSE_WRONG_PEER_REASON = "not the peer dialed"

#: Request header in which the dialer names, in hex, the peer it means to reach. The accepting
#: side refuses a dial meant for another peer before answering, so it never reports a link that
#: the dialer would drop at once. Peer ids are public (every frame carries its origin).
PEER_HEADER = "Krill-Peer"
#: Request header carrying the dialer's challenge to the accepting side, in hex.
CHALLENGE_HEADER = "Krill-Challenge"
#: Bytes of random in each challenge: 128 bits never repeat in practice.
CHALLENGE_SIZE = 16

#: Longest route path accepted: routes are short constants, never user data.
_MAX_PATH_LEN = 256

#: Longest backoff accepted: beyond five minutes a returning peer would sit unreachable long
#: after its beacons announced it again.
_MAX_BACKOFF = 300.0

#: Upper bound for timeouts and the heartbeat: anything longer hides a dead peer for minutes.
_MAX_TIMEOUT = 300.0

#: Backoff exponent cap: 2**32 times ``backoff_min`` is far above any ``backoff_max``, and a
#: float power of a larger exponent would overflow after enough failed attempts.
_MAX_BACKOFF_EXPONENT = 32

#: Sources (remote address or peer) remembered for "warn once"; beyond it repeats log at debug,
#: so a scan of the port cannot grow memory without bound.
_MAX_WARNED_SOURCES = 1024

_Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


def _short(peer: bytes) -> str:
    """The first 8 hex characters of a peer id: enough to tell peers apart in logs."""
    return peer.hex()[:8]


def _check_float(field: str, value: object, low: float, high: float) -> None:
    """Raise :class:`ValidationError` unless ``value`` is a finite number, ``low < value <= high``.

    Raises:
        ValidationError: wrong type, not finite, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, "must be a number", value)
    if not math.isfinite(value) or not low < value <= high:
        raise ValidationError(field, f"must be above {low:g} and at most {high:g}", value)


def _check_int(field: str, value: object, low: int, high: int) -> None:
    """Raise :class:`ValidationError` unless ``value`` is an integer, ``low <= value <= high``.

    Raises:
        ValidationError: wrong type or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be an integer", value)
    if not low <= value <= high:
        raise ValidationError(field, f"must be {low}..{high}", value)


@dataclass(frozen=True, slots=True)
class WsLinkOptions:
    """Settings of the peer link transport; every value is checked on construction.

    Attributes:
        path: the route the accepting side serves and the dialer's URLs point at. Versioned,
            so a later link protocol can live next to this one.
        connect_timeout: seconds for TCP connect, WebSocket upgrade and the hello exchange
            together. Three seconds covers a busy Raspberry Pi on Wi-Fi; a peer slower than
            that is better retried later than waited for.
        heartbeat: seconds between WebSocket pings; a missing pong after half of it closes the
            link. Ten seconds finds a peer that lost power within about 15 s instead of
            waiting for TCP keepalive (two hours by default), for a few bytes per link.
        close_timeout: seconds a closing end waits for the other's close frame.
        queue_size: frames queued per link before it counts as stuck. 8192 holds the burst
            of one small delta per transaction that a bulk edit produces before the writer
            runs (about 1.5 MB of small frames).
        queue_bytes: bytes queued per link before it counts as stuck: twice the largest frame,
            so a full sync step 2 fits while a stuck link cannot eat a Pi's memory. A single
            frame larger than this still goes when the queue is empty.
        backoff_min: shortest wait before a redial, and the first one. 0.2 s lets a restarted
            peer come back quickly without busy-looping on a refused port.
        backoff_max: longest wait between redials. Thirty seconds bounds how long a returning
            peer stays unlinked, at one connection attempt per peer per half minute.
        backoff_reset: seconds a link must stay up before the backoff starts again from
            ``backoff_min``. Ten seconds outlasts a heartbeat round, so a peer that accepts and
            then drops the link at once keeps backing off.
        max_message: largest message accepted, in bytes; larger ones close the link with code
            1009. Defaults to the codec's ``MAX_FRAME_SIZE`` (64 MiB): one message is one frame,
            and a sync step 2 may carry a whole host doc.
        frame_rate: frames per second read from one link on average; a peer above it is read
            more slowly (TCP pushes back on it), never cut off. Five thousand is well above
            the merged deltas of a busy peer and keeps one link from monopolising the loop.
        frame_burst: frames one link may send at once above that rate (a full resync).
    """

    path: str = "/krill/v1/link"
    connect_timeout: float = 3.0
    heartbeat: float = 10.0
    close_timeout: float = 2.0
    queue_size: int = 8192
    queue_bytes: int = 2 * MAX_FRAME_SIZE
    backoff_min: float = 0.2
    backoff_max: float = 30.0
    backoff_reset: float = 10.0
    max_message: int = MAX_FRAME_SIZE
    frame_rate: float = 5000.0
    frame_burst: float = 20000.0

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            ValidationError: naming the first field that breaks its rule.
        """
        path = self.path
        if not isinstance(path, str) or not path.startswith("/") or len(path) > _MAX_PATH_LEN:
            raise ValidationError("path", f"must start with '/', at most {_MAX_PATH_LEN}", path)
        if any(c.isspace() or c in "{}?#" for c in path):
            raise ValidationError("path", "must be a fixed path without spaces, {}, ? or #", path)
        _check_float("connect_timeout", self.connect_timeout, 0, _MAX_TIMEOUT)
        _check_float("heartbeat", self.heartbeat, 0, _MAX_TIMEOUT)
        _check_float("close_timeout", self.close_timeout, 0, _MAX_TIMEOUT)
        _check_int("queue_size", self.queue_size, 1, 1_000_000)
        _check_int("queue_bytes", self.queue_bytes, 1, 1 << 40)
        _check_float("backoff_min", self.backoff_min, 0, _MAX_BACKOFF)
        _check_float("backoff_max", self.backoff_max, 0, _MAX_BACKOFF)
        if self.backoff_max < self.backoff_min:
            raise ValidationError("backoff_max", "must be at least backoff_min", self.backoff_max)
        _check_float("backoff_reset", self.backoff_reset, 0, 3600.0)
        # The smallest frame is a header and a MAC; anything smaller cannot carry one.
        _check_int("max_message", self.max_message, FRAME_OVERHEAD, MAX_FRAME_SIZE)
        _check_float("frame_rate", self.frame_rate, 0, 1e9)
        _check_float("frame_burst", self.frame_burst, 1.0, 1e9)


class _Connection:
    """One WebSocket to one peer after a good handshake, with its send queue and writer."""

    __slots__ = (
        "dialer",
        "label",
        "peer",
        "queue",
        "queued_bytes",
        "retired",
        "wakeup",
        "warned_full",
        "writer",
        "ws",
    )

    def __init__(self, peer: bytes, ws: _Socket, dialer: bytes, label: str) -> None:
        self.peer = peer
        self.ws = ws
        #: Peer id of the end that dialed this connection: decides which of two links stays.
        self.dialer = dialer
        #: URL (dialed) or remote address (accepted), for logs.
        self.label = label
        self.queue: deque[Send] = deque()
        self.queued_bytes = 0
        self.wakeup = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None
        self.warned_full = False
        #: Set once another connection to the same peer took over; nothing new is queued here.
        self.retired = False


class _Dialer:
    """The redial loop that keeps a link to one peer at one URL."""

    __slots__ = ("failures", "idle", "peer", "task", "url", "warned")

    def __init__(self, peer: bytes, url: str, linked: bool) -> None:
        self.peer = peer
        self.url = url
        #: Set while no link to the peer is up (either direction): only then is dialing useful.
        self.idle = asyncio.Event()
        if not linked:
            self.idle.set()
        self.task: asyncio.Task[None] | None = None
        #: Failed attempts since the last link that stayed up ``backoff_reset`` seconds.
        self.failures = 0
        #: Reasons already logged at warning for this dialer.
        self.warned: set[str] = set()


class WsLinkTransport:
    """Keeps one authenticated WebSocket per pair of peers and moves krill frames over it.

    Reusable (``start`` again after ``stop``) but not re-entrant: ``start`` while running
    raises. The aiohttp application and its runner belong to the caller; this class only
    contributes :meth:`routes` (or :meth:`attach`).

    Args:
        peer_id: this peer's 16-byte id.
        hello: ``hello(challenge)`` returns a fresh encoded frame that authenticates this peer
            and binds the other end's challenge under its MAC.
        identify: ``identify(frame, challenge)`` checks a hello against the challenge this end
            sent and returns the sender's peer id, or ``None`` when it is not acceptable.
        options: timeouts, queue bounds, backoff and size limits.
        metrics: where to count frames; a private :class:`Metrics` when omitted.
        on_link: called with ``(peer, True)`` when a peer becomes linked and ``(peer, False)``
            when its last link closes; a connection replaced by a duplicate reports nothing.

    Raises:
        ValidationError: ``peer_id`` is not 16 bytes.
    """

    name = "ws"

    def __init__(
        self,
        peer_id: bytes,
        *,
        hello: Callable[[bytes], bytes],
        identify: Callable[[bytes, bytes], bytes | None],
        options: WsLinkOptions | None = None,
        metrics: Metrics | None = None,
        on_link: Callable[[bytes, bool], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not isinstance(peer_id, bytes) or len(peer_id) != PEER_ID_SIZE:
            raise ValidationError("peer_id", f"must be {PEER_ID_SIZE} bytes", peer_id)
        self.peer_id = peer_id
        self.options = options if options is not None else WsLinkOptions()
        self.metrics = metrics if metrics is not None else Metrics()
        self._hello = hello
        self._identify = identify
        self._on_link = on_link
        self._ssl = ssl_context
        self._random = random.Random()

        self._deliver: Deliver | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self._stop_task: asyncio.Task[None] | None = None

        #: The one connection per linked peer.
        self._links: dict[bytes, _Connection] = {}
        self._dialers: dict[bytes, _Dialer] = {}
        #: Every open socket, handshaking or linked, so stop() can close them all.
        self._inbound: set[web.WebSocketResponse] = set()
        self._outbound: set[aiohttp.ClientWebSocketResponse] = set()
        #: Request handlers still running; stop() waits for them (bounded).
        self._handlers: set[asyncio.Task[Any]] = set()
        #: Small background jobs (closing a replaced or forgotten link).
        self._jobs: set[asyncio.Task[None]] = set()
        self._warned: set[tuple[str, str]] = set()

    # -- public API ------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """The route definitions to add to the caller's application.

        Returns:
            One ``GET`` route at :attr:`WsLinkOptions.path` that upgrades to a peer link.
        """
        return [web.get(self.options.path, self._accept)]

    def attach(self, app: web.Application) -> None:
        """Add :meth:`routes` to ``app`` and close accepted links when the app shuts down.

        Without the shutdown hook, aiohttp's graceful shutdown would wait for every open link
        handler until its shutdown timeout.

        Args:
            app: an application not yet frozen (before its runner is set up).
        """
        app.router.add_routes(self.routes())
        app.on_shutdown.append(self._on_app_shutdown)

    async def start(self, deliver: Deliver) -> None:
        """Accept links and allow dialing; received frames go to ``deliver`` from now on.

        Args:
            deliver: called as ``deliver(frame, Link("ws", peer))`` for every frame received.

        Raises:
            RuntimeError: the transport is already running.
        """
        if self._session is not None:
            raise RuntimeError("WsLinkTransport is already running; stop() it first")
        self._deliver = deliver
        self._stopping = False
        # No connection limit: one WebSocket per peer, and the default pool of 100 would
        # silently stall the 101st dial. trust_env stays off: LAN links never take a proxy.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=self._ssl or True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.options.connect_timeout),
        )
        log.debug("ws links: started as peer %s", _short(self.peer_id))

    async def stop(self) -> None:
        """Stop dialing and close every link with code 1001 ("going away"); idempotent.

        Frames still queued are dropped and counted. Concurrent calls wait for the same stop.
        """
        if self._session is None:
            return
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._shutdown())
        await asyncio.shield(self._stop_task)

    def dial(self, peer: bytes, url: str) -> None:
        """Keep a link to ``peer`` at ``url``: connect, redial with backoff, until forgotten.

        Dialing a peer already being dialed keeps that loop; a new URL is used from the next
        attempt on. While the peer is linked (either direction) the loop waits.

        Args:
            peer: the 16-byte id the answer's hello must name.
            url: ``ws://`` or ``wss://`` URL of the peer's link route.

        Raises:
            ValidationError: ``peer`` is not a 16-byte id, or is this peer's own id.
            RuntimeError: the transport is not running.
        """
        if not isinstance(peer, bytes) or len(peer) != PEER_ID_SIZE:
            raise ValidationError("peer", f"must be {PEER_ID_SIZE} bytes", peer)
        if peer == self.peer_id:
            raise ValidationError("peer", "must not be this peer's own id", _short(peer))
        if self._session is None or self._stopping:
            raise RuntimeError("WsLinkTransport is not running; start() it first")

        dialer = self._dialers.get(peer)
        if dialer is not None:
            if dialer.url != url:
                log.info("ws link: peer %s moves from %s to %s", _short(peer), dialer.url, url)
                dialer.url = url
            return
        dialer = _Dialer(peer, url, linked=peer in self._links)
        dialer.task = asyncio.create_task(self._dial_loop(dialer), name=f"ws-dial-{_short(peer)}")
        self._dialers[peer] = dialer
        log.debug("ws link: dialing peer %s at %s", _short(peer), url)

    def forget(self, peer: bytes) -> None:
        """Stop dialing ``peer`` and close its link (code 1000, reason "forgotten").

        The peer may still dial this one; that link is accepted as usual.

        Args:
            peer: the peer's 16-byte id; an unknown peer is ignored.
        """
        dialer = self._dialers.pop(peer, None)
        if dialer is not None and dialer.task is not None:
            dialer.task.cancel()
        conn = self._links.get(peer)
        if conn is not None:
            self._spawn(self._close(conn.ws, aiohttp.WSCloseCode.OK, "forgotten"))
        if dialer is not None or conn is not None:
            log.info("ws link: forgot peer %s", _short(peer))

    def links(self) -> list[bytes]:
        """Peers with a link up.

        Returns:
            Their 16-byte ids, in the order the links came up.
        """
        return list(self._links)

    def dialing(self) -> list[bytes]:
        """Peers this transport keeps dialing (linked or not).

        Returns:
            Their 16-byte ids.
        """
        return list(self._dialers)

    def link_dialer(self, peer: bytes) -> bytes | None:
        """Which end dialed the link to ``peer``: both ends of a link report the same id.

        Returns:
            The dialing peer's id, or ``None`` when ``peer`` has no link up.
        """
        conn = self._links.get(peer)
        return conn.dialer if conn is not None else None

    def send(self, send: Send) -> None:
        """Queue one frame for one peer's link, or for every link; never blocks.

        A frame for a peer without a link, for a stuck link (queue full) or larger than
        ``max_message`` is dropped and counted in ``krill_frames_dropped_total``.

        Args:
            send: the frame and its link; ``send.link.peer`` ``None`` means every link.

        Raises:
            ValueError: the link belongs to another transport (a wiring mistake).
        """
        if send.link.transport != self.name:
            raise ValueError(f"ws transport asked to send on a {send.link.transport!r} link")
        if len(send.data) > self.options.max_message:
            self._drop(1)
            self._warn_once(
                "send", "oversized", "ws: dropping a %s frame of %d bytes, above max_message %d",
                send.kind, len(send.data), self.options.max_message,
            )  # fmt: skip
            return
        if send.link.peer is None:
            for each in self._links.values():
                self._enqueue(each, send)
            return
        conn = self._links.get(send.link.peer)
        if conn is None:
            self._drop(1)
            log.debug(
                "ws: no link to peer %s, dropping a %s frame", _short(send.link.peer), send.kind
            )
            return
        self._enqueue(conn, send)

    # -- sending -----------------------------------------------------------------------------

    def _enqueue(self, conn: _Connection, send: Send) -> None:
        size = len(send.data)
        full = len(conn.queue) >= self.options.queue_size or (
            conn.queue and conn.queued_bytes + size > self.options.queue_bytes
        )
        if full or conn.retired:
            self._drop(1)
            if full and not conn.warned_full:
                conn.warned_full = True
                log.warning(
                    "ws link to peer %s (%s) is stuck: send queue full (%d frames, %d bytes), "
                    "dropping frames until it drains",
                    _short(conn.peer), conn.label, len(conn.queue), conn.queued_bytes,
                )  # fmt: skip
            return
        conn.queue.append(send)
        conn.queued_bytes += size
        conn.wakeup.set()

    async def _write(self, conn: _Connection) -> None:
        """Drain one link's queue in order; the only task that writes to its socket."""
        ws = conn.ws
        queue = conn.queue
        try:
            while True:
                while not queue:
                    conn.wakeup.clear()
                    await conn.wakeup.wait()
                send = queue.popleft()
                conn.queued_bytes -= len(send.data)
                await ws.send_bytes(send.data)
                self.metrics.sent(self.name, send.kind)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            # The reader sees the same broken socket and ends the link; closing here makes
            # sure it does even if the peer stays silent.
            log.debug("ws link to peer %s: write failed: %r", _short(conn.peer), exc)
            await self._close(ws, aiohttp.WSCloseCode.INTERNAL_ERROR, "write failed")

    def _drop(self, count: int) -> None:
        if count:
            self.metrics.frames_dropped.labels(self.name).inc(count)

    # -- the link registry -------------------------------------------------------------------

    def _keeps_new(self, old: _Connection, new_dialer: bytes) -> bool:
        """Whether a new connection dialed by ``new_dialer`` replaces ``old`` to the same peer.

        The same dialer dialing again means its old connection is gone on its side: the new
        one wins. Otherwise both ends keep the one dialed by the smaller peer id.
        """
        if old.dialer == new_dialer:
            return True
        return new_dialer == min(self.peer_id, old.peer)

    def _register(self, conn: _Connection) -> bool:
        """Make ``conn`` the link to its peer, unless a connection that wins is already up.

        Returns:
            ``True`` when ``conn`` is now the link; ``False`` when it must be closed as a
            duplicate.
        """
        if self._stopping:
            return False
        old = self._links.get(conn.peer)
        if old is not None and not self._keeps_new(old, conn.dialer):
            return False
        self._links[conn.peer] = conn
        if old is not None:
            self._retire(old, conn)
            return True

        dialer = self._dialers.get(conn.peer)
        if dialer is not None:
            dialer.idle.clear()
        log.info(
            "ws link up: peer %s via %s (dialed by %s)",
            _short(conn.peer), conn.label, "us" if conn.dialer == self.peer_id else "them",
        )  # fmt: skip
        self._notify(conn.peer, True)
        return True

    def _retire(self, old: _Connection, new: _Connection) -> None:
        """Hand ``old``'s unsent frames to ``new`` and close ``old`` as a duplicate."""
        # NOTE: a frame the old writer already took off its queue, or one in flight on the
        # NOTE: old socket, may be lost when it closes. The engine's anti-entropy heals that.
        old.retired = True
        if old.writer is not None:
            old.writer.cancel()
        new.queue, old.queue = old.queue, new.queue
        new.queued_bytes, old.queued_bytes = old.queued_bytes, 0
        if new.queue:
            new.wakeup.set()
        log.info(
            "ws link to peer %s: keeping %s, closing duplicate %s",
            _short(new.peer), new.label, old.label,
        )  # fmt: skip
        self._spawn(self._close(old.ws, aiohttp.WSCloseCode.OK, CLOSE_DUPLICATE_REASON))

    def _unregister(self, conn: _Connection) -> None:
        """Forget ``conn``; report the peer down when it was its link."""
        if self._links.get(conn.peer) is not conn:
            return
        del self._links[conn.peer]
        self._drop(len(conn.queue))
        conn.queue.clear()
        conn.queued_bytes = 0
        dialer = self._dialers.get(conn.peer)
        if dialer is not None:
            dialer.idle.set()
        code = conn.ws.close_code
        log.info(
            "ws link down: peer %s via %s (close code %s)", _short(conn.peer), conn.label, code
        )
        self._notify(conn.peer, False)

    def _notify(self, peer: bytes, up: bool) -> None:
        if self._on_link is None:
            return
        try:
            self._on_link(peer, up)
        except Exception:
            log.exception("ws link: on_link callback failed for peer %s", _short(peer))

    async def _run_link(self, conn: _Connection) -> None:
        """Carry frames on a registered link until it closes, then unregister it."""
        conn.writer = asyncio.create_task(self._write(conn), name=f"ws-write-{_short(conn.peer)}")
        if conn.queue:
            conn.wakeup.set()
        try:
            await self._read(conn)
        finally:
            conn.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conn.writer
            self._unregister(conn)
            await self._close(conn.ws, *self._default_close())

    async def _read(self, conn: _Connection) -> None:
        """Deliver every binary message; end on close, text or an oversized message."""
        ws = conn.ws
        link = Link(self.name, conn.peer)
        deliver = self._deliver
        loop = asyncio.get_running_loop()
        limit = RateLimit(self.options.frame_rate, self.options.frame_burst)
        bucket = TokenBucket(limit, loop.time())
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                # Counted as received by the engine, once decoded and accepted.
                if deliver is not None:
                    try:
                        deliver(msg.data, link)
                    except Exception:
                        # A failing engine must not take the link down with it.
                        log.exception("ws link: deliver failed for a frame from %s", link)
                wait = bucket.delay(loop.time())
                if wait > 0:
                    await asyncio.sleep(wait)
                continue
            if msg.type is aiohttp.WSMsgType.TEXT:
                await self._refuse_text(ws, _short(conn.peer))
                return
            if msg.type is aiohttp.WSMsgType.ERROR:
                self._note_error(msg.data, _short(conn.peer))
            return

    # -- accepting -----------------------------------------------------------------------------

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        """The link route: upgrade, check the dialer's hello, answer, then carry frames."""
        if self._session is None or self._stopping:
            return web.Response(status=503, text="peer links are not running")
        ws = web.WebSocketResponse(
            heartbeat=self.options.heartbeat,
            timeout=self.options.close_timeout,
            max_msg_size=self.options.max_message,
            # Frames are small Yjs deltas: deflate costs a Pi more time than the bytes save.
            compress=False,
        )
        # NOTE: handshakes in progress are not capped; each lasts at most connect_timeout, so
        # NOTE: a flood of idle connections holds sockets that long. Matters on a hostile LAN.
        await ws.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._inbound.add(ws)
        peername = request.transport.get_extra_info("peername") if request.transport else None
        where = f"{peername[0]}:{peername[1]}" if peername else request.remote or "?"
        label = f"{where} (accepted)"
        try:
            _set_nodelay(ws)
            theirs = _parse_challenge(request.headers.get(CHALLENGE_HEADER))
            if theirs is None:
                self._reject(label, "hello", "no challenge header")
                await self._close(ws, CLOSE_HELLO_REFUSED, "no challenge")
                return ws
            ours = os.urandom(CHALLENGE_SIZE)
            await ws.send_bytes(ours)
            peer = await self._check_hello(ws, label, ours)
            if peer is None:
                return ws
            conn = _Connection(peer, ws, dialer=peer, label=label)

            # Step 1: refuse before answering a dial meant for another peer, or when a winning
            # link is up, so the dialer never sees this one come up.
            wanted = request.headers.get(PEER_HEADER)
            if wanted is not None and wanted.lower() != self.peer_id.hex():
                self._reject(label, "wrong_peer", "dialed for peer %s", wanted[:8])
                await self._close(ws, CLOSE_HELLO_REFUSED, CLOSE_WRONG_PEER_REASON)
                return ws
            old = self._links.get(peer)
            if old is not None and not self._keeps_new(old, peer):
                await self._close(ws, aiohttp.WSCloseCode.OK, CLOSE_DUPLICATE_REASON)
                return ws

            # Step 2: answer, then register (the registry may have changed while answering).
            await ws.send_bytes(self._hello(theirs))
            if not self._register(conn):
                await self._close(ws, aiohttp.WSCloseCode.OK, CLOSE_DUPLICATE_REASON)
                return ws

            # Step 3: carry frames until the link closes.
            await self._run_link(conn)
        except (ConnectionError, aiohttp.ClientError) as exc:
            log.debug("ws link from %s ended: %r", label, exc)
        finally:
            self._inbound.discard(ws)
            if task is not None:
                self._handlers.discard(task)
            await self._close(ws, *self._default_close())
        return ws

    async def _check_hello(
        self, ws: web.WebSocketResponse, label: str, challenge: bytes
    ) -> bytes | None:
        """Read and check the dialer's hello (for ``challenge``) within ``connect_timeout``.

        Returns:
            The dialer's peer id, or ``None`` after closing the socket.
        """
        try:
            msg = await ws.receive(timeout=self.options.connect_timeout)
        except asyncio.TimeoutError:
            self._reject(
                label, "hello_timeout", "no hello within %.1f s", self.options.connect_timeout
            )
            await self._close(ws, CLOSE_HELLO_REFUSED, "no hello in time")
            return None
        if msg.type is aiohttp.WSMsgType.TEXT:
            await self._refuse_text(ws, label)
            return None
        if msg.type is aiohttp.WSMsgType.ERROR:
            self._note_error(msg.data, label)
            return None
        if msg.type is not aiohttp.WSMsgType.BINARY:
            return None  # closed before saying anything

        peer = self._identify_hello(msg.data, challenge, label)
        if peer is None:
            self._reject(label, "hello", "hello refused")
            await self._close(ws, CLOSE_HELLO_REFUSED, "hello refused")
            return None
        if peer == self.peer_id:
            # This peer dialed itself, e.g. through an address of its own from a beacon.
            self._reject(label, "hello_self", "hello names this very peer")
            await self._close(ws, CLOSE_HELLO_REFUSED, "hello names the accepting peer")
            return None
        return peer

    async def _on_app_shutdown(self, app: web.Application) -> None:
        await asyncio.gather(
            *(self._close(ws, aiohttp.WSCloseCode.GOING_AWAY, "going away") for ws in self._inbound)
        )

    # -- dialing -------------------------------------------------------------------------------

    async def _dial_loop(self, dialer: _Dialer) -> None:
        """Keep one link to ``dialer.peer``: dial, carry, back off, dial again."""
        loop = asyncio.get_running_loop()
        while self._active():
            await dialer.idle.wait()
            if not self._active():
                return
            started = loop.time()
            went_up = await self._dial_once(dialer)
            if went_up and loop.time() - started >= self.options.backoff_reset:
                dialer.failures = 0
            delay = self._backoff(dialer.failures)
            dialer.failures += 1
            await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with full jitter, between ``backoff_min`` and ``backoff_max``.

        Jitter keeps peers that lost the same switch from redialing in lockstep.
        """
        low = self.options.backoff_min
        high = min(self.options.backoff_max, low * 2.0 ** min(failures, _MAX_BACKOFF_EXPONENT))
        return self._random.uniform(low, high)

    async def _dial_once(self, dialer: _Dialer) -> bool:
        """Connect, exchange hellos and carry frames until the link closes.

        Returns:
            Whether the link came up.
        """
        session = self._session
        if session is None:
            return False
        peer, url = dialer.peer, dialer.url
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.connect_timeout
        ours = os.urandom(CHALLENGE_SIZE)

        # Step 1: TCP connect and WebSocket upgrade.
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(
                    url,
                    heartbeat=self.options.heartbeat,
                    max_msg_size=self.options.max_message,
                    timeout=aiohttp.ClientWSTimeout(ws_close=self.options.close_timeout),
                    headers={PEER_HEADER: peer.hex(), CHALLENGE_HEADER: ours.hex()},
                ),
                self.options.connect_timeout,
            )
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
            level = logging.DEBUG if dialer.failures else logging.INFO
            log.log(level, "ws link: cannot reach peer %s at %s: %r", _short(peer), url, exc)
            return False

        self._outbound.add(ws)
        try:
            _set_nodelay(ws)

            # Step 2: their challenge, our hello for it, then their answer for ours, all
            # within what is left of the timeout.
            theirs = await self._read_challenge(dialer, ws, max(0.0, deadline - loop.time()))
            if theirs is None:
                return False
            await ws.send_bytes(self._hello(theirs))
            answered = await self._check_answer(dialer, ws, max(0.0, deadline - loop.time()), ours)
            if not answered:
                return False

            # Step 3: register and carry frames.
            conn = _Connection(peer, ws, dialer=self.peer_id, label=url)
            if not self._register(conn):
                await self._close(ws, aiohttp.WSCloseCode.OK, CLOSE_DUPLICATE_REASON)
                return False
            dialer.warned.clear()
            await self._run_link(conn)
            return True
        except (ConnectionError, aiohttp.ClientError) as exc:
            log.debug("ws link to peer %s at %s ended: %r", _short(peer), url, exc)
            return False
        finally:
            self._outbound.discard(ws)
            await self._close(ws, *self._default_close())

    async def _read_challenge(
        self, dialer: _Dialer, ws: aiohttp.ClientWebSocketResponse, timeout: float
    ) -> bytes | None:
        """Read the accepting side's challenge; None after closing the socket."""
        try:
            msg = await ws.receive(timeout=timeout)
        except asyncio.TimeoutError:
            self._dial_warning(dialer, "timeout", "no challenge in time")
            await self._close(ws, CLOSE_HELLO_REFUSED, "no challenge in time")
            return None
        if msg.type is aiohttp.WSMsgType.BINARY and len(msg.data) == CHALLENGE_SIZE:
            return bytes(msg.data)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            self._dial_warning(dialer, f"closed {msg.data}", f"closed: {msg.data} {msg.extra}")
            return None
        self._reject(dialer.url, "hello", "no challenge from the accepting side")
        await self._close(ws, CLOSE_HELLO_REFUSED, "challenge expected")
        return None

    async def _check_answer(
        self, dialer: _Dialer, ws: aiohttp.ClientWebSocketResponse, timeout: float, challenge: bytes
    ) -> bool:
        """Read the accepting side's hello and check it names the peer dialed.

        Returns:
            ``True`` when it does; otherwise ``False`` after closing the socket.
        """
        peer, url = dialer.peer, dialer.url
        try:
            msg = await ws.receive(timeout=timeout)
        except asyncio.TimeoutError:
            self._dial_warning(dialer, "timeout", "no hello answer in time")
            await self._close(ws, CLOSE_HELLO_REFUSED, "no hello answer in time")
            return False
        if msg.type is aiohttp.WSMsgType.CLOSE:
            reason = msg.extra or ""
            if reason == CLOSE_DUPLICATE_REASON:
                # The peer already keeps a link to us that wins; wait for it instead.
                log.debug("ws link to peer %s at %s: peer keeps another link", _short(peer), url)
            elif msg.data == CLOSE_HELLO_REFUSED and reason == CLOSE_WRONG_PEER_REASON:
                self.metrics.rejected(self.name, "unexpected_peer")
                self._dial_warning(dialer, "unexpected", "another peer answers there")
            else:
                self._dial_warning(dialer, f"closed {msg.data}", f"closed: {msg.data} {reason}")
            return False
        if msg.type is aiohttp.WSMsgType.TEXT:
            await self._refuse_text(ws, _short(peer))
            return False
        if msg.type is aiohttp.WSMsgType.ERROR:
            self._note_error(msg.data, _short(peer))
            return False
        if msg.type is not aiohttp.WSMsgType.BINARY:
            return False

        answer = self._identify_hello(msg.data, challenge, url)
        if answer is None:
            self._reject(url, "hello", "hello answer refused")
            await self._close(ws, CLOSE_HELLO_REFUSED, "hello refused")
            return False
        if answer != peer:
            # Another peer took over that address, or a stale beacon pointed us there.
            self.metrics.rejected(self.name, "unexpected_peer")
            self._dial_warning(dialer, "unexpected", f"answer names peer {_short(answer)}")
            await self._close(ws, CLOSE_HELLO_REFUSED, "unexpected peer")
            return False
        return True

    def _dial_warning(self, dialer: _Dialer, key: str, what: str) -> None:
        """Log a failed handshake at warning once per dialer and reason, then at debug."""
        level = logging.DEBUG if key in dialer.warned else logging.WARNING
        dialer.warned.add(key)
        log.log(level, "ws link to peer %s at %s: %s", _short(dialer.peer), dialer.url, what)

    # -- shared helpers ----------------------------------------------------------------------

    def _identify_hello(self, data: bytes, challenge: bytes, source: str) -> bytes | None:
        """Run ``identify`` and insist on a 16-byte answer; a raising ``identify`` refuses."""
        try:
            peer = self._identify(data, challenge)
        except Exception:
            log.exception("ws link: identify failed on a hello from %s", source)
            return None
        if isinstance(peer, bytes) and len(peer) == PEER_ID_SIZE:
            return peer
        return None

    async def _refuse_text(self, ws: _Socket, source: str) -> None:
        self._reject(source, "text", "text message")
        await self._close(ws, aiohttp.WSCloseCode.UNSUPPORTED_DATA, "binary frames only")

    def _note_error(self, error: object, source: str) -> None:
        """Count an error message from aiohttp's reader (it already closed the socket)."""
        code = getattr(error, "code", None)
        if code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
            self._reject(source, "oversized", "message above %d bytes", self.options.max_message)
        else:
            log.debug("ws link with %s: socket error %r", source, error)

    def _reject(self, source: str, reason: str, what: str, *args: object) -> None:
        """Count a refused message and warn once per source and reason, then log at debug."""
        self.metrics.rejected(self.name, reason)
        self._warn_once(source, reason, "ws link with %s: rejected (" + what + ")", source, *args)

    def _warn_once(self, source: str, reason: str, message: str, *args: object) -> None:
        """Log at warning the first time ``(source, reason)`` comes up, later at debug."""
        key = (source, reason)
        level = logging.DEBUG
        if key not in self._warned and len(self._warned) < _MAX_WARNED_SOURCES:
            self._warned.add(key)
            level = logging.WARNING
        log.log(level, message, *args)

    def _active(self) -> bool:
        """Running and not stopping: dialing and new links are allowed."""
        return self._session is not None and not self._stopping

    def _default_close(self) -> tuple[int, str]:
        if self._stopping:
            return aiohttp.WSCloseCode.GOING_AWAY, "going away"
        return aiohttp.WSCloseCode.OK, ""

    async def _close(self, ws: _Socket, code: int, reason: str) -> None:
        """Close ``ws`` with ``code`` and ``reason`` unless it is closed; never raises."""
        if ws.closed:
            return
        try:
            await ws.close(code=code, message=reason.encode())
        except (ConnectionError, RuntimeError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
            log.debug("ws: closing a socket failed: %r", exc)

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(job)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _shutdown(self) -> None:
        """Close every socket with 1001, end the dialers, wait (bounded) for the handlers."""
        self._stopping = True
        try:
            # Step 1: close every socket first, so the peers learn "going away", not a reset.
            sockets: list[_Socket] = [*self._inbound, *self._outbound]
            await asyncio.gather(
                *(self._close(ws, aiohttp.WSCloseCode.GOING_AWAY, "going away") for ws in sockets)
            )

            # Step 2: end the dialers and wait for every handler and job to finish.
            for dialer in self._dialers.values():
                if dialer.task is not None:
                    dialer.task.cancel()
            tasks = [d.task for d in self._dialers.values() if d.task is not None]
            pending = {*tasks, *self._handlers, *self._jobs}
            if pending:
                await asyncio.wait(pending, timeout=self.options.close_timeout + 1.0)
            self._dialers.clear()
            for conn in list(self._links.values()):
                self._unregister(conn)
        finally:
            if self._session is not None:
                await self._session.close()
            self._session = None
            self._deliver = None
            self._stopping = False
            self._stop_task = None
            log.debug("ws links: stopped peer %s", _short(self.peer_id))


def _parse_challenge(text: str | None) -> bytes | None:
    """The dialer's challenge from its header, or None when missing or malformed."""
    if text is None or len(text) != 2 * CHALLENGE_SIZE:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _set_nodelay(ws: _Socket) -> None:
    """Turn on TCP_NODELAY for the socket under ``ws``.

    aiohttp already sets it when a connection is made; setting it again here keeps the
    guarantee if that default ever changes. Without it, small frames after a write may wait
    for the peer's delayed ACK (up to 40 ms on Linux).
    """
    sock = ws.get_extra_info("socket")
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
