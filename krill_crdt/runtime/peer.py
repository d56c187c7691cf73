"""The Peer: store, sync engine, transports and HTTP server wired into one running peer.

    async with Peer(config) as peer:
        await peer.create(Node.new(NodeType.Project, host=peer.host, parent=peer.host))

The Peer owns one asyncio event loop's worth of state: the store's host docs, the sans-I/O
sync engine and the transports. Frames a transport receives go straight into the engine and
whatever the engine wants sent goes straight out again, in the same loop iteration, so one
hop costs no scheduling delay. Local writes are collected until the loop is next idle and
then leave as one merged delta per doc. Timers (beacons, presence) run from one driver task
that sleeps until the engine's next deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import secrets
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from .. import __version__
from ..errors import AccessDeniedError, KrillError, StoreClosedError, ValidationError
from ..metrics import Metrics
from ..model import Node, NodeType
from ..store import HostDoc, Origin, Store, Update
from ..store.changes import ChangeStream
from ..sync.docs import StoreDocs
from ..sync.engine import (
    InvokeRequest,
    PeerLost,
    PeerSeen,
    SyncEngine,
    SyncOptions,
    run_seq_base,
)
from ..sync.link import Link, Send
from ..transport.base import Transport
from ..transport.dashboard import attach_dashboard
from ..transport.http import Access, PeerInfo, build_app
from ..transport.mqtt import MqttOptions, MqttTransport
from ..transport.udp import MulticastOptions, UdpMulticastTransport
from ..transport.ws import WsLinkTransport
from ..transport.yws import YjsRooms
from .access import AccessPolicy, Tokens, check_secret_file, read_secret, token_of
from .config import PeerConfig
from .devices import Devices
from .executor import ChainExecutor, ChainResult
from .hardware.gpio import open_backend
from .processors.base import Processor
from .processors.registry import make_registry
from .processors.structural import STATUS_PERIOD, status_changes
from .webhooks import webhook_routes

__all__ = ["LOCAL_TRANSPORTS", "Peer"]

log = logging.getLogger("krill.runtime")

#: Origins whose updates this peer sends to the swarm as its own: its API and processors,
#: the orphan rule, and clients attached to it (browsers on /ws, scripts on /sync).
LOCAL_TRANSPORTS = frozenset({"local", "sweep", "ws-client", "http"})

#: How long the peer with the larger id waits for the smaller one to dial before dialing
#: itself (simultaneous dials are resolved by the link transport, but one dial is cheaper).
DIAL_GRACE = 2.0

#: Timeout for the one request that learns a static peer's id from its /health.
STATIC_PEER_TIMEOUT = 5.0

PEER_ID_FILE = "peer.id"
#: How many times this peer has started: it numbers each run's frames above the last's.
RUN_FILE = "runs"
SWARM_KEY_FILE = "swarm.key"


def swarm_number(name: str) -> int:
    """The 32-bit swarm id carried in frames, derived from the swarm's name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big")


def _read_or_create(path: Path, size: int) -> bytes:
    if path.exists():
        data = path.read_bytes()
        if len(data) != size and path.name == PEER_ID_FILE:
            raise ValidationError("peer.data_dir", f"{path} must hold {size} bytes")
        return data
    data = secrets.token_bytes(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return data


def _next_run(path: Path) -> int:
    """Count one more start in ``path`` (written atomically) and return the new count."""
    try:
        run = int(path.read_text().strip() or "0") + 1
    except FileNotFoundError:
        run = 1
    except ValueError:
        raise ValidationError("peer.data_dir", f"{path} must hold a whole number") from None
    scratch = path.with_suffix(".tmp")
    scratch.write_text(f"{run}\n")
    with scratch.open("rb") as handle:
        os.fsync(handle.fileno())
    scratch.replace(path)
    return run


def _mqtt_options(cfg: PeerConfig) -> MqttOptions:
    mqtt = cfg.mqtt
    assert mqtt.url is not None
    password = None
    if mqtt.password_file is not None:
        password = read_secret(mqtt.password_file, "mqtt.password_file", "MQTT password file")
    return MqttOptions(
        url=mqtt.url,
        username=mqtt.username,
        password=password,
        tls_ca=str(mqtt.tls_ca) if mqtt.tls_ca is not None else None,
    )


def _read_key(path: Path) -> bytes:
    """Read a swarm key file: 64 hex digits (as ``krill keygen`` writes) or 32 raw bytes.

    Raises:
        ValidationError: unreadable or neither form; the message never shows the key.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError(
            "peer.swarm_key_file", f"cannot read {path}: {exc.strerror or exc}"
        ) from None
    text = data.strip()
    if len(text) == 64:
        with contextlib.suppress(ValueError):
            return bytes.fromhex(text.decode("ascii", "replace"))
    if len(data) == 32:
        return data
    raise ValidationError(
        "peer.swarm_key_file",
        f"{path} must hold 64 hex digits (krill keygen writes one) or 32 raw bytes",
    )


def _tls_contexts(cfg: PeerConfig) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The server's TLS context (None for plain HTTP) and the one links verify peers with.

    Raises:
        ValidationError: a certificate, key or CA file cannot be loaded (named by its key).
    """
    http = cfg.http
    server = None
    if http.tls_cert is not None and http.tls_key is not None:
        check_secret_file(http.tls_key, "TLS key file")
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            server.load_cert_chain(http.tls_cert, http.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ValidationError(
                "http.tls_cert", f"cannot load {http.tls_cert} with its key: {exc}"
            ) from None
    client = None
    if http.tls_ca is not None:
        try:
            client = ssl.create_default_context(cafile=str(http.tls_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ValidationError("http.tls_ca", f"cannot load {http.tls_ca}: {exc}") from None
    return server, client


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


#: Routes open without a token: the health check, the dashboard's files (it asks for a token
#: itself), the peer link (its hello is MAC'd with the swarm key), webhooks (each node has its
#: own token) and ``/ws/{doc}`` (checked per doc by the rooms, which close with 4401).
_OPEN_PREFIXES = ("/ws/", "/hooks/", "/static/")
_OPEN_PATHS = frozenset({"/health", "/", "/index.html", "/favicon.ico"})


class _ProcessorHost:
    """The services a running peer offers its processors."""

    __slots__ = ("_later", "_peer")

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        #: Node id -> the timer of the chain run waiting for it (see invoke_later).
        self._later: dict[str, asyncio.TimerHandle] = {}

    @staticmethod
    def cancel_later(executor: ChainExecutor | None) -> None:
        """Drop every chain run still waiting in the host of ``executor``; the peer stops."""
        host = None if executor is None else executor.host
        if isinstance(host, _ProcessorHost):
            for handle in host._later.values():
                handle.cancel()
            host._later.clear()

    def invoke_later(self, node_id: str, value: Any, delay: float) -> None:
        # One timer per waiting node, no task until it is due: a data point that debounces a
        # chattering input costs a timer reset per sample.
        waiting = self._later.pop(node_id, None)
        if waiting is not None:
            waiting.cancel()
        loop = asyncio.get_running_loop()
        self._later[node_id] = loop.call_later(delay, self._due, node_id, value)

    def _due(self, node_id: str, value: Any) -> None:
        self._later.pop(node_id, None)
        # A task of the peer's, so stopping the peer cancels a chain still running.
        self._peer._spawn(self._invoke(node_id, value))

    async def _invoke(self, node_id: str, value: Any) -> None:
        try:
            await self._peer.invoke(node_id, value)
        except (KrillError, TimeoutError) as exc:
            log.warning("host %s: delayed run of node %s failed: %s", self._peer.host, node_id, exc)

    def get(self, node_id: str) -> Node:
        return self._peer.get(node_id)

    async def update(self, node_id: str, changes: Mapping[str, Any]) -> Node:
        return await self._peer.update(node_id, changes)

    def children(self, node_id: str) -> list[Node]:
        return self._peer.children(node_id)

    def now(self) -> float:
        return time.time()

    def resource(self, name: str) -> Any:
        return self._peer.resources[name]


class Peer:
    """One krill peer: ``async with Peer(config) as peer``.

    Reusable but not re-entrant: entering a running peer again raises :class:`KrillError`;
    after it stopped it may be started again.
    """

    def __init__(
        self,
        config: PeerConfig | None = None,
        *,
        processors: Mapping[NodeType, Processor] | None = None,
    ) -> None:
        self.config = config or PeerConfig()
        self.host = self.config.peer.name
        self.metrics = Metrics()
        self._running = False
        self._store: Store | None = None
        self._engine: SyncEngine | None = None
        self._transports: dict[str, Transport] = {}
        self._ws: WsLinkTransport | None = None
        self._runner: web.AppRunner | None = None
        self._driver: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._flush_scheduled = False
        self._dials: dict[bytes, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.id = b""
        self.url = ""
        #: Who may read and write which host doc (``[access]``, ``http.token_file``).
        self.access = AccessPolicy(self.config.access, own_peer=b"")
        self._client_tls: ssl.SSLContext | None = None
        self._executor: ChainExecutor | None = None
        #: The processor of each node type (custom ones may replace the built-in ones).
        self._processors: dict[NodeType, Processor] = {**make_registry(), **(processors or {})}
        self._devices: Devices | None = None
        self._http: aiohttp.ClientSession | None = None
        #: Shared services processors use by name (see ProcessorHost.resource).
        self.resources: dict[str, Any] = {}

    # --------------------------------------------------------------------------- lifecycle

    async def start(self) -> Peer:
        """Open the store, start the transports and the HTTP server, join the swarm.

        Raises:
            KrillError: already running, or a part failed to start (what started is stopped).
        """
        if self._running:
            raise KrillError("this Peer is already running; a Peer is not re-entrant")
        self._running = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        cfg = self.config
        data_dir = cfg.peer.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)

        # Step 1: identity and secrets.
        key = self._open_secrets(data_dir)
        server_tls, client_tls = _tls_contexts(cfg)
        self._client_tls = client_tls

        run = _next_run(data_dir / RUN_FILE)

        # Step 2: the store, with this peer's own host doc and its server node.
        self._store = store = await Store(data_dir).open()
        own = store.doc(self.host, create=True)
        if self.host not in own:
            await store.create(
                Node.new(NodeType.Server, host=self.host, id=self.host, name=self.host)
            )

        # Step 3: the engine and the transports.
        transports: dict[str, bool] = {"ws": False}
        if cfg.discovery.multicast:
            transports["udp"] = True
        if cfg.mqtt.url:
            transports["mqtt"] = True
        now = time.time()
        self._engine = engine = SyncEngine(
            self.id,
            key=key,
            swarm=swarm_number(cfg.peer.swarm),
            docs=StoreDocs(store),
            now=now,
            follow=cfg.peer.follow or None,
            transports=transports,
            options=SyncOptions(),
            metrics=self.metrics,
            first_seq=run_seq_base(run),
            served=(self.host,),
            authorize=self.access.peer_may,
        )
        self._executor = ChainExecutor(
            own, _ProcessorHost(self), self._processors, metrics=self.metrics
        )
        gpio = open_backend(cfg.gpio.backend)
        self._http = aiohttp.ClientSession()
        self._devices = Devices(own, gpio, self._processors, self.invoke, resources=self.resources)
        self.resources.update(series=store.series, http=self._http, gpio=gpio, serial=self._devices)
        for doc in store.docs().values():
            self._watch(doc)
        store.on_new_doc(self._watch)

        self._ws = WsLinkTransport(
            self.id,
            hello=lambda challenge: engine.hello(time.time(), challenge),
            identify=engine.identify,
            metrics=self.metrics,
            on_link=self._on_link,
            ssl_context=client_tls,
        )
        self._transports["ws"] = self._ws
        if cfg.discovery.multicast:
            d = cfg.discovery
            self._transports["udp"] = UdpMulticastTransport(
                MulticastOptions(group=d.group, port=d.port, interface=d.interface),
                metrics=self.metrics,
            )

        if cfg.mqtt.url:
            self._transports["mqtt"] = MqttTransport(
                _mqtt_options(cfg),
                swarm=cfg.peer.swarm,
                peer_id=self.id,
                metrics=self.metrics,
                on_connected=self._on_broker_connected,
            )
            # MqttBridge nodes publish and subscribe on the swarm's own broker session.
            self.resources["mqtt"] = self._transports["mqtt"]

        # Step 4: the HTTP server: REST API, /sync, /ws rooms, peer links.
        await self._serve_http(store, own, server_tls)
        engine.endpoints = (self.url,)

        for transport in self._transports.values():
            await transport.start(self._deliver)
        self._driver = asyncio.get_running_loop().create_task(self._drive())
        await self._devices.start()
        await self._start_status()
        for url in cfg.discovery.static_peers:
            self._spawn(self._dial_static(url))
        log.info("peer %s (id %s) up at %s", self.host, self.id.hex(), self.url)

    async def _serve_http(
        self, store: Store, own: HostDoc, server_tls: ssl.SSLContext | None
    ) -> None:
        """Mount every route on one application and start serving it; set :attr:`url`."""
        cfg = self.config
        access = self.access
        assert self._ws is not None
        app = build_app(
            store,
            info=self._info,
            metrics=self.metrics,
            own_host=self.host,
            invoke=self._invoke_over_http,
            authorize=self._authorize_request,
            authorize_doc=self._authorize_doc,
            allowed_origins=cfg.http.allowed_origins,
            loopback_only=_is_loopback(cfg.http.host),
        )
        YjsRooms(
            store.doc,
            metrics=self.metrics,
            authorize=lambda doc, token, write: (
                access.token_verdict(token, doc, write) is Access.ALLOW
            ),
        ).attach(app)
        attach_dashboard(app)
        app.router.add_routes(webhook_routes(lambda: own, self.invoke))
        self._ws.attach(app)
        # Idle keep-alive connections are closed after 15 s rather than aiohttp's 75.
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=15.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.http.host, cfg.http.port, ssl_context=server_tls)
        await site.start()
        port = self._bound_port() or cfg.http.port
        advertised = cfg.discovery.interface if cfg.http.host in ("0.0.0.0", "") else cfg.http.host
        scheme = "https" if server_tls is not None else "http"
        self.url = f"{scheme}://{advertised}:{port}"

    def _open_secrets(self, data_dir: Path) -> bytes:
        """Read (or make) the peer id and swarm key, load the tokens; return the swarm key."""
        cfg = self.config
        self.id = _read_or_create(data_dir / PEER_ID_FILE, 16)
        key_path = cfg.peer.swarm_key_file or data_dir / SWARM_KEY_FILE
        check_secret_file(key_path, "swarm key file")
        key = (
            _read_or_create(key_path, 32)
            if cfg.peer.swarm_key_file is None
            else _read_key(key_path)
        )
        tokens = Tokens.load(cfg.http.token_file) if cfg.http.token_file is not None else None
        self.access = AccessPolicy(cfg.access, own_peer=self.id, tokens=tokens)
        return key

    async def stop(self) -> None:
        """Leave the swarm and close everything; idempotent."""
        if not self._running:
            return
        self._running = False
        _ProcessorHost.cancel_later(self._executor)
        for handle in self._dials.values():
            handle.cancel()
        self._dials.clear()
        if self._driver is not None:
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)
            self._driver = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._devices is not None:
            await self._devices.stop()
            self._devices = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        self.resources.clear()
        for transport in self._transports.values():
            await transport.stop()
        self._transports.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._store is not None:
            await self._store.close()
            self._store = None
        self._engine = None

    async def __aenter__(self) -> Peer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------- API

    @property
    def store(self) -> Store:
        if self._store is None:
            raise StoreClosedError("the peer is not running")
        return self._store

    @property
    def engine(self) -> SyncEngine:
        if self._engine is None:
            raise StoreClosedError("the peer is not running")
        return self._engine

    async def create(self, node: Node) -> Node:
        """Create a node (durably) and send it to the swarm.

        Raises:
            AccessDeniedError: the access lists do not let this peer write the node's host doc.
        """
        store = self.store
        self._check_write(node.host)
        return await store.create(node)

    async def update(self, node_id: str, changes: Mapping[str, Any]) -> Node:
        """Partially update a node wherever it lives (durably) and send the change.

        Raises:
            AccessDeniedError: the access lists do not let this peer write the node's host doc.
        """
        store = self.store
        self._check_write(store.host_of(node_id))
        return await store.update(node_id, changes)

    async def delete(self, node_id: str) -> list[str]:
        """Delete a node and its subtree; return the removed ids.

        Raises:
            AccessDeniedError: the access lists do not let this peer write the node's host doc.
        """
        store = self.store
        self._check_write(store.host_of(node_id))
        return await store.delete(node_id)

    def _check_write(self, doc: str) -> None:
        # The swarm would refuse the write from this peer; making it here would leave this
        # peer's copy of the doc different from everyone else's for good.
        if not self.access.self_may(doc, True):
            raise AccessDeniedError(
                f"host doc {doc!r}: this peer ({self.id.hex()}) may only read it ([access] write)"
            )

    def get(self, node_id: str) -> Node:
        """Return a node from whichever followed host doc holds it."""
        return self.store.get(node_id)

    def nodes(self, host: str | None = None) -> list[Node]:
        """Return every node (of one host doc, if given), sorted by host then id."""
        docs = self.store.docs()
        hosts = [host] if host is not None else sorted(docs)
        return [n for h in hosts if h in docs for n in docs[h].list_nodes()]

    def children(self, node_id: str) -> list[Node]:
        """Return the direct children of a node."""
        return self.store.doc(self.store.host_of(node_id)).children(node_id)

    async def invoke(self, node_id: str, value: Any = None) -> ChainResult | None:
        """Run a node's chain on the node's host.

        On this peer's own nodes the chain runs here and its result is returned. A node of
        another host is sent there as an INVOKE request and None is returned at once; the
        results reach everyone as ordinary writes.

        Raises:
            NodeNotFoundError: no followed host doc holds the node.
            PlanError: the chain cannot be planned (on this host).
        """
        host = self.store.host_of(node_id)
        if host == self.host:
            assert self._executor is not None
            return await self._executor.invoke(node_id, value)
        payload = orjson.dumps({"node": node_id, "value": value})
        self.engine.invoke(host, payload, time.time())
        self._dispatch()
        return None

    async def _invoke_over_http(self, node_id: str) -> dict[str, Any]:
        result = await self.invoke(node_id)
        if result is None:
            return {"node": node_id, "routed_to": self.store.host_of(node_id)}
        return {
            "node": node_id,
            "ran": result.ran,
            "errors": result.errors,
            "skipped": result.skipped,
        }

    async def _run_requested(self, event: InvokeRequest) -> None:
        try:
            request = orjson.loads(event.payload)
            node_id = str(request["node"])
            assert self._executor is not None
            await self._executor.invoke(node_id, request.get("value"))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("invoke request from %s is malformed: %s", event.peer.hex()[:8], exc)
        except KrillError as exc:
            log.warning("invoke request from %s failed: %s", event.peer.hex()[:8], exc)

    def watch(self, host: str | None = None) -> ChangeStream:
        """Return a stream of changes of one host doc (this peer's own by default)."""
        return self.store.doc(host or self.host, create=True).changes()

    # -------------------------------------------------------------------------- plumbing

    def _watch(self, doc: HostDoc) -> None:
        host = doc.host

        def on_update(update: bytes, origin: Origin) -> None:
            engine = self._engine
            if engine is None:
                return
            if origin.transport in LOCAL_TRANSPORTS:
                engine.local_update(host, update, time.time())
                self._schedule_flush()
            else:
                engine.doc_changed(host)

        doc.on_update(on_update)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._engine is not None:
            self._engine.flush(time.time())
            self._dispatch()
            self._wake.set()

    def _on_broker_connected(self) -> None:
        # Whatever was published while we were away is lost to us: compare digests now.
        if self._engine is not None:
            self._engine.resync(time.time())
            self._wake.set()

    def _deliver(self, data: bytes, link: Link) -> None:
        engine = self._engine
        if engine is None:
            return
        engine.receive(data, link, time.time())
        self._dispatch()

    def _on_link(self, peer: bytes, up: bool) -> None:
        engine = self._engine
        if engine is None:
            return
        link = Link("ws", peer)
        if up:
            engine.link_up(link, time.time())
        else:
            engine.link_down(link, time.time())
        self._dispatch()

    def _dispatch(self) -> None:
        engine = self._engine
        if engine is None:
            return
        sends, events = engine.drain()
        for send in sends:
            self._send(send)
        for event in events:
            if isinstance(event, PeerSeen):
                self._on_peer_seen(event)
            elif isinstance(event, PeerLost):
                self._cancel_dial(event.peer)
            elif isinstance(event, InvokeRequest):
                self._spawn(self._run_requested(event))

    def _send(self, send: Send) -> None:
        transport = self._transports.get(send.link.transport)
        if transport is None:
            self.metrics.frames_dropped.labels(send.link.transport).inc()
            return
        transport.send(send)

    def _on_peer_seen(self, event: PeerSeen) -> None:
        if self._ws is None or not event.endpoints or not self.config.discovery.peer_links:
            return
        url = self._link_url(event.endpoints[0])
        self._cancel_dial(event.peer)
        # New endpoints mean the peer restarted or moved: a dialer still backing off toward
        # the old address would only delay the new link.
        if event.peer in self._ws.dialing() and event.peer not in self._ws.links():
            self._ws.forget(event.peer)
        if self.id < event.peer:
            self._ws.dial(event.peer, url)
            return
        # The smaller id dials; dial ourselves only if it has not after a grace period
        # (it may be unable to reach us).
        loop = asyncio.get_running_loop()
        self._dials[event.peer] = loop.call_later(DIAL_GRACE, self._late_dial, event.peer, url)

    def _link_url(self, endpoint: str) -> str:
        """The peer-link WebSocket URL behind an advertised HTTP endpoint."""
        assert self._ws is not None
        base = endpoint.rstrip("/")
        scheme, _, rest = base.partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{self._ws.options.path}"

    def _late_dial(self, peer: bytes, url: str) -> None:
        self._dials.pop(peer, None)
        if self._ws is not None and peer not in self._ws.links():
            self._ws.dial(peer, url)

    def _cancel_dial(self, peer: bytes) -> None:
        handle = self._dials.pop(peer, None)
        if handle is not None:
            handle.cancel()

    async def _dial_static(self, url: str) -> None:
        timeout = aiohttp.ClientTimeout(total=STATIC_PEER_TIMEOUT)
        delay = 1.0
        while self._running:
            try:
                connector = aiohttp.TCPConnector(ssl=self._client_tls or True)
                async with (
                    aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
                    session.get(f"{url.rstrip('/')}/health") as response,
                ):
                    info = await response.json()
                peer = bytes.fromhex(info["peer"])
                if self._ws is not None and peer != self.id:
                    self._ws.dial(peer, self._link_url(url))
                return
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
                log.warning("static peer %s not reachable yet: %s", url, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _drive(self) -> None:
        engine = self._engine
        assert engine is not None
        while True:
            now = time.time()
            engine.tick(now)
            engine.flush(now)
            self._dispatch()
            if self._store is not None:
                # One log file holds every host doc; its size is reported under doc="*".
                self.metrics.store_bytes.labels("*").set(self._store.log.file_bytes())
            wait = max(0.0, min(engine.next_deadline() - time.time(), 1.0))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _bound_port(self) -> int | None:
        if self._runner is None:
            return None
        for site in self._runner.sites:
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            for sock in sockets:
                return int(sock.getsockname()[1])
        return None

    def _request_token(self, request: web.Request) -> str | None:
        query = request.query.get("token") if request.method == "GET" else None
        return token_of(request.headers.get("Authorization"), query)

    def _authorize_request(self, request: web.Request, write: bool) -> Access:
        path = request.path
        if path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES):
            return Access.ALLOW
        if self._ws is not None and path == self._ws.options.path:
            return Access.ALLOW
        return self.access.token_verdict(self._request_token(request), None, write)

    def _authorize_doc(self, request: web.Request, doc: str, write: bool) -> Access:
        return self.access.token_verdict(self._request_token(request), doc, write)

    def _info(self) -> PeerInfo:
        engine = self._engine
        return PeerInfo(
            peer=self.id.hex(),
            name=self.host,
            version=__version__,
            follows=sorted(self._store.hosts()) if self._store else [],
            peers=sorted(p.hex() for p in engine.peers()) if engine else [],
        )

    # ------------------------------------------------------------------ structural status

    #: Seconds between two status writes of this host's structural nodes.
    status_period: float = STATUS_PERIOD

    async def _start_status(self) -> None:
        """Write the status of this host's structural nodes before the peer counts as up,
        then keep it current every status period."""
        started_at = time.time()
        await self._write_status(started_at)
        self._spawn(self._keep_status(started_at))

    async def _keep_status(self, started_at: float) -> None:
        while True:
            await asyncio.sleep(self.status_period)
            try:
                await self._write_status(started_at)
            except KrillError as exc:
                log.warning("host doc %s: status not written: %s", self.host, exc)

    async def _write_status(self, started_at: float) -> None:
        """Write what changed in the status of this host's structural nodes."""
        store = self.store
        own = store.doc(self.host)
        engine = self._engine
        heard = {peer.hex(): at for peer, at in engine.peers().items()} if engine else {}
        writes = status_changes(
            own.list_nodes(),
            host=self.host,
            started_at=started_at,
            now=time.time(),
            peers_seen=heard,
            errors=own.errors.to_py() or {},
        )
        for node_id, (state, message) in writes.states.items():
            own.set_error(node_id, state, message)
        # NOTE: meta is one field of a node, so a status write racing another peer's edit of
        # NOTE: the same node's meta keeps only one of the two (the later); the edit wins again
        # NOTE: once made after the write. Writes come once a status period and only on change.
        updates = [Update(node_id, {"meta": meta}) for node_id, meta in writes.meta.items()]
        if updates:
            await store.batch(self.host, updates)
