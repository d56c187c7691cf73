"""The web dashboard: ``GET /`` and the static files it loads from ``GET /static/{name}``.

The dashboard is a plain page (HTML, one ES module, one style sheet) shipped inside the
package in ``transport/static/``. It needs no build step and loads nothing from outside the
peer, so it works on a LAN with no internet access. In the browser it talks only to the REST
API of the peer that served it (``/health``, ``/nodes``, ``/node/{id}``, ``/events``).

Only the files found in the static folder when the routes are built are served; a request
names one of them exactly, so no path a client sends can reach any other file. Unknown names
are answered with the API's JSON 404 (the HTTP API's middleware turns the error into JSON).

Example:
    >>> app = build_app(store, info, metrics)  # doctest: +SKIP
    >>> attach_dashboard(app)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["CONTENT_TYPES", "STATIC_PREFIX", "attach_dashboard", "dashboard_routes"]

log = logging.getLogger("krill.transport.dashboard")

#: Where the page's own files are served from; ``index.html`` refers to them by this path.
STATIC_PREFIX: Final = "/static/"

#: The content type of each file suffix the dashboard ships. Files with other suffixes are
#: not served at all: a stray file in the folder cannot be handed out with a guessed type.
CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

#: The page may run only its own script and style and talk only to the peer that served it;
#: inline SVG is built through the DOM, so no inline script or style is needed.
_CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: ``no-cache`` means "revalidate", not "do not store": after an upgrade of the peer the
#: browser picks up the new page and script instead of mixing old and new files.
_HEADERS: Final[Mapping[str, str]] = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": _CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
}

_INDEX: Final = "index.html"


@dataclass(frozen=True, slots=True)
class _StaticFile:
    body: bytes
    content_type: str


def _static_folder() -> Traversable:
    return resources.files("krill_crdt.transport").joinpath("static")


def _load_static(folder: Traversable) -> dict[str, _StaticFile]:
    """Read every servable file of ``folder`` (top level only) into memory.

    The files are a few tens of KB together; holding them saves a disk read per request and
    fixes the set of names that can ever be served.

    Returns:
        File name -> body and content type; empty when the folder is missing.
    """
    files: dict[str, _StaticFile] = {}
    if not folder.is_dir():
        log.warning("dashboard: static folder %s is missing; only 404s will be served", folder)
        return files
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2] if "." in entry.name else ""
        content_type = CONTENT_TYPES.get(suffix)
        if content_type is None or entry.name.startswith(".") or not entry.is_file():
            continue
        files[entry.name] = _StaticFile(entry.read_bytes(), content_type)
    return files


def _respond(file: _StaticFile) -> web.Response:
    return web.Response(body=file.body, headers={**_HEADERS, "Content-Type": file.content_type})


def dashboard_routes(folder: Traversable | None = None) -> list[web.RouteDef]:
    """Build the dashboard's routes: ``GET /`` (the page) and ``GET /static/{name}``.

    Args:
        folder: where the files are; the package's ``transport/static`` by default.

    Returns:
        The route definitions, for ``app.router.add_routes``. ``HEAD`` is answered too.
    """
    files = _load_static(folder if folder is not None else _static_folder())

    async def index(request: web.Request) -> web.Response:
        page = files.get(_INDEX)
        if page is None:
            raise web.HTTPNotFound(text="the dashboard is not installed on this peer")
        return _respond(page)

    async def static(request: web.Request) -> web.Response:
        # An exact lookup among the names read at start-up: "..", "%2e%2e%2f" or an absolute
        # path can only miss, never resolve to a file outside the folder.
        file = files.get(request.match_info["name"])
        if file is None:
            raise web.HTTPNotFound()
        return _respond(file)

    return [
        web.get("/", index, name="dashboard"),
        web.get(STATIC_PREFIX + "{name}", static, name="dashboard-static"),
    ]


def attach_dashboard(app: web.Application) -> None:
    """Mount the dashboard's routes on ``app`` (the peer's HTTP API application).

    Raises:
        RuntimeError: the application's router is already frozen (the app has started).
    """
    app.router.add_routes(dashboard_routes())
