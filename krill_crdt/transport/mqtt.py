"""MQTT transport: krill frames through a broker, with presence, reconnect and a bounded queue.

All topics of a swarm live under ``krill/v1/{swarm}/``:

================================  =====  ========  ==================================
topic (under the swarm)           QoS    retained  carries
================================  =====  ========  ==================================
``{doc}/update``                  1      no        broadcast frames about one host doc
``peer/{peer}/beacon``            0      no        the peer's beacons
``peer/{peer}/inbox``             1      no        frames addressed to that peer only
``peer/{peer}/presence``          1      yes       ``{"state": "online"|"offline", ...}``
================================  =====  ========  ==================================

Bridges share the connection: MqttBridge nodes publish to and subscribe to topics of their
own, outside ``krill/``, through :meth:`MqttTransport.publish` and
:meth:`MqttTransport.subscribe` (the peer offers the transport as its ``"mqtt"`` resource).
Their messages queue behind and between the swarm's frames, in one order, and may fill at most
half of the queue (:data:`BRIDGE_QUEUE_SHARE`), so a chatty bridge cannot crowd out
replication.

The presence topic is also the connection's last will (``offline``, retained), so a peer that
dies without a clean stop is seen offline once the broker notices. The transport never decodes
a frame: the origin inside each frame tells the sync engine who sent it, so every received
frame is delivered on the broadcast link ``Link("mqtt", None)``.

Example::

    transport = MqttTransport(
        MqttOptions("mqtts://broker.lan", username="pi-1", password=secret, tls_ca="ca.pem"),
        swarm="home",
        peer_id=peer_id,
        on_connected=engine.start_anti_entropy,
    )
    await transport.start(engine.receive)  # raises MqttRefusedError on bad credentials
    transport.send(Send(Link("mqtt"), frame, "update", doc="host-1"))
    await transport.stop()

Throughput on loopback (Mosquitto 2.0, 64-byte frames): about 3-4k acknowledged publishes/s
out of one transport and 1-1.5k frames/s into one, where aiomqtt's per-message overhead is
the limit.

NOTE: a publisher that outruns a subscriber fills that subscriber's queue on the broker
(Mosquitto: ``max_queued_messages``, 1000 by default), and the broker then drops QoS 1
messages for it silently. Anti-entropy after the next beacon heals the gap; raise the broker's
limit where peers publish long bursts (see contrib/mosquitto/mosquitto.conf).

The connection speaks MQTT 5 so that bridge subscriptions can carry the "no local" option:
the broker does not send a bridge's own messages back, so a bridge that publishes and
subscribes one topic does not feed on what it published (no echo loop between a data point
and its bridge). The swarm's own subscriptions go without it: a peer's own updates come back
and cost one decode before the engine drops them by origin, which keeps a peer's view of the
broker the same as every other peer's. Own beacons and presence are dropped here, by topic.

NOTE: "no local" is per connection, not per bridge: a bridge of this peer does not receive
what another bridge of the same peer publishes on its topic. Chain the two inside the host
(a target) instead of through the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ..errors import KrillError, ValidationError
from ..metrics import Metrics
from ..sync.link import PEER_ID_SIZE, Link, Send
from .base import Deliver

__all__ = [
    "BRIDGE_QUEUE_SHARE",
    "DEFAULT_QUEUE_SIZE",
    "BridgeHandler",
    "MqttOptions",
    "MqttRefusedError",
    "MqttTransport",
    "MqttTransportError",
]

logger = logging.getLogger("krill.transport.mqtt")

#: aiomqtt/paho log through this child, so their records sit under ours and can be tuned apart.
_client_logger = logging.getLogger("krill.transport.mqtt.client")

#: First topic levels: the product and the topic layout's major version, so a future layout
#: can share a broker with this one.
TOPIC_ROOT = "krill/v1"

#: IANA ports of MQTT over TCP and over TLS.
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883

#: Frames waiting for the broker. Deltas are small (most under 1 KB), so this is a few MB at
#: worst, and it holds a burst of anti-entropy answers for many docs, or a minute of a busy
#: peer's edits during a short outage; what is lost beyond it anti-entropy heals on reconnect.
DEFAULT_QUEUE_SIZE = 4096

#: Part of the send queue that bridge messages may fill. Frames heal by anti-entropy when
#: dropped and bridge messages do not, but a bridge publishing faster than the broker takes
#: must not starve replication either: half the queue is theirs at most, and a bridge publish
#: beyond that fails at once (its node shows the error).
BRIDGE_QUEUE_SHARE = 0.5

#: The kind of a bridge message in the send queue (frames carry their frame kind).
_BRIDGE = "bridge"

#: Publishes handed to the client and not yet acknowledged. One at a time costs a round trip
#: per frame (200 frames/s on a 5 ms Wi-Fi link); thousands at once run into aiomqtt's per-call
#: timeout and lose messages. 16 stays under paho's default in-flight cap of 20, so no publish
#: waits inside paho where our timeouts cannot see it.
PUBLISH_WINDOW = 16

#: A publish not acknowledged within this long (or the keepalive, if longer) means the broker
#: is stuck; the connection is dropped and the frame goes out again after the reconnect.
MIN_ACK_TIMEOUT = 5.0

#: A connection that stayed up this long resets the backoff, so a broker that accepts and then
#: drops us at once cannot make the swarm reconnect at the minimum delay forever.
STABLE_CONNECTION = 10.0

#: How long a clean stop waits for queued frames to reach the broker before saying offline.
STOP_FLUSH_TIMEOUT = 2.0

#: A frame that was in flight when this many connections in a row died is dropped: it is most
#: likely what kills them (a broker that disconnects on oversized or forbidden publishes).
MAX_SEND_ATTEMPTS = 3

#: Bound on received messages waiting in the client for the reader; the reader hands each to
#: the engine synchronously, so this fills only when the event loop itself is starved.
INCOMING_QUEUE_LIMIT = 10_000

#: Longest swarm, doc or client id we accept in a topic level. MQTT allows 65535 bytes per
#: topic; brokers and ACL files are happier far below that.
MAX_LEVEL_CHARS = 256

#: Characters that cannot appear inside one topic level: the separator, the wildcards, and NUL
#: (forbidden anywhere in a topic).
_FORBIDDEN_IN_LEVEL = frozenset("/+#\x00")

#: CONNACK reason codes (as paho reports them, MQTT v5 numbering for v3.1.1 too) that retrying
#: with the same settings cannot fix. 136 (server unavailable) is missing on purpose: it heals.
_REFUSALS = {
    133: "the client id was rejected (set mqtt.client_id or leave it unset)",
    134: "bad username or password (check mqtt.username and mqtt.password_file)",
    135: "not authorised (check mqtt.username and mqtt.password_file)",
    138: "this client is banned",
    140: "the authentication method is not supported",
}

#: Longest topic a bridge may use: the topic filter limit of the node model.
MAX_BRIDGE_TOPIC_CHARS = 512

#: Receives a bridge message: ``handler(topic, payload)``.
BridgeHandler = Callable[[str, bytes], None]

#: The cap on keys a _LogOnce remembers, so a flood of distinct sources cannot grow it forever.
_LOG_ONCE_KEYS = 1024


class MqttTransportError(KrillError, ConnectionError):
    """The MQTT transport cannot work with its broker.

    Attributes:
        url: the broker URL (never carries credentials: :class:`MqttOptions` refuses them).
        reason: what went wrong, in words.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"MQTT broker {url}: {reason}")

    def __str__(self) -> str:
        return f"MQTT broker {self.url}: {self.reason}"


class MqttRefusedError(MqttTransportError):
    """The broker refused us for a reason retrying cannot fix: credentials, authorisation, trust."""


def _check_level(field_name: str, value: object) -> str:
    """Return ``value`` if it is usable as one topic level; raise ValidationError otherwise."""
    if not isinstance(value, str) or not value:
        raise ValidationError(field_name, "must be a non-empty string", value)
    if len(value) > MAX_LEVEL_CHARS:
        raise ValidationError(field_name, f"must be at most {MAX_LEVEL_CHARS} characters", value)
    if not _FORBIDDEN_IN_LEVEL.isdisjoint(value):
        raise ValidationError(
            field_name, "must be one MQTT topic level: no '/', '+', '#' or NUL", value
        )
    return value


def _parse_url(url: str) -> tuple[bool, str, int]:
    """Split a broker URL into ``(tls, host, port)``; raise ValidationError if it is not one."""
    if not isinstance(url, str) or not url:
        raise ValidationError("mqtt.url", "must be a non-empty string", url)
    if "@" in url:
        # Echoing the value back would print the password it likely carries.
        raise ValidationError(
            "mqtt.url", "must not carry credentials; set mqtt.username and mqtt.password_file"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValidationError("mqtt.url", "must start with mqtt:// or mqtts://", url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValidationError("mqtt.url", "must be mqtt[s]://host[:port] with nothing after", url)
    try:
        port = parts.port
    except ValueError:
        raise ValidationError("mqtt.url", "port must be 1..65535", url) from None
    if not parts.hostname:
        raise ValidationError("mqtt.url", "must name a host", url)
    tls = parts.scheme == "mqtts"
    if port is None:
        port = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
    elif port == 0:
        raise ValidationError("mqtt.url", "port must be 1..65535", url)
    return tls, parts.hostname, port


def _check_seconds(field_name: str, value: object, *, low: float, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and low < value <= high)
    ):
        raise ValidationError(
            field_name, f"must be a number of seconds in ({low:g}, {high:g}]", value
        )


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """How to reach the broker; every value is checked when the object is made.

    Attributes:
        url: ``mqtt://host[:port]`` (default port 1883) or ``mqtts://host[:port]`` (TLS,
            default port 8883). Credentials do not belong in it.
        username: broker account, or ``None`` to connect anonymously.
        password: the account's password (read by the caller from ``mqtt.password_file``);
            it is left out of ``repr`` and never logged.
        tls_ca: a PEM file of the CA that signed the broker's certificate. Only with
            ``mqtts://``; without it the system's trusted CAs are used. The broker's name or IP
            is always checked against its certificate.
        client_id: MQTT client id; by default ``krill-`` and the first 16 hex digits of the
            peer id: stable, so a restarted peer takes over its stale session at once, and 22
            characters, within the 23 every broker must accept.
        keepalive: seconds between pings when idle. A half-open connection (a peer unplugged
            mid-session) is noticed after 1.5 times this, and only then does its last will
            mark it offline; 30 s keeps that short without chattering on battery links.
        connect_timeout: seconds to wait for the broker to accept a connection (and what
            :meth:`MqttTransport.start` waits for the first one). A LAN broker answers in
            milliseconds; 3 s also tolerates a busy Raspberry Pi doing a TLS handshake.
        queue_size: frames queued for the broker at most (see :data:`DEFAULT_QUEUE_SIZE`).
        reconnect_min: shortest wait before reconnecting: 0.5 s, fast enough to catch a broker
            restart and slow enough that a swarm cannot hammer a broker that is coming up.
        reconnect_max: longest wait between attempts: 30 s, so a swarm of hundreds of peers
            makes a few attempts per second in all against a broker that stays down.
    """

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    client_id: str | None = None
    keepalive: int = 30
    connect_timeout: float = 3.0
    queue_size: int = DEFAULT_QUEUE_SIZE
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0

    def __post_init__(self) -> None:
        tls, _, _ = _parse_url(self.url)
        if self.username is not None and (
            not isinstance(self.username, str) or not self.username or "\x00" in self.username
        ):
            raise ValidationError("mqtt.username", "must be a non-empty string", self.username)
        if self.password is not None:
            if not isinstance(self.password, str):
                raise ValidationError("mqtt.password", "must be a string")
            if self.username is None:
                # MQTT 3.1.1 sends a password only after a username.
                raise ValidationError("mqtt.password", "needs mqtt.username")
        if self.tls_ca is not None:
            if not isinstance(self.tls_ca, str) or not self.tls_ca:
                raise ValidationError("mqtt.tls_ca", "must be a file path", self.tls_ca)
            if not tls:
                # A CA with a plain URL would look secure in the config and send in the clear.
                raise ValidationError("mqtt.tls_ca", "needs an mqtts:// url", self.url)
        if self.client_id is not None:
            _check_level("mqtt.client_id", self.client_id)
        if (
            not isinstance(self.keepalive, int)
            or isinstance(self.keepalive, bool)
            or not 1 <= self.keepalive <= 65535
        ):
            # 0 would switch keepalive off, and with it the detection of dead peers.
            raise ValidationError("mqtt.keepalive", "must be an integer 1..65535", self.keepalive)
        _check_seconds("mqtt.connect_timeout", self.connect_timeout, low=0.0, high=300.0)
        if (
            not isinstance(self.queue_size, int)
            or isinstance(self.queue_size, bool)
            or self.queue_size < 1
        ):
            raise ValidationError("mqtt.queue_size", "must be an integer >= 1", self.queue_size)
        _check_seconds("mqtt.reconnect_min", self.reconnect_min, low=0.0, high=3600.0)
        _check_seconds("mqtt.reconnect_max", self.reconnect_max, low=0.0, high=3600.0)
        if self.reconnect_max < self.reconnect_min:
            raise ValidationError(
                "mqtt.reconnect_max", "must be >= mqtt.reconnect_min", self.reconnect_max
            )

    @property
    def tls(self) -> bool:
        """True for an ``mqtts://`` URL."""
        return _parse_url(self.url)[0]

    @property
    def host(self) -> str:
        return _parse_url(self.url)[1]

    @property
    def port(self) -> int:
        """The URL's port, or the scheme's default."""
        return _parse_url(self.url)[2]


class _Outgoing:
    """One frame or bridge message on its way to the broker.

    ``done`` (bridge messages only) resolves once the broker has it: acknowledged for QoS 1
    and 2, written to the socket for QoS 0; it fails if the message is dropped.
    """

    __slots__ = ("attempts", "done", "kind", "payload", "qos", "retain", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        kind: str,
        *,
        retain: bool = False,
        done: asyncio.Future[None] | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.kind = kind
        self.retain = retain
        self.done = done
        self.attempts = 0

    def delivered(self, metrics: Metrics, transport: str) -> None:
        """The broker has it: count a frame, or tell the bridge that waits for it."""
        if self.done is None:
            metrics.sent(transport, self.kind)
        elif not self.done.done():
            self.done.set_result(None)

    def dropped(self, error: Exception) -> None:
        """It will not reach the broker: tell the bridge that waits for it, if any."""
        if self.done is not None and not self.done.done():
            self.done.set_exception(error)
            # The bridge may have given up waiting (its node timed out): nobody may read it.
            self.done.exception()


class _BridgeSubscription:
    """One bridge's interest in one topic filter."""

    __slots__ = ("handler", "qos", "topic_filter")

    def __init__(self, topic_filter: str, qos: int, handler: BridgeHandler) -> None:
        self.topic_filter = topic_filter
        self.qos = qos
        self.handler = handler


class _LogOnce:
    """Log a repeated problem at warning the first time per key, then at debug."""

    def __init__(self) -> None:
        self._seen: set[Hashable] = set()

    def __call__(self, key: Hashable, msg: str, *args: object, exc: bool = False) -> None:
        if key in self._seen:
            logger.debug(msg, *args, exc_info=exc)
            return
        if len(self._seen) < _LOG_ONCE_KEYS:
            self._seen.add(key)
        logger.warning(msg, *args, exc_info=exc)

    def forget(self, key: Hashable) -> None:
        self._seen.discard(key)


class MqttTransport:
    """Carries frames between the peers of one swarm through an MQTT broker.

    ``send`` only queues; one publisher task per connection drains the queue in order with a
    small window of unacknowledged publishes. A connection loop reconnects with exponential
    backoff and full jitter, resubscribes, republishes presence and calls ``on_connected``
    after every (re)connect so the engine can run anti-entropy for what it missed.

    Args:
        options: the broker and connection settings.
        swarm: the swarm name, one topic level.
        peer_id: this peer's id (:data:`~krill_crdt.sync.link.PEER_ID_SIZE` bytes).
        metrics: where to count frames; a private :class:`Metrics` if ``None``.
        on_connected: called after every successful (re)connect, subscriptions in place.
        on_presence: called as ``on_presence(peer_hex, state)`` for every presence message of
            another peer (``state`` is ``"online"`` or ``"offline"``), retained ones included.

    Raises:
        ValidationError: the swarm is not one topic level, or the peer id has the wrong size.
    """

    name = "mqtt"

    def __init__(
        self,
        options: MqttOptions,
        *,
        swarm: str,
        peer_id: bytes,
        metrics: Metrics | None = None,
        on_connected: Callable[[], None] | None = None,
        on_presence: Callable[[str, str], None] | None = None,
    ) -> None:
        _check_level("peer.swarm", swarm)
        if not isinstance(peer_id, bytes) or len(peer_id) != PEER_ID_SIZE:
            raise ValidationError("peer.id", f"must be {PEER_ID_SIZE} bytes", peer_id)
        self.options = options
        self.swarm = swarm
        self.peer_id = peer_id
        self.peer_hex = peer_id.hex()
        self.metrics = metrics if metrics is not None else Metrics()
        self.on_connected = on_connected
        self.on_presence = on_presence

        base = f"{TOPIC_ROOT}/{swarm}"
        self._base = base + "/"
        self._beacon_topic = f"{base}/peer/{self.peer_hex}/beacon"
        self._inbox_topic = f"{base}/peer/{self.peer_hex}/inbox"
        self._presence_topic = f"{base}/peer/{self.peer_hex}/presence"
        self._subscriptions: list[tuple[str, int]] = [
            (f"{base}/+/update", 1),
            (f"{base}/peer/+/beacon", 0),
            (self._inbox_topic, 1),
            (f"{base}/peer/+/presence", 1),
        ]
        self._client_id = options.client_id or f"krill-{self.peer_hex[:16]}"
        self._ack_timeout = max(float(options.keepalive), MIN_ACK_TIMEOUT)
        self._broadcast = Link(self.name, None)

        self._queue: deque[_Outgoing] = deque()
        self._inflight: deque[tuple[_Outgoing, asyncio.Future[None]]] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = asyncio.Event()
        self._deliver: Deliver | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._connected = False
        self._ever_connected = False
        self._full_warned = False
        self._log_once = _LogOnce()
        # Bridge subscriptions by topic filter; several bridges may share one filter.
        self._bridges: dict[str, list[_BridgeSubscription]] = {}
        self._client: aiomqtt.Client | None = None
        self._bridge_tasks: set[asyncio.Task[None]] = set()

    # -- public surface ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.options.url

    @property
    def connected(self) -> bool:
        """True while a session with the broker is up (subscribed, presence published)."""
        return self._connected

    @property
    def queued(self) -> int:
        """Frames waiting for the broker, in flight ones included."""
        return len(self._queue) + len(self._inflight)

    async def start(self, deliver: Deliver) -> None:
        """Connect in the background and wait up to ``connect_timeout`` for the first session.

        An unreachable broker is not an error here: the transport logs a warning, returns and
        keeps trying in the background (frames queue up meanwhile). A broker that answers but
        refuses us (credentials, authorisation, an untrusted certificate) within that time
        is an error, because retrying cannot help.

        Args:
            deliver: receives every frame from the broker as ``deliver(data, link)``.

        Raises:
            MqttRefusedError: the broker refused the connection; the transport is left stopped
                and may be started again.
            MqttTransportError: the transport is already started.
            ValidationError: ``tls_ca`` cannot be read as a CA file.
        """
        if self._task is not None:
            raise MqttTransportError(self.url, "transport already started; stop() it first")
        tls_context = self._tls_context()
        self._deliver = deliver
        self._stopping = asyncio.Event()
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._first = first
        self._task = asyncio.create_task(self._run(tls_context), name=f"krill-mqtt {self.url}")
        try:
            await asyncio.wait_for(asyncio.shield(first), self.options.connect_timeout)
        except asyncio.TimeoutError:
            first.cancel()
            logger.warning(
                "MQTT broker %s not reachable within %.1f s; peer %s keeps trying in the "
                "background (swarm %s)",
                self.url,
                self.options.connect_timeout,
                self.peer_hex[:8],
                self.swarm,
            )
        except MqttRefusedError as refused:
            await self._reap_task()
            raise refused from None
        except asyncio.CancelledError:
            # A start() cancelled by its caller must not leave a connection loop behind.
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
            raise

    def send(self, send: Send) -> None:
        """Queue one frame for the broker; never blocks.

        When the queue is full the new frame is dropped and counted in
        ``krill_frames_dropped_total{transport="mqtt"}`` (a warning is logged once per
        overflow). Frames queued while disconnected go out after the reconnect.

        Args:
            send: the frame; ``send.link.peer`` set sends it to that peer's inbox, otherwise a
                beacon goes to this peer's beacon topic and any other frame to the topic of
                ``send.doc``.

        Raises:
            ValidationError: the frame has no topic: its doc (or addressed peer id) is empty
                or not one topic level, or its link is not an MQTT link.
        """
        item = self._route(send)
        if len(self._queue) >= self.options.queue_size:
            self.metrics.frames_dropped.labels(self.name).inc()
            if not self._full_warned:
                self._full_warned = True
                logger.warning(
                    "MQTT send queue full (%d frames) for broker %s: dropping new frames "
                    "(first: %s for doc %r); anti-entropy will heal the gap",
                    self.options.queue_size,
                    self.url,
                    send.kind,
                    send.doc,
                )
            return
        self._queue.append(item)
        self._idle.clear()
        self._wakeup.set()

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a bridge message for ``topic``, in order with everything else queued.

        Args:
            topic: a plain topic (no wildcards) outside ``krill/``.
            payload: the message.
            qos: 0, 1 or 2.
            retain: ask the broker to keep it as the topic's last message.

        Returns:
            A future that resolves when the broker has the message (acknowledged for QoS 1
            and 2, written to the connection for QoS 0) and fails with
            :class:`MqttTransportError` if it is dropped (the transport stopped, or the
            message killed the connection :data:`MAX_SEND_ATTEMPTS` times).

        Raises:
            ValidationError: the topic or the QoS is not usable.
            MqttTransportError: there is no session with the broker now (the message would
                wait for an unknown time), or bridge messages already fill their share of the
                queue.
        """
        _check_bridge_topic("topic", topic, wildcards=False)
        if qos not in (0, 1, 2):
            raise ValidationError("qos", "must be 0, 1 or 2", qos)
        if not self._connected:
            raise MqttTransportError(self.url, "not connected; the message was not sent")
        if len(self._queue) >= self.options.queue_size * BRIDGE_QUEUE_SHARE:
            raise MqttTransportError(
                self.url, f"send queue too full for bridge messages ({len(self._queue)} queued)"
            )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Outgoing(topic, payload, qos, _BRIDGE, retain=retain, done=done))
        self._idle.clear()
        self._wakeup.set()
        return done

    def subscribe(self, topic_filter: str, qos: int, handler: BridgeHandler) -> Callable[[], None]:
        """Deliver every message on ``topic_filter`` to ``handler(topic, payload)``.

        The subscription lasts across reconnects until the returned function is called. Its
        own messages never come back to this peer (MQTT 5 "no local"). Retained messages
        arrive on every (re)subscribe, like on any MQTT client.

        Args:
            topic_filter: a topic filter outside ``krill/`` whose first level is not a
                wildcard (which would also match the swarm's own topics).
            qos: the highest QoS to receive with.
            handler: called in the event loop for each message; it must not block. What it
                raises is logged (once per filter at warning) and does not end the session.

        Returns:
            A function that ends this subscription (idempotent).

        Raises:
            ValidationError: the filter or the QoS is not usable.
        """
        _check_bridge_topic("topic", topic_filter, wildcards=True)
        if qos not in (0, 1, 2):
            raise ValidationError("qos", "must be 0, 1 or 2", qos)
        subscription = _BridgeSubscription(topic_filter, qos, handler)
        sharing = self._bridges.setdefault(topic_filter, [])
        before = max((s.qos for s in sharing), default=-1)
        sharing.append(subscription)
        if qos > before:
            self._live(self._subscribe_bridge(topic_filter))

        def unsubscribe() -> None:
            subscribers = self._bridges.get(topic_filter, [])
            if subscription not in subscribers:
                return
            subscribers.remove(subscription)
            if not subscribers:
                del self._bridges[topic_filter]
                self._live(self._unsubscribe_bridge(topic_filter))

        return unsubscribe

    async def stop(self) -> None:
        """Flush briefly, publish ``offline``, disconnect cleanly; idempotent.

        A connected transport gets up to :data:`STOP_FLUSH_TIMEOUT` to hand queued frames to
        the broker; what is still queued after that is dropped and counted. A transport that
        is not connected stops at once (the broker keeps the last presence it saw, and the
        will covers a session that was up).
        """
        task = self._task
        if task is None:
            return
        self._stopping.set()
        if not self._connected:
            # NOTE: a connect in progress runs in aiomqtt's executor thread and cannot be
            # interrupted; if it completes after this, that socket is abandoned to paho's
            # keepalive (at most 1.5 keepalive periods). Only a stop() racing a slow TCP or
            # TLS handshake hits this.
            task.cancel()
        try:
            grace = STOP_FLUSH_TIMEOUT + 2 * self.options.connect_timeout
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                logger.warning("MQTT broker %s: clean disconnect timed out; closing", self.url)
        finally:
            await self._reap_task()

    # -- connection loop -----------------------------------------------------------------------

    async def _run(self, tls_context: ssl.SSLContext | None) -> None:
        """Connect, run a session, and reconnect with backoff until stopped."""
        attempt = 0
        while not self._stopping.is_set():
            began: float | None = None
            try:
                async with contextlib.AsyncExitStack() as stack:
                    client = self._make_client(tls_context)
                    try:
                        await stack.enter_async_context(client)
                    except aiomqtt.MqttError as exc:
                        refused = self._refusal(exc)
                        if refused is None:
                            self._log_once(
                                ("connect", self.url),
                                "MQTT broker %s not reachable: %s; retrying",
                                self.url,
                                exc,
                            )
                        elif self._on_refused(refused):
                            return  # start() raises it
                    else:
                        began = time.monotonic()
                        try:
                            await self._session(client)
                        finally:
                            self._connected = False
                            self._client = None
            except aiomqtt.MqttError as exc:
                logger.warning("MQTT broker %s: connection lost (%s); reconnecting", self.url, exc)
            except Exception:
                # A bug must not end the transport silently; keep trying, loudly.
                logger.exception("MQTT broker %s: unexpected failure; reconnecting", self.url)
            finally:
                self._requeue_inflight()

            if self._stopping.is_set():
                return
            if began is not None and time.monotonic() - began >= STABLE_CONNECTION:
                attempt = 0
            delay = self._backoff(attempt)
            attempt += 1
            logger.debug("MQTT broker %s: next attempt in %.2f s", self.url, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _session(self, client: aiomqtt.Client) -> None:
        """Run one connected session until the connection drops or a stop is asked.

        Raises:
            aiomqtt.MqttError: the connection dropped or the broker stopped acknowledging.
        """
        # Step 1: subscribe (one SUBSCRIBE for all filters), then say we are online. In this
        # order a peer never misses what others send in reply to its presence.
        timeout = self.options.connect_timeout
        self._client = client
        bridges = [
            (topic_filter, _no_local(max(s.qos for s in subs)))
            for topic_filter, subs in self._bridges.items()
        ]
        wanted = [(topic, SubscribeOptions(qos=qos)) for topic, qos in self._subscriptions]
        granted = await client.subscribe(wanted + bridges, timeout=timeout)
        for (topic, _), code in zip(wanted + bridges, granted, strict=False):
            # 0x80 and above is a refusal, usually the broker's ACL. Mosquitto 2.0 grants such
            # subscriptions and then delivers nothing, so this catches other brokers only.
            if _code_value(code) >= 0x80:
                self._log_once(
                    ("subscribe", topic),
                    "MQTT broker %s refused the subscription to %s (check its ACL for user %r)",
                    self.url,
                    topic,
                    self.options.username,
                )
        await client.publish(
            self._presence_topic, self._presence("online"), qos=1, retain=True, timeout=timeout
        )
        self._connected = True
        self._log_once.forget(("connect", self.url))
        self._log_once.forget(("refused", self.url))
        logger.info(
            "MQTT %s to %s as peer %s (swarm %s, client id %s)",
            "reconnected" if self._ever_connected else "connected",
            self.url,
            self.peer_hex[:8],
            self.swarm,
            self._client_id,
        )
        self._ever_connected = True
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        if self.on_connected is not None:
            try:
                self.on_connected()
            except Exception:
                logger.exception("on_connected callback failed (MQTT broker %s)", self.url)

        # Step 2: pump both directions until one side fails or a stop is asked.
        reader = asyncio.ensure_future(self._read(client))
        publisher = asyncio.ensure_future(self._publish(client))
        stop = asyncio.ensure_future(self._stopping.wait())
        tasks = {reader, publisher, stop}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if stop not in done:
                for task in done:
                    task.result()  # re-raises why the connection ended
                raise aiomqtt.MqttError("message stream ended")

            # Step 3 (clean stop): let queued frames out for a moment, then say offline
            # before the DISCONNECT, which makes the broker discard our will.
            idle = asyncio.ensure_future(self._idle.wait())
            tasks.add(idle)
            await asyncio.wait(
                {idle, reader, publisher},
                timeout=STOP_FLUSH_TIMEOUT,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in (reader, publisher):
                task.cancel()
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                return  # connection already gone: the will says offline for us
            await client.publish(
                self._presence_topic, self._presence("offline"), qos=1, retain=True, timeout=timeout
            )
            logger.info(
                "MQTT disconnecting from %s (peer %s stopping)", self.url, self.peer_hex[:8]
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self._on_message(message.topic.value, message.payload)

    async def _publish(self, client: aiomqtt.Client) -> None:
        """Drain the queue in order, with at most :data:`PUBLISH_WINDOW` frames unacknowledged.

        Each publish is its own task, created in queue order; aiomqtt hands the frame to paho
        synchronously in the task's first step, which fixes the order on the wire.
        """
        wake = self._wakeup
        while True:
            self._settle_acknowledged()
            if self._queue and len(self._inflight) < PUBLISH_WINDOW:
                item = self._queue.popleft()
                item.attempts += 1
                ack = asyncio.ensure_future(
                    client.publish(
                        item.topic,
                        item.payload,
                        qos=item.qos,
                        retain=item.retain,
                        timeout=self._ack_timeout,
                    )
                )
                ack.add_done_callback(lambda _: wake.set())
                self._inflight.append((item, ack))
                continue
            if not self._queue:
                self._full_warned = False
                if not self._inflight:
                    self._idle.set()
            wake.clear()
            await wake.wait()

    def _settle_acknowledged(self) -> None:
        """Count and forget the acknowledged frames at the head of the window.

        Raises:
            aiomqtt.MqttError: the oldest unsettled publish failed; it stays in the window to
                be queued again after the reconnect.
        """
        inflight = self._inflight
        while inflight and inflight[0][1].done():
            item, ack = inflight[0]
            if ack.cancelled():
                raise aiomqtt.MqttError("publish cancelled")
            error = ack.exception()
            if error is not None:
                raise error
            inflight.popleft()
            item.delivered(self.metrics, self.name)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "MQTT sent %s (%d bytes) on %s", item.kind, len(item.payload), item.topic
                )

    def _requeue_inflight(self) -> None:
        """Put frames the broker did not acknowledge back at the head of the queue, in order."""
        again: list[_Outgoing] = []
        for item, ack in self._inflight:
            if ack.done() and not ack.cancelled() and ack.exception() is None:
                item.delivered(self.metrics, self.name)
                continue
            ack.cancel()
            if item.attempts >= MAX_SEND_ATTEMPTS:
                self.metrics.frames_dropped.labels(self.name).inc()
                self._log_once(
                    ("poison", item.topic),
                    "MQTT broker %s: dropping a %s frame on %s after %d connections died with "
                    "it in flight",
                    self.url,
                    item.kind,
                    item.topic,
                    item.attempts,
                )
                item.dropped(
                    MqttTransportError(self.url, f"dropped after {item.attempts} attempts")
                )
                continue
            again.append(item)
        self._inflight.clear()
        # NOTE: requeued frames may push the queue past queue_size by up to PUBLISH_WINDOW;
        # they were accepted earlier and dropping them now would reorder the stream.
        self._queue.extendleft(reversed(again))

    # -- receiving -----------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        """Route one received message by its topic (the payload is never decoded)."""
        if not topic.startswith(self._base):
            if self._bridges:
                self._to_bridges(topic, payload)
            return
        levels = topic[len(self._base) :].split("/")
        # Frames are counted as received by the engine, once decoded and accepted.
        if len(levels) == 2 and levels[1] == "update":
            self._hand_over(payload, topic)
        elif len(levels) == 3 and levels[0] == "peer":
            peer_hex, what = levels[1], levels[2]
            if peer_hex == self.peer_hex and what != "inbox":
                return  # our own beacon or presence coming back
            if what == "beacon":
                self._hand_over(payload, topic)
            elif what == "inbox":
                # The frame kind is inside the frame; the engine counts it after decoding.
                self._hand_over(payload, topic)
            elif what == "presence":
                self._on_presence_message(peer_hex, payload)

    def _to_bridges(self, topic: str, payload: bytes) -> None:
        try:
            received = aiomqtt.Topic(topic)
        except ValueError:
            return  # not a topic name (a broker would not send one)
        for topic_filter, subscribers in list(self._bridges.items()):
            if not received.matches(topic_filter):
                continue
            for subscription in list(subscribers):
                try:
                    subscription.handler(topic, payload)
                except Exception:
                    self._log_once(
                        ("bridge", topic_filter),
                        "MQTT bridge handler for %s failed on a message on %s",
                        topic_filter,
                        topic,
                        exc=True,
                    )

    def _live(self, change: Coroutine[Any, Any, None]) -> None:
        """Apply a subscription change to the current session now, if there is one (the next
        session subscribes to every bridge filter anyway)."""
        if self._client is None:
            change.close()
            return
        task = asyncio.ensure_future(change)
        self._bridge_tasks.add(task)
        task.add_done_callback(self._bridge_tasks.discard)

    async def _subscribe_bridge(self, topic_filter: str) -> None:
        client = self._client
        subscribers = self._bridges.get(topic_filter)
        if client is None or not subscribers:
            return
        qos = max(s.qos for s in subscribers)
        try:
            await client.subscribe(
                topic_filter, options=_no_local(qos), timeout=self.options.connect_timeout
            )
        except aiomqtt.MqttError as exc:
            # The session is going down; the next one subscribes again.
            logger.debug(
                "MQTT broker %s: subscribing to %s failed: %s", self.url, topic_filter, exc
            )

    async def _unsubscribe_bridge(self, topic_filter: str) -> None:
        client = self._client
        if client is None or topic_filter in self._bridges:
            return
        try:
            await client.unsubscribe(topic_filter, timeout=self.options.connect_timeout)
        except aiomqtt.MqttError as exc:
            logger.debug(
                "MQTT broker %s: unsubscribing from %s failed: %s", self.url, topic_filter, exc
            )

    def _hand_over(self, payload: bytes, topic: str) -> None:
        deliver = self._deliver
        if deliver is None:
            return
        try:
            deliver(payload, self._broadcast)
        except Exception:
            self._log_once(
                ("deliver", topic), "MQTT frame from %s: the receiver failed", topic, exc=True
            )

    def _on_presence_message(self, peer_hex: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message: the peer left the swarm for good
        try:
            body = json.loads(payload)
            state = body["state"]
            valid = state in ("online", "offline") and body.get("peer") == peer_hex
        except (ValueError, TypeError, KeyError):
            valid = False
        if not valid:
            self.metrics.rejected(self.name, "bad_presence")
            self._log_once(
                ("presence", peer_hex),
                "MQTT presence of peer %s (swarm %s) is malformed; ignored",
                peer_hex[:8],
                self.swarm,
            )
            return
        logger.debug("MQTT peer %s is %s (swarm %s)", peer_hex[:8], state, self.swarm)
        if self.on_presence is not None:
            try:
                self.on_presence(peer_hex, str(state))
            except Exception:
                self._log_once(("on_presence",), "on_presence callback failed", exc=True)

    # -- helpers -------------------------------------------------------------------------------

    def _route(self, send: Send) -> _Outgoing:
        """Return the queue entry for a frame: topic and QoS follow from its link and kind."""
        if send.link.transport != self.name:
            raise ValidationError("link.transport", "must be 'mqtt'", send.link.transport)
        base = self._base
        if send.link.peer is not None:
            target = _check_level("link.peer", send.link.peer.hex())
            return _Outgoing(f"{base}peer/{target}/inbox", send.data, 1, send.kind)
        if send.kind == "beacon":
            # QoS 0: a lost beacon is replaced by the next one; retrying would only add load.
            return _Outgoing(self._beacon_topic, send.data, 0, send.kind)
        if not send.doc:
            # Frames about the peer rather than a doc (its link announcements) share the
            # beacon topic, at QoS 1: unlike beacons they are not repeated periodically.
            return _Outgoing(self._beacon_topic, send.data, 1, send.kind)
        doc = _check_level("doc", send.doc)
        return _Outgoing(f"{base}{doc}/update", send.data, 1, send.kind)

    def _presence(self, state: str) -> bytes:
        return json.dumps({"state": state, "peer": self.peer_hex}, separators=(",", ":")).encode()

    def _make_client(self, tls_context: ssl.SSLContext | None) -> aiomqtt.Client:
        """A fresh client per connection: nothing of a dead session can leak into the next."""
        opts = self.options
        client = aiomqtt.Client(
            opts.host,
            opts.port,
            username=opts.username,
            password=opts.password,
            logger=_client_logger,
            identifier=self._client_id,
            will=aiomqtt.Will(self._presence_topic, self._presence("offline"), qos=1, retain=True),
            # MQTT 5 for the "no local" subscription option; a clean start and the default
            # session expiry of zero keep no session state on the broker, as before.
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            timeout=opts.connect_timeout,
            keepalive=opts.keepalive,
            max_queued_incoming_messages=INCOMING_QUEUE_LIMIT,
            max_inflight_messages=PUBLISH_WINDOW + 2,
            tls_context=tls_context,
            # Nagle would hold small frames back for tens of milliseconds on a fresh connection.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # The window plus the presence publish and the subscribe are expected; aiomqtt would
        # otherwise warn about "pending calls" on every burst.
        client.pending_calls_threshold = PUBLISH_WINDOW + 2
        return client

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.options.tls:
            return None
        try:
            # Hostname (or IP) checking and certificate verification stay on, always.
            return ssl.create_default_context(cafile=self.options.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValidationError(
                "mqtt.tls_ca",
                f"must be a readable PEM CA file ({exc.strerror or exc})",
                self.options.tls_ca,
            ) from None

    def _refusal(self, exc: aiomqtt.MqttError) -> MqttRefusedError | None:
        """Return the refusal ``exc`` stands for, or ``None`` if retrying may help."""
        if isinstance(exc, aiomqtt.MqttCodeError):
            reason = _REFUSALS.get(_code_value(exc.rc))
            if reason is not None:
                who = (
                    f"user {self.options.username!r}"
                    if self.options.username is not None
                    else "an anonymous client"
                )
                return MqttRefusedError(self.url, f"refused {who}: {reason}")
        # aiomqtt hides the ssl error behind its own (raised from None) but keeps it as context.
        # NOTE: paho does not close the TCP socket of a failed TLS handshake; the garbage
        # collector does, with a ResourceWarning. One socket per attempt, so harmless at
        # reconnect_max, but visible under ``-W error``.
        cause = exc.__context__
        if isinstance(cause, ssl.SSLCertVerificationError):
            return MqttRefusedError(
                self.url,
                f"TLS certificate not trusted: {cause.verify_message} (check mqtt.tls_ca)",
            )
        return None

    def _on_refused(self, refused: MqttRefusedError) -> bool:
        """Hand a refusal to a waiting start() (return True) or log it (return False)."""
        first = self._first
        if first is not None and not first.done():
            first.set_exception(refused)
            return True
        # Later refusals (credentials revoked, broker reconfigured) keep retrying at backoff:
        # an operator may fix the broker side without restarting every peer.
        self._log_once(("refused", self.url), "%s; retrying with backoff", refused)
        return False

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform between the minimum and the exponentially growing cap."""
        low, high = self.options.reconnect_min, self.options.reconnect_max
        cap = min(high, low * 2.0 ** min(attempt, 32))
        return random.uniform(low, cap)

    async def _reap_task(self) -> None:
        """Cancel and await the connection loop; drop (and count) what is still queued."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._requeue_inflight()
        for task in list(self._bridge_tasks):
            task.cancel()
        stopped = MqttTransportError(self.url, "transport stopped before the message was sent")
        for item in self._queue:
            item.dropped(stopped)
        dropped = len(self._queue)
        if dropped:
            self.metrics.frames_dropped.labels(self.name).inc(dropped)
            logger.info(
                "MQTT transport stopped with %d frames unsent (broker %s)", dropped, self.url
            )
        self._queue.clear()
        self._connected = False
        self._first = None


def _no_local(qos: int) -> SubscribeOptions:
    """Subscription options that keep the broker from sending our own messages back."""
    return SubscribeOptions(qos=qos, noLocal=True)


def _check_bridge_topic(field_name: str, topic: object, *, wildcards: bool) -> str:
    """Return ``topic`` if a bridge may use it; raise ValidationError otherwise.

    Bridges stay out of ``krill/`` (the swarm's frames live there, and a bridge message
    would reach every peer's sync engine) and out of ``$`` topics (the broker's own). A filter
    may not start with a wildcard either, since it would match the swarm's topics as well.
    """
    if not isinstance(topic, str) or not topic:
        raise ValidationError(field_name, "must be a non-empty string", topic)
    if len(topic) > MAX_BRIDGE_TOPIC_CHARS or "\x00" in topic:
        raise ValidationError(
            field_name, f"must be at most {MAX_BRIDGE_TOPIC_CHARS} characters, no NUL", topic
        )
    first = topic.split("/", 1)[0]
    if first in ("krill", "+", "#") or first.startswith("$"):
        raise ValidationError(
            field_name, "must start with a plain level other than 'krill' or '$...'", topic
        )
    if not wildcards and ("+" in topic or "#" in topic):
        raise ValidationError(field_name, "must be a plain topic: no '+' or '#'", topic)
    return topic


def _code_value(code: object) -> int:
    """The number of a paho reason code, whether paho gives it as an object or an int."""
    if isinstance(code, ReasonCode):
        return int(code.value)
    return code if isinstance(code, int) else 0
