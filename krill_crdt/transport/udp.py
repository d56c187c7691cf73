"""UDP multicast transport: beacons and small deltas for every peer on the local link.

One datagram carries one frame. The transport never looks inside a frame: it checks sizes,
hands received bytes to ``deliver`` with the broadcast link ``Link("udp", None)`` and sends
what the sync engine gives it to the multicast group. Everything it refuses is counted in
:class:`~krill_crdt.metrics.Metrics`, so a busy or misconfigured link shows in ``/metrics``
rather than in the logs alone.

The defaults keep every datagram on the loopback interface with a TTL of 1: a peer that
runs on defaults is heard only by peers on the same host. A LAN deployment names the
address of its LAN interface explicitly.

Example:
    >>> options = MulticastOptions(group="239.255.0.69", port=45317, interface="127.0.0.1")
    >>> transport = UdpMulticastTransport(options)
    >>> await transport.start(engine_receive)  # doctest: +SKIP
    >>> transport.send(Send(Link("udp"), frame, "beacon"))  # doctest: +SKIP
    >>> await transport.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys
from dataclasses import dataclass
from typing import Any

from .._core.codec import DATAGRAM_BUDGET
from ..errors import ValidationError
from ..metrics import Metrics
from ..sync.link import Link, Send
from .base import Deliver
from .limits import RateLimit, SourceLimits

__all__ = ["MAX_DATAGRAM", "MulticastOptions", "UdpMulticastTransport"]

logger = logging.getLogger("krill.transport.udp")

#: Largest datagram accepted from the group. Krill peers never send more than
#: ``DATAGRAM_BUDGET`` (1200) bytes; the limit sits at 1472, the largest UDP payload that fits
#: one Ethernet frame of 1500 bytes after the IPv4 (20) and UDP (8) headers. Anything bigger
#: arrived as IP fragments, which no krill peer produces, and the slack above the budget lets
#: a later release raise its budget up to the Ethernet limit without older peers refusing it.
#: asyncio reads each datagram into a buffer of 256 KiB, more than the 65 507 bytes an IPv4
#: UDP datagram can hold, so a datagram always arrives whole and its real size is checked;
#: any buffer larger than this limit would still see an oversized datagram as oversized.
MAX_DATAGRAM = 1472

#: Datagrams from this many distinct sources get a warning of their own when refused; later
#: sources log at debug. A LAN holds tens of peers; the cap keeps a flood of forged source
#: addresses from growing the set without bound.
MAX_WARNED_SOURCES = 256

#: How long ``stop()`` lets datagrams still queued in asyncio's buffer drain before the socket
#: is closed without them. Beacons are resent on a timer and anti-entropy heals lost deltas,
#: so a stalled socket must not hold up shutdown.
STOP_FLUSH_SECONDS = 1.0

#: Linux's ``IP_MULTICAST_ALL`` (``<linux/in.h>``), which the ``socket`` module does not export.
#: Its default of 1 hands a socket every datagram for any group joined by any socket on the
#: host, on any interface; 0 limits it to the (group, interface) pairs it joined itself.
_IP_MULTICAST_ALL = 49

#: Options come from the ``[discovery]`` section of the config, so errors name its keys.
_FIELD = "discovery."

#: 255.255.255.255 names no interface: it is the limited broadcast address of every link.
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

#: The one link every received datagram comes in on: multicast has no point-to-point links.
_BROADCAST = Link("udp", None)


@dataclass(frozen=True, slots=True)
class MulticastOptions:
    """Where and how the UDP transport meets the other peers; validated on creation.

    Attributes:
        group: IPv4 multicast group every peer of the swarm joins.
        port: UDP port of the group, shared by every peer on the host.
        ttl: IP time-to-live of sent datagrams, 1..255.
        interface: IPv4 address of the interface to send from and to join the group on.
        loopback: whether the host's own sockets get a copy of what is sent
            (``IP_MULTICAST_LOOP``). On the loopback interface the kernel hands every
            datagram back regardless of this flag, so the sync engine still drops its own
            frames by their origin.
        max_queue_bytes: a frame is dropped while more than this many bytes wait in the
            socket's asyncio write buffer.
        source_rate: datagrams per second taken from one source (address and port) on average; more
            are dropped and counted as ``rate``. Anti-entropy heals what a dropped delta
            carried.
        source_burst: datagrams one source may send at once above that.

    Raises:
        ValidationError: a value breaks its rule; ``field`` is the config key
            (``"discovery.group"``, ``"discovery.port"``, ...).
    """

    # Administratively scoped (RFC 2365), so routers at the site's edge never forward it.
    group: str = "239.255.0.69"
    # The swarm's well-known port, shared by every peer (not assigned by IANA).
    # NOTE: it lies inside Linux's ephemeral range (32768-60999), so an outgoing socket may
    # NOTE: now and then hold it; start() then raises for discovery.port and the config moves it.
    port: int = 45317
    # 1 keeps beacons on the local link: no router forwards them, even a multicast router.
    ttl: int = 1
    # Loopback by default: a peer advertises only where it can be reached, and one that runs
    # on defaults listens only on loopback.
    interface: str = "127.0.0.1"
    # Several peers on one host (tests, the dashboard next to a daemon) must hear each other.
    loopback: bool = True
    # About 50 full datagrams: several seconds of beacons plus a burst of inline deltas.
    # UDP sends normally go straight to the kernel, so this only fills when the kernel's own
    # buffer is full (link down or saturated); past that, queued beacons are stale and
    # anti-entropy resends whatever the dropped deltas carried.
    max_queue_bytes: int = 64 * 1024
    # A peer sends at most 4 beacons a second and one delta per flush of its writes; 500 a
    # second from one address is far above a whole busy host (several peers share one
    # address on loopback) and far below what would keep a Pi's event loop busy.
    source_rate: int = 500
    source_burst: int = 1000

    def __post_init__(self) -> None:
        _check_ipv4(self.group, "group")
        if not ipaddress.IPv4Address(self.group).is_multicast:
            raise ValidationError(
                _FIELD + "group", "must be an IPv4 multicast address (224.0.0.0/4)", self.group
            )
        _check_int(self.port, "port", 1, 65535)
        _check_int(self.ttl, "ttl", 1, 255)
        _check_ipv4(self.interface, "interface")
        iface = ipaddress.IPv4Address(self.interface)
        if iface.is_unspecified or iface.is_multicast or iface == _LIMITED_BROADCAST:
            raise ValidationError(
                _FIELD + "interface",
                "must be the unicast IPv4 address of an interface, not 0.0.0.0, a multicast "
                "or a broadcast address",
                self.interface,
            )
        if not isinstance(self.loopback, bool):
            raise ValidationError(_FIELD + "loopback", "must be true or false", self.loopback)
        _check_int(self.max_queue_bytes, "max_queue_bytes", 0, None)
        _check_int(self.source_rate, "source_rate", 1, None)
        _check_int(self.source_burst, "source_burst", 1, None)


def _check_ipv4(value: object, key: str) -> None:
    """Raise ValidationError unless ``value`` is a dotted-quad IPv4 address string."""
    if not isinstance(value, str):
        raise ValidationError(_FIELD + key, "must be an IPv4 address string", value)
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValidationError(_FIELD + key, "must be an IPv4 address", value) from None


def _check_int(value: object, key: str, low: int, high: int | None) -> None:
    """Raise ValidationError unless ``value`` is an int (not a bool) in ``low..high``."""
    bounds = f"{low}..{high}" if high is not None else f"at least {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(_FIELD + key, f"must be an integer, {bounds}", value)
    if value < low or (high is not None and value > high):
        raise ValidationError(_FIELD + key, f"must be {bounds}", value)


def _queued_bytes(transport: asyncio.DatagramTransport) -> int:
    """Return how many bytes wait in the transport's write buffer.

    asyncio's datagram transports buffer like its stream transports and report the size the
    same way, but the ``DatagramTransport`` interface does not declare the method.
    """
    size = getattr(transport, "get_write_buffer_size", None)
    # NOTE: an event loop whose datagram transport lacks the method reports 0 here, and then
    # NOTE: max_queue_bytes never applies; the selector and proactor loops of CPython have it.
    return int(size()) if callable(size) else 0


class _WarnOnce:
    """Chooses the log level for a repeated problem: warning the first time per key, then debug.

    At most ``limit`` keys are remembered; once full, new keys log at debug too.
    """

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int = MAX_WARNED_SOURCES) -> None:
        self._limit = limit
        self._seen: set[object] = set()

    def level(self, key: object) -> int:
        """Return ``logging.WARNING`` for a key not seen before, ``logging.DEBUG`` otherwise."""
        if key in self._seen or len(self._seen) >= self._limit:
            return logging.DEBUG
        self._seen.add(key)
        return logging.WARNING


class _GroupProtocol(asyncio.DatagramProtocol):
    """Forwards asyncio's callbacks to the transport that owns the socket."""

    def __init__(self, owner: UdpMulticastTransport, lost: asyncio.Future[None]) -> None:
        self._owner = owner
        self._lost = lost

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._owner._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._owner._on_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        self._owner._on_lost(exc)


class UdpMulticastTransport:
    """Sends frames to a multicast group and delivers every datagram heard from it.

    Reusable: after ``stop()`` it may be started again. Not re-entrant: ``start()`` on a
    running transport raises.

    Args:
        options: group, port, interface and limits.
        metrics: where to count; a private :class:`Metrics` when ``None``.
    """

    name = "udp"

    def __init__(self, options: MulticastOptions, metrics: Metrics | None = None) -> None:
        self._options = options
        self._metrics = metrics if metrics is not None else Metrics()
        self._destination = (options.group, options.port)
        self._membership = socket.inet_aton(options.group) + socket.inet_aton(options.interface)
        self._where = f"group {options.group} port {options.port} interface {options.interface}"
        self._limits = SourceLimits(RateLimit(options.source_rate, options.source_burst))
        self._lock = asyncio.Lock()
        self._sock: socket.socket | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._lost: asyncio.Future[None] | None = None
        self._deliver: Deliver | None = None
        self._stopping = False
        self._reset_warnings()

    @property
    def options(self) -> MulticastOptions:
        """The options this transport was made with."""
        return self._options

    @property
    def metrics(self) -> Metrics:
        """The metrics it counts into."""
        return self._metrics

    @property
    def running(self) -> bool:
        """Whether the socket is open and joined to the group."""
        return self._transport is not None

    async def start(self, deliver: Deliver) -> None:
        """Open the socket, join the group and start delivering received datagrams.

        Args:
            deliver: called as ``deliver(data, Link("udp", None))`` for each datagram of at
                most :data:`MAX_DATAGRAM` bytes, in the event loop's thread.

        Raises:
            ValidationError: ``discovery.interface`` when the interface address is not one
                of this host's (or cannot do multicast); ``discovery.port`` when the port
                cannot be bound. No socket is left open.
            RuntimeError: the transport is already running.
        """
        async with self._lock:
            if self._transport is not None:
                raise RuntimeError(f"UDP transport on {self._where} is already running")
            loop = asyncio.get_running_loop()
            sock = self._open_socket()
            lost: asyncio.Future[None] = loop.create_future()
            self._deliver = deliver
            self._stopping = False
            self._reset_warnings()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _GroupProtocol(self, lost), sock=sock
                )
            except BaseException:
                self._deliver = None
                sock.close()
                raise
            self._sock, self._transport, self._lost = sock, transport, lost
            logger.info(
                "udp %s: joined (ttl %d, loopback %s)",
                self._where,
                self._options.ttl,
                "on" if self._options.loopback else "off",
            )

    def send(self, send: Send) -> None:
        """Hand one frame to the socket as one datagram, or drop and count it.

        A frame is dropped (``krill_frames_dropped_total{transport="udp"}``) when it is larger
        than ``DATAGRAM_BUDGET``, when more than ``max_queue_bytes`` wait in the write buffer,
        or when the transport is not running. A sent datagram counts in
        ``krill_frames_sent_total{transport="udp", kind=send.kind}``.

        Raises:
            ValueError: the link is not the UDP broadcast link (a point-to-point link, or one
                of another transport): a programming error, nothing is counted.
        """
        # Step 1: a multicast group has no point-to-point links.
        link = send.link
        if link.transport != self.name or link.peer is not None:
            raise ValueError(
                f"UDP multicast only sends to the broadcast link udp:*, not to {link}; "
                "point-to-point frames go over HTTP or a WebSocket link"
            )

        # Step 2: refuse what cannot or should not go out, counting each refusal.
        transport = self._transport
        size = len(send.data)
        if transport is None or transport.is_closing():
            self._drop(send, "not_running", "the transport is not running")
            return
        if size > DATAGRAM_BUDGET:
            self._drop(send, "oversized", f"over the {DATAGRAM_BUDGET}-byte datagram budget")
            return
        queued = _queued_bytes(transport)
        if queued > self._options.max_queue_bytes:
            self._drop(
                send,
                "queue_full",
                f"{queued} bytes already wait to be sent (limit {self._options.max_queue_bytes})",
            )
            return

        # Step 3: one frame, one datagram.
        transport.sendto(send.data, self._destination)
        self._metrics.sent(self.name, send.kind)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "udp %s: sent a %d-byte %s frame (doc %r)", self._where, size, send.kind, send.doc
            )

    async def stop(self) -> None:
        """Leave the group and close the socket; idempotent.

        Datagrams still waiting in the write buffer get up to :data:`STOP_FLUSH_SECONDS` to
        drain and are dropped after that. Once this returns the port is released and the
        transport may be started again. Never raises.
        """
        async with self._lock:
            transport, sock, lost = self._transport, self._sock, self._lost
            if transport is None or sock is None or lost is None:
                return
            self._stopping = True
            self._transport = None
            self._deliver = None

            # Step 1: leave the group while the socket is still open, so the kernel tells
            # IGMP-snooping switches now instead of letting the membership time out.
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, self._membership)
            except OSError as exc:
                # The interface may be gone already; the close below leaves the group anyway.
                logger.debug("udp %s: leaving the group failed: %s", self._where, exc.strerror)

            # Step 2: close, letting queued datagrams drain for a bounded time.
            transport.close()
            try:
                await asyncio.wait_for(asyncio.shield(lost), STOP_FLUSH_SECONDS)
            except asyncio.TimeoutError:
                logger.debug(
                    "udp %s: dropping %d queued bytes on stop",
                    self._where,
                    _queued_bytes(transport),
                )
                transport.abort()
                await lost
            self._sock = None
            self._lost = None
            logger.info("udp %s: left", self._where)

    # -- socket set-up ------------------------------------------------------------------------

    def _open_socket(self) -> socket.socket:
        """Return a non-blocking UDP socket bound to the group port and joined to the group.

        Raises:
            ValidationError: ``discovery.interface`` or ``discovery.port``, as for ``start``.
        """
        o = self._options
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            # Step 1: several peers on one host share the group's port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)

            # Step 2: send from the chosen interface only. The kernel refuses an address that
            # is not one of this host's, which is the check the options cannot make.
            try:
                sock.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(o.interface)
                )
            except OSError as exc:
                raise self._interface_error(exc) from None

            # Step 3: bind to the group address, not to 0.0.0.0, so unicast datagrams to the
            # port and other groups on the same port never reach this socket.
            try:
                sock.bind(self._destination)
            except OSError as exc:
                raise ValidationError(
                    _FIELD + "port",
                    f"must be a UDP port this host lets us bind on group {o.group} "
                    f"({exc.strerror})",
                    o.port,
                ) from None

            # Step 4: join on the chosen interface, and hear only that (group, interface),
            # so a loopback-only peer never hears the LAN when another process joins there.
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, self._membership)
            except OSError as exc:
                raise self._interface_error(exc) from None
            if sys.platform == "linux":
                sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)

            # Step 5: scope and loopback of what we send.
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, o.ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(o.loopback))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _interface_error(self, exc: OSError) -> ValidationError:
        """Return the error for an interface address the kernel refused."""
        return ValidationError(
            _FIELD + "interface",
            "must be the IPv4 address of a multicast-capable interface on this host "
            f"({exc.strerror})",
            self._options.interface,
        )

    # -- asyncio callbacks --------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """Deliver one received datagram, or reject it as oversized."""
        source = f"{addr[0]}:{addr[1]}"
        if len(data) > MAX_DATAGRAM:
            self._metrics.rejected(self.name, "oversized")
            logger.log(
                self._source_warnings.level(addr[0]),
                "udp %s: rejected a %d-byte datagram from %s: over the %d-byte limit",
                self._where,
                len(data),
                source,
                MAX_DATAGRAM,
            )
            return
        if not self._limits.allow((addr[0], addr[1])):
            self._metrics.rejected(self.name, "rate")
            logger.log(
                self._source_warnings.level((addr[0], "rate")),
                "udp %s: dropping datagrams from %s: over %d a second",
                self._where,
                addr[0],
                self._options.source_rate,
            )
            return
        deliver = self._deliver
        if deliver is None:
            return
        try:
            deliver(data, _BROADCAST)
        except Exception:
            # A failing receiver must not take the socket down with it; the next datagram
            # gets its chance. The traceback is the receiver's bug to fix.
            logger.exception(
                "udp %s: receiving a %d-byte datagram from %s failed",
                self._where,
                len(data),
                source,
            )

    def _on_error(self, exc: Exception) -> None:
        """Log a socket error reported by asyncio (a failed send, an ICMP error)."""
        errno = getattr(exc, "errno", None)
        logger.log(
            self._error_warnings.level(errno),
            "udp %s: socket error: %s",
            self._where,
            getattr(exc, "strerror", None) or exc,
        )

    def _on_lost(self, exc: Exception | None) -> None:
        """Note a socket that closed without ``stop()``; later sends are dropped and counted."""
        if self._stopping:
            return
        self._transport = None
        self._deliver = None
        logger.warning(
            "udp %s: socket closed unexpectedly: %s; start() rejoins the group",
            self._where,
            exc,
        )

    # -- helpers ------------------------------------------------------------------------------

    def _drop(self, send: Send, key: str, why: str) -> None:
        """Count a frame that is not sent and log why: a warning once per cause, then debug."""
        self._metrics.frames_dropped.labels(self.name).inc()
        logger.log(
            self._drop_warnings.level(key),
            "udp %s: dropped a %d-byte %s frame (doc %r): %s",
            self._where,
            len(send.data),
            send.kind,
            send.doc,
            why,
        )

    def _reset_warnings(self) -> None:
        """Start each run with fresh warn-once memories, so a restart reports problems anew."""
        self._drop_warnings = _WarnOnce()
        self._source_warnings = _WarnOnce()
        self._error_warnings = _WarnOnce()
