"""Incoming webhooks: ``POST /hooks/...`` on a node's host invokes that IncomingWebHook node.

Each IncomingWebHook node answers on its ``meta.path`` (``/hooks/door-bell``) and checks its
own token, given as ``Authorization: Bearer TOKEN`` or ``X-Krill-Token: TOKEN``, against the
node's ``token_hash``. The JSON body becomes the value the chain starts with. A body that is
not JSON is refused with 400 and recorded as the node's error; nothing else is disturbed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..model import IncomingWebHookMeta, NodeState, NodeType
from ..store.hostdoc import HostDoc
from .processors.base import ProcessorError
from .processors.triggers import MAX_WEBHOOK_BODY_BYTES, check_token, parse_body

__all__ = ["PREFIX", "webhook_routes"]

log = logging.getLogger("krill.runtime")

#: Every webhook path starts here, so hooks can never shadow an API route.
PREFIX = "/hooks/"

Invoke = Callable[[str, Any], Awaitable[Any]]


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    return request.headers.get("X-Krill-Token")


def webhook_routes(doc: Callable[[], HostDoc], invoke: Invoke) -> list[web.RouteDef]:
    """Routes that serve the IncomingWebHook nodes of the host doc ``doc()``."""

    async def handle(request: web.Request) -> web.Response:
        host_doc = doc()
        hooks = [
            n
            for n in host_doc.list_nodes(type=NodeType.IncomingWebHook)
            if isinstance(n.meta, IncomingWebHookMeta) and n.meta.path == request.path
        ]
        if not hooks:
            raise web.HTTPNotFound(text=f"no webhook at {request.path}")
        node = hooks[0]
        if not check_token(node, _token(request)):
            log.info("webhook %s refused a call without its token", node.id)
            raise web.HTTPUnauthorized(text=f"webhook {node.id} needs its token")
        if (request.content_length or 0) > MAX_WEBHOOK_BODY_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_WEBHOOK_BODY_BYTES, actual_size=request.content_length or 0
            )
        try:
            value = parse_body(await request.read())
        except ProcessorError as exc:
            host_doc.set_error(node.id, NodeState.WARN, str(exc))
            raise web.HTTPBadRequest(text=str(exc)) from None
        result = await invoke(node.id, value)
        ran = list(getattr(result, "ran", []))
        return web.json_response({"node": node.id, "ran": ran})

    return [web.post(PREFIX + "{name:.+}", handle)]
