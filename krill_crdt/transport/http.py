"""The HTTP API of a peer: the REST JSON routes for people and scripts, and binary ``/sync``.

:class:`HttpApi` builds an :class:`aiohttp.web.Application` over a :class:`~krill_crdt.store.Store`.
It mounts only the routes of this module (``docs/http.md`` lists them); the runtime adds the
WebSocket routes and the dashboard to the same application. The work that belongs to other
layers comes in as hooks:

* ``info`` returns the :class:`PeerInfo` shown by ``GET /health``;
* ``invoke`` runs a node's chain on its host (``POST /node/{id}/invoke``);
* ``on_sync_update`` takes a binary update posted to ``/sync/{doc}``; by default it is applied
  to the store, tagged ``Origin("http", "http")``;
* ``authorize`` decides, for every matched route (also routes mounted later on the same
  application), whether a request may read or write; ``authorize_doc`` then decides per host
  doc for the routes that name a node (the doc is the node's host) or list nodes and changes
  (docs the caller may not read are left out).

Browsers: a request whose ``Origin`` is neither this server's own nor one of
``allowed_origins`` may not write, open a WebSocket or an event stream (403); allowed origins
get CORS headers and answered pre-flights, others none, so their pages cannot read answers
either. With ``loopback_only`` the ``Host`` header must name a loopback address, so a web page
whose domain was re-pointed at 127.0.0.1 (DNS rebinding) gets nothing from a local peer.

Every error is a JSON object ``{"error": "..."}`` whose message says what was wrong, with a
4xx status (5xx only for faults of this peer), including aiohttp's own errors for an unknown
route (404) or method (405). Refused input is counted in ``krill_frames_rejected_total`` with
transport ``http`` and logged at info once per client address, then at debug; the log names
method, path and reason, never the body, the query string or a header (a token may be in any
of them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import inspect
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import orjson
from aiohttp import web
from prometheus_client import generate_latest

from .. import __version__
from ..errors import (
    ChangeStreamOverflowError,
    KrillError,
    NodeExistsError,
    NodeNotFoundError,
    PlanError,
    StoreClosedError,
    StoreError,
    UpdateRejectedError,
    ValidationError,
)
from ..metrics import Metrics
from ..model import FIELDS, SCHEMA, Node, NodeState, NodeType, check_host_id, check_id
from ..store import Change, ChangeStream, HostDoc, Origin, Store
from ..store.hostdoc import trial_apply
from .limits import RateLimit, SourceLimits

__all__ = [
    "DEFAULT_EVENTS_BUFFER",
    "DEFAULT_HEARTBEAT_S",
    "HTTP_ORIGIN",
    "MAX_NODE_BODY_BYTES",
    "MAX_SERIES_LIMIT",
    "MAX_SYNC_BODY_BYTES",
    "METRICS_CONTENT_TYPE",
    "Access",
    "Authorize",
    "DocAuthorize",
    "HttpApi",
    "HttpOptions",
    "Invoke",
    "PeerInfo",
    "SyncUpdateHook",
    "build_app",
]

log = logging.getLogger("krill.transport.http")

#: Largest JSON body of ``POST /node/{id}``. The largest node the model can build (two full
#: chain lists of 128-character ids, maximal texts) is under 400 KiB of JSON, so every valid
#: node fits; a bigger body cannot be a valid node and is refused before it is read.
MAX_NODE_BODY_BYTES: Final = 512 * 1024

#: Largest binary body of ``POST /sync/{doc}``. A whole host doc of 100k nodes encodes to
#: about 31.5 MB, so a peer catching up from nothing with one update still fits, with room to
#: spare; the bound caps what one upload can make this peer hold in memory.
# NOTE: an accepted body is held in memory whole before it is applied (pycrdt takes one
# buffer). Several large uploads at once add up, which matters only on the smallest hosts.
MAX_SYNC_BODY_BYTES: Final = 48 * 1024 * 1024

#: Seconds between SSE heartbeat comments on an idle ``/events`` stream. Reverse proxies
#: commonly drop idle connections after 30 to 60 s; half of the shorter keeps the stream open.
DEFAULT_HEARTBEAT_S: Final = 15.0

#: Change events an ``/events`` client may fall behind by before its stream is ended with an
#: ``overflow`` event. A catch-up sync of a few hundred nodes fits; a stalled dashboard cannot
#: hold more than this many small JSON objects in memory.
DEFAULT_EVENTS_BUFFER: Final = 1_000

#: Seconds an ``/events`` write may stay blocked on a client that does not read before the
#: connection is dropped; without a bound a stalled client would pin its handler forever.
DEFAULT_EVENTS_WRITE_TIMEOUT_S: Final = 30.0

#: Samples ``GET /node/{id}/series`` returns when no ``limit`` is given, and the most it
#: returns at all: the retention of a series is 100k samples per node, so the maximum pages a
#: whole series in one answer (a few MB of JSON), while the default keeps a plain request small.
DEFAULT_SERIES_LIMIT: Final = 10_000
MAX_SERIES_LIMIT: Final = 100_000

#: The Prometheus text exposition format this route speaks (what ``generate_latest`` writes).
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: Origin of updates posted to ``/sync/{doc}`` when the default hook applies them.
HTTP_ORIGIN: Final = Origin("http", "http")

#: Methods that change something: they are authorized with ``write=True``.
_WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: Client addresses whose first refused request was logged at info; later ones go to debug.
#: Bounded so a scan from many addresses cannot grow it without limit.
_MAX_LOGGED_SOURCES: Final = 4096

#: Longest echo of a client's value in an error message: enough to recognise it, while a
#: megabyte-long value is not sent back whole.
_MAX_SHOWN_CHARS: Final = 80

_JSON: Final = "application/json"
_BINARY: Final = "application/octet-stream"

# NOTE: a request aiohttp's parser cannot read at all (a broken request line or header) is
# answered by aiohttp itself, before any middleware runs, as a plain-text 400.


# ----------------------------------------------------------------------------- public types


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What ``GET /health`` shows about this peer.

    Attributes:
        peer: the peer id, in hex.
        name: the peer's name.
        version: the krill_crdt release.
        follows: the host docs this peer follows.
        peers: ids (hex) of the peers seen so far.
    """

    peer: str
    name: str
    version: str = __version__
    follows: Sequence[str] = ()
    peers: Sequence[str] = ()

    def to_json(self) -> dict[str, object]:
        """Return the JSON object of ``GET /health``.

        Returns:
            ``peer, name, version, follows`` (a list) and ``peers`` (a list).
        """
        return {
            "peer": self.peer,
            "name": self.name,
            "version": self.version,
            "follows": list(self.follows),
            "peers": list(self.peers),
        }


class Access(enum.Enum):
    """The verdict of an ``authorize`` hook."""

    #: Go ahead.
    ALLOW = "allow"
    #: No usable credentials: answered 401, with ``WWW-Authenticate: Bearer``.
    UNAUTHENTICATED = "unauthenticated"
    #: Known credentials without the right (a read-only token on a write): answered 403.
    FORBIDDEN = "forbidden"


#: ``authorize(request, write)``: may this request read (``write=False``) or write? ``True``
#: means :attr:`Access.ALLOW`, ``False`` means :attr:`Access.UNAUTHENTICATED`. May be async.
Authorize = Callable[[web.Request, bool], Access | bool | Awaitable[Access | bool]]

#: ``authorize_doc(request, doc, write)``: may this request read or write host doc ``doc``?
#: Asked after ``authorize`` allowed the route; same verdicts.
DocAuthorize = Callable[[web.Request, str, bool], Access | bool]

#: ``invoke(node_id)``: run the node's chain on its host and return a JSON-able result.
Invoke = Callable[[str], Awaitable[dict[str, Any]]]

#: ``on_sync_update(doc, update)``: take a binary Yjs update posted for a host doc. Raises
#: :class:`~krill_crdt.errors.UpdateRejectedError` (answered 400) when the update is refused.
SyncUpdateHook = Callable[[str, bytes], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Limits and timings of the HTTP API; the defaults are the module constants.

    Raises:
        ValueError: on construction, when a limit or a period is not positive.
    """

    max_node_body: int = MAX_NODE_BODY_BYTES
    max_sync_body: int = MAX_SYNC_BODY_BYTES
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    events_buffer: int = DEFAULT_EVENTS_BUFFER
    events_write_timeout_s: float = DEFAULT_EVENTS_WRITE_TIMEOUT_S
    series_default_limit: int = DEFAULT_SERIES_LIMIT
    series_max_limit: int = MAX_SERIES_LIMIT
    #: Requests per second from one client address on average; more are answered 429.
    request_rate: float = 200.0
    #: Requests one client address may make at once above that rate.
    request_burst: float = 400.0
    #: Longest time a request body may take to arrive; a slower one is answered 408.
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_node_body", "max_sync_body", "events_buffer", "series_max_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int of at least 1, got {value!r}")
        for name in (
            "heartbeat_s",
            "events_write_timeout_s",
            "request_rate",
            "request_burst",
            "body_timeout_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not 0 <= self.series_default_limit <= self.series_max_limit:
            raise ValueError(
                f"series_default_limit must be 0..{self.series_max_limit}, "
                f"got {self.series_default_limit!r}"
            )


# ------------------------------------------------------------------------------- errors


class _HttpError(Exception):
    """A request refused with a status and a message; ``reason`` labels the rejection metric.

    A ``reason`` of ``""`` is not counted: not every 4xx is bad input (an unknown node is not).
    """

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def _status_of(exc: KrillError) -> tuple[int, str]:
    """The HTTP status and rejection reason for an error of the krill family."""
    if isinstance(exc, ValidationError):
        return 400, "invalid"
    if isinstance(exc, UpdateRejectedError):
        return 400, "undecodable"
    if isinstance(exc, NodeNotFoundError):
        return 404, ""
    if isinstance(exc, NodeExistsError):
        return 409, ""
    if isinstance(exc, PlanError):
        return 409, ""
    if isinstance(exc, StoreError):
        # StoreClosedError included: the peer is shutting down or its disk failed.
        return 503, ""
    return 400, "invalid"


def _json(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=_JSON, headers=headers)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json({"error": message}, status, headers)


# --------------------------------------------------------------------------- the API


class HttpApi:
    """The REST JSON API and the binary ``/sync`` routes of one peer, as an aiohttp app.

    Args:
        store: the open store whose host docs the routes read and write.
        info: returns this peer's :class:`PeerInfo`; called on every ``GET /health``.
        metrics: where rejections and ``/sync`` traffic are counted; served by ``/metrics``.
        own_host: the host id of this peer's own host doc: a create whose body names no host
            goes there. ``""`` when the peer hosts no doc (a create must then name its host).
        invoke: runs a node's chain on its host; ``None`` answers 501 (not available here).
        on_sync_update: takes updates posted to ``/sync/{doc}``; ``None`` applies them to the
            store durably, tagged :data:`HTTP_ORIGIN`.
        authorize: decides every matched request; ``None`` allows everything.
        authorize_doc: decides per host doc; ``None`` allows every doc.
        allowed_origins: web origins besides the server's own whose pages may call the API.
        loopback_only: refuse requests whose ``Host`` header is not a loopback address.
        options: limits and timings.

    Example:
        >>> api = HttpApi(store, lambda: PeerInfo(peer="ab12", name="pi-1"), Metrics(),
        ...               own_host="pi-1")  # doctest: +SKIP
        >>> web.run_app(api.app, host="127.0.0.1", port=8442)  # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        info: Callable[[], PeerInfo],
        metrics: Metrics,
        *,
        own_host: str = "",
        invoke: Invoke | None = None,
        on_sync_update: SyncUpdateHook | None = None,
        authorize: Authorize | None = None,
        authorize_doc: DocAuthorize | None = None,
        allowed_origins: Iterable[str] = (),
        loopback_only: bool = False,
        options: HttpOptions | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.options = options or HttpOptions()
        self.own_host = own_host
        self._info = info
        self._invoke = invoke
        self._on_sync_update = on_sync_update or self._apply_sync_update
        self._authorize = authorize
        self._authorize_doc = authorize_doc
        self._allowed_origins = frozenset(o.lower() for o in allowed_origins)
        self._loopback_only = loopback_only
        self._limits = SourceLimits(
            RateLimit(self.options.request_rate, self.options.request_burst)
        )
        self._watchers: set[_DocWatcher] = set()
        self._closing = False
        self._logged_sources: set[str] = set()
        self.app = self._build()
        # One listener for the life of the store, fanned out to the open /events streams: the
        # store offers no way to remove a listener, so streams must not each add their own.
        store.on_new_doc(self._on_new_doc)

    def _build(self) -> web.Application:
        # The app-wide body limit is only a backstop for routes mounted later that call
        # request.read(); the routes here read through _read_body with their own limits.
        app = web.Application(
            middlewares=[self._middleware],
            client_max_size=max(self.options.max_node_body, self.options.max_sync_body),
        )
        app.router.add_get("/health", self._health)
        app.router.add_get("/nodes", self._list_nodes)
        app.router.add_get("/node/{id}", self._get_node)
        app.router.add_post("/node/{id}", self._put_node)
        app.router.add_delete("/node/{id}", self._delete_node)
        app.router.add_post("/node/{id}/invoke", self._invoke_node)
        app.router.add_get("/node/{id}/series", self._series)
        app.router.add_get("/sync/{doc}", self._sync_diff)
        app.router.add_post("/sync/{doc}", self._sync_update)
        app.router.add_get("/events", self._events)
        app.router.add_get("/metrics", self._metrics)
        app.on_shutdown.append(self._on_shutdown)
        return app

    # -------------------------------------------------------------------- middleware

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Authorize matched routes, and turn every failure into a JSON error response."""
        try:
            self._check_host(request)
            self._check_rate(request)
            origin = self._foreign_origin(request)
            if origin is not None and origin in self._allowed_origins:
                if request.method == "OPTIONS":
                    return _preflight(request, origin)
                response = await self._handle(request, handler)
                if not response.prepared:
                    response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
                    response.headers["Vary"] = "Origin"
                return response
            if origin is not None and _changes_or_streams(request):
                raise _HttpError(
                    403, f"requests from web origin {_brief(origin)} are not allowed", "origin"
                )
            return await self._handle(request, handler)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            if request.writer.output_size:
                raise
            return self._error_response(request, exc)

    async def _handle(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            if request.match_info.http_exception is None:
                await self._check_access(request)
            return await handler(request)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            if request.writer.output_size:
                # A streamed response (an event stream, a WebSocket) has already begun; a
                # second response cannot follow it, so aiohttp drops the connection instead.
                raise
            return self._error_response(request, exc)

    def _error_response(self, request: web.Request, exc: Exception) -> web.Response:
        if isinstance(exc, _HttpError):
            return self._refuse(request, exc.status, exc.message, exc.reason)
        if isinstance(exc, KrillError):
            status, reason = _status_of(exc)
            return self._refuse(request, status, str(exc), reason)
        if isinstance(exc, web.HTTPException):
            if exc.status < 400:
                raise exc
            return self._from_aiohttp(request, exc)
        log.error("%s %s failed", request.method, request.path, exc_info=exc)
        return _error(500, "internal error; the peer's log has the details")

    def _check_host(self, request: web.Request) -> None:
        if not self._loopback_only:
            return
        name = request.url.raw_host or ""
        if name.strip("[]").lower() not in _LOOPBACK_NAMES:
            raise _HttpError(
                403, f"host {_brief(name)} is not this peer: it answers to loopback names", "host"
            )

    def _check_rate(self, request: web.Request) -> None:
        if not self._limits.allow(request.remote or "?"):
            raise _HttpError(
                429,
                f"too many requests: at most {self.options.request_rate:g} a second per client",
                "rate",
            )

    def _foreign_origin(self, request: web.Request) -> str | None:
        """The request's web origin when it is not this server's own, else None."""
        origin = request.headers.get("Origin")
        if origin is None:
            return None  # not sent by a browser page (scripts, peers, same-origin GETs)
        origin = origin.lower()
        own = f"{request.scheme}://{request.host}".lower()
        if origin == own or origin == _default_port_origin(request.scheme, request.host):
            return None
        return origin

    async def check_doc(self, request: web.Request, doc: str, *, write: bool) -> None:
        """Raise a 401/403 error unless ``authorize_doc`` lets the request at ``doc``."""
        if self._authorize_doc is None:
            return
        verdict = self._authorize_doc(request, doc, write)
        if verdict is True or verdict is Access.ALLOW:
            return
        if verdict is Access.FORBIDDEN:
            what = "write" if write else "read"
            raise _HttpError(403, f"these credentials may not {what} host doc {doc!r}", "forbidden")
        raise _HttpError(401, "authentication required: send a valid token", "unauthenticated")

    def _readable(self, request: web.Request, doc: str) -> bool:
        if self._authorize_doc is None:
            return True
        verdict = self._authorize_doc(request, doc, False)
        return verdict is True or verdict is Access.ALLOW

    async def _check_access(self, request: web.Request) -> None:
        if self._authorize is None:
            return
        write = request.method in _WRITE_METHODS
        verdict = self._authorize(request, write)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is True or verdict is Access.ALLOW:
            return
        if verdict is Access.FORBIDDEN:
            what = "write" if write else "read"
            raise _HttpError(403, f"these credentials may not {what} here", "forbidden")
        raise _HttpError(401, "authentication required: send a valid token", "unauthenticated")

    def _refuse(self, request: web.Request, status: int, message: str, reason: str) -> web.Response:
        if reason:
            self.metrics.rejected("http", reason)
        self._log_refusal(request, status, reason or "refused")
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status == 429:
            headers = {"Retry-After": "1"}
        return _error(status, message, headers)

    def _from_aiohttp(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        # Keep aiohttp's headers that mean something (Allow on a 405); drop its text body.
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type",)}
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            message = f"method {request.method} is not allowed on {request.path}; use {allowed}"
        elif isinstance(exc, web.HTTPNotFound):
            message = f"no route {request.method} {request.path}"
        elif isinstance(exc, web.HTTPRequestEntityTooLarge):
            message = f"request body is too large: {exc.text}"
            self.metrics.rejected("http", "oversized")
        else:
            message = exc.text or exc.reason
        self._log_refusal(request, exc.status, exc.reason)
        return _error(exc.status, message, headers)

    def _log_refusal(self, request: web.Request, status: int, reason: str) -> None:
        # Path only, never the query string, a header or the body: any may carry a token.
        source = request.remote or "?"
        first = source not in self._logged_sources
        if first:
            if len(self._logged_sources) >= _MAX_LOGGED_SOURCES:
                self._logged_sources.clear()
            self._logged_sources.add(source)
        log.log(
            logging.INFO if first else logging.DEBUG,
            "%s %s from %s refused: %d %s",
            request.method,
            request.path,
            source,
            status,
            reason,
        )

    # ---------------------------------------------------------------------- reads

    async def _health(self, request: web.Request) -> web.Response:
        return _json(self._info().to_json())

    async def _list_nodes(self, request: web.Request) -> web.Response:
        node_type = _query_type(request)
        host = request.query.get("host")
        docs = [self.store.doc(host)] if host is not None else self._docs()
        if host is not None:
            await self.check_doc(request, host, write=False)
        docs = [doc for doc in docs if self._readable(request, doc.host)]
        nodes = [n.to_fields() for doc in docs for n in doc.list_nodes(type=node_type)]
        return _json(nodes)

    async def _get_node(self, request: web.Request) -> web.Response:
        node_id = request.match_info["id"]
        await self.check_doc(request, self.store.host_of(node_id), write=False)
        return _json(self._read_node(node_id).to_fields())

    async def _series(self, request: web.Request) -> web.Response:
        node_id = request.match_info["id"]
        await self.check_doc(request, self.store.host_of(node_id), write=False)
        since = _query_time(request, "since")
        until = _query_time(request, "until")
        if since is not None and until is not None and since > until:
            raise _HttpError(400, f"since: must not be after until ({until!r}), got {since!r}")
        limit = _query_limit(request, self.options)
        # The read is synchronous SQLite: a worker thread keeps a long range off the loop.
        samples = await asyncio.to_thread(self.store.series.range, node_id, since, until, limit)
        return _json([[ts, value] for ts, value in samples])

    def _docs(self) -> list[HostDoc]:
        docs = self.store.docs()
        return [docs[host] for host in sorted(docs)]

    def _read_node(self, node_id: str) -> Node:
        try:
            return self.store.get(node_id)
        except ValidationError as exc:
            # Not the client's fault: the stored node was written by a release this one
            # cannot read. It stays untouched for the peers that can.
            raise _HttpError(409, f"node {node_id!r} cannot be read by this peer: {exc}") from None

    # ---------------------------------------------------------------------- writes

    async def _put_node(self, request: web.Request) -> web.Response:
        node_id = request.match_info["id"]

        # Step 1: the body: a JSON object within the size limit.
        _require_content_type(request, _JSON)
        raw = await _read_body(
            request, self.options.max_node_body, "node JSON", self.options.body_timeout_s
        )
        body = _parse_object(raw)
        if "id" in body and body["id"] != node_id:
            raise ValidationError(
                "id", f"must match the id in the path ({node_id!r})", _brief(body["id"])
            )

        # Step 2: update if the id exists in any host doc, else create. Nothing is awaited
        # from this check until the write is made, so no other request can slip in between.
        try:
            host = self.store.host_of(node_id)
        except NodeNotFoundError:
            node = self._node_to_create(node_id, body)
            await self.check_doc(request, node.host, write=True)
            stored = await self.store.create(node)
            log.debug("node %s created in host doc %s over http", node_id, stored.host)
            return _json(stored.to_fields(), 201, {"Location": f"/node/{node_id}"})
        await self.check_doc(request, host, write=True)
        changes = self._changes_to_apply(self._read_node(node_id), body)
        if not changes:
            return _json(self._read_node(node_id).to_fields())
        stored = await self.store.update(node_id, changes)
        log.debug("node %s updated over http: %s", node_id, ", ".join(sorted(changes)))
        return _json(stored.to_fields())

    def _node_to_create(self, node_id: str, body: Mapping[str, Any]) -> Node:
        # The id in the path first: no other problem of the body matters if it is unusable.
        check_id("id", node_id)
        for key in body:
            if key not in FIELDS:
                raise ValidationError(key or '""', "is not a node field", node_id=node_id)
        for key in ("type", "parent"):
            if key not in body:
                rule = "is required to create a node" + (
                    " (null for a root)" if key == "parent" else ""
                )
                raise ValidationError(key, rule, node_id=node_id)
        if "schema" in body and body["schema"] != SCHEMA:
            raise ValidationError(
                "schema", f"must be {SCHEMA!r}, the schema this peer writes", _brief(body["schema"])
            )
        host = body.get("host", self.own_host)
        if host == "" and "host" not in body:
            raise ValidationError("host", "is required: this peer has no host doc of its own")
        fields: dict[str, Any] = dict(body)
        node = Node.new(
            fields["type"],
            host=host,
            parent=fields["parent"],
            name=fields.get("name", ""),
            meta=fields.get("meta"),
            state=fields.get("state", NodeState.NONE),
            id=node_id,
        )
        if node.host not in self.store.docs():
            # Store.create makes the host doc before it validates the node; trying the node on
            # a scratch doc first keeps a refused create from leaving an empty host doc behind.
            HostDoc(node.host).create(node)
        return node

    def _changes_to_apply(self, current: Node, body: Mapping[str, Any]) -> dict[str, Any]:
        fixed = {
            "id": current.id,
            "host": current.host,
            "type": current.type.value,
            "schema": current.schema,
        }
        changes: dict[str, Any] = {}
        for key, value in body.items():
            if key in fixed:
                # A whole node as read from GET may be posted back: fixed fields are accepted
                # when they are unchanged.
                if value != fixed[key]:
                    raise ValidationError(
                        key, "cannot be changed", _brief(value), node_id=current.id
                    )
            elif key != "updated":
                # ``updated`` is stamped by the host doc on every write.
                changes[key] = value
        return changes

    async def _delete_node(self, request: web.Request) -> web.Response:
        node_id = request.match_info["id"]
        await self.check_doc(request, self.store.host_of(node_id), write=True)
        removed = await self.store.delete(node_id)
        log.debug("node %s deleted over http with %d descendant(s)", node_id, len(removed) - 1)
        return _json({"removed": removed})

    async def _invoke_node(self, request: web.Request) -> web.Response:
        node_id = request.match_info["id"]
        await self.check_doc(request, self.store.host_of(node_id), write=True)
        if self._invoke is None:
            raise _HttpError(501, "execution is not available on this peer")
        result = await self._invoke(node_id)
        return _json(result)

    # ----------------------------------------------------------------------- sync

    async def _sync_diff(self, request: web.Request) -> web.Response:
        await self.check_doc(request, request.match_info["doc"], write=False)
        doc = self.store.doc(request.match_info["doc"])
        state_vector = _decode_sv(request.query.get("sv", ""))
        try:
            update = doc.diff(state_vector or None)
        except UpdateRejectedError:
            raise _HttpError(400, "sv: not a Yjs state vector", "bad_state_vector") from None
        self.metrics.sent("http", "diff")
        return web.Response(body=update, content_type=_BINARY)

    async def _sync_update(self, request: web.Request) -> web.Response:
        doc = request.match_info["doc"]
        try:
            check_host_id("doc", doc)
        except ValidationError as exc:
            raise _HttpError(400, str(exc), "invalid") from None
        await self.check_doc(request, doc, write=True)
        _require_content_type(request, _BINARY)
        update = await _read_body(
            request, self.options.max_sync_body, "update", self.options.body_timeout_s
        )
        result = self._on_sync_update(doc, update)
        if inspect.isawaitable(result):
            await result
        self.metrics.received("http", "update")
        log.debug("host doc %s: %d-byte update applied from http", doc, len(update))
        return web.Response(status=204)

    async def _apply_sync_update(self, doc: str, update: bytes) -> None:
        """The default ``on_sync_update``: apply to the store and wait until it is durable.

        Raises:
            UpdateRejectedError: the update cannot be decoded; no doc changes and no new host
                doc is made.
        """
        if doc not in self.store.docs():
            # Store.apply makes the host doc before decoding; a scratch decode first keeps a
            # refused update from leaving an empty host doc behind.
            trial_apply(update, f"host doc {doc!r}: update rejected")
        self.store.apply(doc, update, origin=HTTP_ORIGIN)
        await self.store.flush()

    # --------------------------------------------------------------------- events

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            raise _HttpError(503, "the peer is shutting down")
        watcher = _DocWatcher(
            self.options.events_buffer, lambda doc: self._readable(request, doc.host)
        )
        try:
            # Subscribed before the response starts: a client that has seen the first bytes
            # sees every later change. Host docs opened from now on are added by _on_new_doc.
            self._watchers.add(watcher)
            for doc in self.store.docs().values():
                watcher.watch(doc)
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
            await self._stream(request, response, watcher.feed)
        finally:
            self._watchers.discard(watcher)
            await watcher.close()
        return response

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, feed: _Feed
    ) -> None:
        heartbeat_s = self.options.heartbeat_s
        loop = asyncio.get_running_loop()
        write = _Writer(request, response, self.options.events_write_timeout_s)
        next_beat = loop.time() + heartbeat_s
        try:
            await write(b": krill change stream\n\n")
            while True:
                # Step 1: send what is queued.
                for item in feed.drain():
                    await write(b"event: change\ndata: " + orjson.dumps(item) + b"\n\n")
                if feed.overflowed:
                    message = {
                        "error": f"fell more than {self.options.events_buffer} events behind"
                    }
                    await write(b"event: overflow\ndata: " + orjson.dumps(message) + b"\n\n")
                    log.info("events client %s fell behind; stream ended", request.remote)
                    return
                if feed.closed:
                    return

                # Step 2: a heartbeat when the stream has been idle for the period.
                now = loop.time()
                if now >= next_beat:
                    await write(b": heartbeat\n\n")
                    next_beat = now + heartbeat_s
                    continue

                # Step 3: wait for an event or the next heartbeat, whichever comes first.
                await feed.wait(next_beat - now)
        except ConnectionError:
            log.debug("events client %s went away", request.remote)

    def _on_new_doc(self, doc: HostDoc) -> None:
        # Runs inside the store, before the first write to the new doc: a failure here must
        # not break that write.
        for watcher in list(self._watchers):
            try:
                watcher.watch(doc)
            except Exception:
                log.exception("host doc %s: cannot add it to an events stream", doc.host)

    async def _on_shutdown(self, app: web.Application) -> None:
        # End every open /events stream now, so shutdown does not wait out the server's
        # handler timeout on streams that would otherwise never finish.
        self._closing = True
        for watcher in list(self._watchers):
            watcher.feed.close()

    # --------------------------------------------------------------------- metrics

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def build_app(
    store: Store,
    info: Callable[[], PeerInfo],
    metrics: Metrics,
    *,
    own_host: str = "",
    invoke: Invoke | None = None,
    on_sync_update: SyncUpdateHook | None = None,
    authorize: Authorize | None = None,
    authorize_doc: DocAuthorize | None = None,
    allowed_origins: Iterable[str] = (),
    loopback_only: bool = False,
    options: HttpOptions | None = None,
) -> web.Application:
    """Build the aiohttp application of :class:`HttpApi` (same arguments).

    Returns:
        The application, with this module's routes and middleware mounted.
    """
    api = HttpApi(
        store,
        info,
        metrics,
        own_host=own_host,
        invoke=invoke,
        on_sync_update=on_sync_update,
        authorize=authorize,
        authorize_doc=authorize_doc,
        allowed_origins=allowed_origins,
        loopback_only=loopback_only,
        options=options,
    )
    return api.app


# ---------------------------------------------------------------------- request parsing


def _require_content_type(request: web.Request, wanted: str) -> None:
    if request.content_type != wanted:
        got = request.headers.get("Content-Type", "none")
        raise _HttpError(
            415, f"Content-Type must be {wanted}, got {_shown(got)}", "unsupported_media_type"
        )


async def _read_body(request: web.Request, limit: int, what: str, timeout: float) -> bytes:
    """Read the body, refusing it as soon as it is known to exceed ``limit`` bytes.

    Raises:
        _HttpError: 413 when a declared length or the bytes read so far exceed the limit;
            408 when the whole body takes longer than ``timeout`` seconds to arrive.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        _too_large(what, limit)

    async def collect() -> bytes:
        body = bytearray()
        while True:
            chunk = await request.content.readany()
            if not chunk:
                return bytes(body)
            if len(body) + len(chunk) > limit:
                _too_large(what, limit)
            body += chunk

    try:
        return await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise _HttpError(
            408, f"{what} body did not arrive within {timeout:g} s", "slow_body"
        ) from None


_LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def _default_port_origin(scheme: str, host: str) -> str:
    """The origin a browser sends for ``host`` when the port is the scheme's default."""
    default = ":443" if scheme == "https" else ":80"
    return f"{scheme}://{host.removesuffix(default)}".lower()


def _changes_or_streams(request: web.Request) -> bool:
    """Whether a request changes something or opens a long-lived channel."""
    if request.method in _WRITE_METHODS:
        return True
    return request.headers.get("Upgrade", "").lower() == "websocket" or request.path == "/events"


def _preflight(request: web.Request, origin: str) -> web.Response:
    """Answer a CORS pre-flight of an allowed origin."""
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": request.headers["Origin"],
            "Access-Control-Allow-Methods": "GET, POST, DELETE",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        },
    )


def _too_large(what: str, limit: int) -> NoReturn:
    raise _HttpError(413, f"{what} body must be at most {limit} bytes", "oversized")


def _parse_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _HttpError(400, f"body is not valid JSON: {exc}", "malformed_json") from None
    if not isinstance(body, dict):
        kind = "null" if body is None else type(body).__name__
        raise _HttpError(400, f"body must be a JSON object, got {kind}", "malformed_json")
    return body


def _query_type(request: web.Request) -> NodeType | None:
    value = request.query.get("type")
    if value is None:
        return None
    try:
        return NodeType(value)
    except ValueError:
        raise _HttpError(400, f"type: is not a known node type, got {_shown(value)}") from None


def _query_time(request: web.Request, name: str) -> float | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _HttpError(400, f"{name}: must be a Unix time in seconds, got {_shown(value)}")
    return number


def _query_limit(request: web.Request, options: HttpOptions) -> int:
    value = request.query.get("limit")
    if value is None or value == "":
        return options.series_default_limit
    top = options.series_max_limit
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if not 0 <= limit <= top:
        raise _HttpError(400, f"limit: must be a whole number 0..{top}, got {_shown(value)}")
    return limit


def _decode_sv(value: str) -> bytes:
    """Decode a base64 state vector from a query string; both alphabets, padding optional.

    Raises:
        _HttpError: 400 when it is not base64.
    """
    # A '+' sent without percent-encoding arrives as a space; put it back.
    text = value.strip().replace(" ", "+")
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _HttpError(400, "sv: not valid base64", "bad_state_vector") from None


def _shown(value: object) -> str:
    """A value for an error message, cut short: messages echo input only as much as needed."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_CHARS else text[: _MAX_SHOWN_CHARS - 3] + "..."


def _brief(value: object) -> object:
    """A value for :class:`ValidationError`'s ``got``: itself when short, else cut short.

    The error shows ``got`` with ``repr``, so a short value is passed as it is.
    """
    return value if len(repr(value)) <= _MAX_SHOWN_CHARS else _shown(value)


# ------------------------------------------------------------------------------ events


class _Feed:
    """The bounded queue of one ``/events`` client, fed by the change streams of every doc."""

    __slots__ = ("_capacity", "_items", "_wakeup", "closed", "overflowed")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: deque[dict[str, object]] = deque()
        self._wakeup = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def push(self, item: dict[str, object]) -> None:
        if self.closed or self.overflowed:
            return
        if len(self._items) >= self._capacity:
            self.overflowed = True
        else:
            self._items.append(item)
        self._wakeup.set()

    def overflow(self) -> None:
        self.overflowed = True
        self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    def drain(self) -> Iterable[dict[str, object]]:
        while self._items:
            yield self._items.popleft()

    async def wait(self, timeout: float) -> None:
        """Wait until something is pushed, the feed ends, or ``timeout`` seconds pass."""
        if self._items or self.overflowed or self.closed:
            return
        self._wakeup.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), max(timeout, 0.0))


def _change_json(change: Change) -> dict[str, object]:
    origin = change.origin
    return {
        "host": change.host,
        "id": change.node_id,
        "kind": change.kind.value,
        "fields": sorted(change.fields),
        "origin": {"peer": origin.peer, "transport": origin.transport},
    }


class _DocWatcher:
    """Feeds one ``/events`` client from the change streams of the host docs it watches."""

    def __init__(self, capacity: int, readable: Callable[[HostDoc], bool]) -> None:
        self.feed = _Feed(capacity)
        self._capacity = capacity
        self._readable = readable
        self._streams: dict[str, ChangeStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def watch(self, doc: HostDoc) -> None:
        """Start relaying the changes of ``doc``; a doc already watched or closed is skipped."""
        if doc.host in self._streams or not self._readable(doc):
            return
        try:
            stream = doc.changes(self._capacity)
        except StoreClosedError:
            return
        self._streams[doc.host] = stream
        task = asyncio.get_running_loop().create_task(self._pump(stream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self, stream: ChangeStream) -> None:
        try:
            async for change in stream:
                self.feed.push(_change_json(change))
        except ChangeStreamOverflowError:
            self.feed.overflow()

    async def close(self) -> None:
        """Close the streams and stop the pumps."""
        for stream in self._streams.values():
            stream.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Writer:
    """Writes to an event stream, dropping a client that stops reading for too long."""

    def __init__(self, request: web.Request, response: web.StreamResponse, timeout: float) -> None:
        self._request = request
        self._response = response
        self._timeout = timeout

    async def __call__(self, data: bytes) -> None:
        """Write ``data``.

        Raises:
            ConnectionError: the client went away, or did not read for ``timeout`` seconds
                (its connection is then aborted).
        """
        try:
            await asyncio.wait_for(self._response.write(data), self._timeout)
        except asyncio.TimeoutError:
            transport = self._request.transport
            if transport is not None:
                transport.abort()
            raise ConnectionResetError("events client stopped reading") from None
