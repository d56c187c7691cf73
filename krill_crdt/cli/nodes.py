"""``krill nodes``: read and edit the nodes of a running daemon through its REST JSON API.

    krill nodes list [--host ID] [--type TYPE]
    krill nodes get led
    krill nodes set led --type Pin --parent pi-1 --meta '{"pin": 17, "mode": "output"}'
    krill nodes set led --state info --meta-set pin=18
    krill nodes delete led
    krill nodes invoke led

Every command takes ``--url`` (default: the ``KRILL_URL`` environment variable, else
``http://127.0.0.1:8442``) and ``--json``, which prints the API's JSON instead of a table.

Exit status: 0 on success; 1 when the daemon refused the request (its error is printed as
one line on stderr), answered something that is not the API's JSON, or ran a chain in which
a node failed; 2 for bad usage, or when the daemon cannot be reached in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import aiohttp
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text
from yarl import URL

from krill_crdt.model import NodeState

__all__ = ["CONNECT_TIMEOUT_S", "DEFAULT_URL", "TOTAL_TIMEOUT_S", "URL_ENV", "register"]

#: Where ``krill serve`` listens when it runs without a config.
DEFAULT_URL: Final = "http://127.0.0.1:8442"

#: The environment variable that overrides :data:`DEFAULT_URL`.
URL_ENV: Final = "KRILL_URL"

#: A daemon on the LAN accepts a connection within milliseconds; 3 s leaves room for a busy
#: Raspberry Pi and still tells a person quickly that the address is wrong.
CONNECT_TIMEOUT_S: Final = 3.0

#: Every route this command uses answers from memory; 5 s in all covers a slow write to the
#: store and never leaves a script hanging on a stalled daemon.
TOTAL_TIMEOUT_S: Final = 5.0

#: The columns of ``krill nodes list``, in order.
LIST_COLUMNS: Final = ("id", "type", "name", "state", "parent", "host")

#: Statuses whose error message says enough on its own: 400 names the field that is wrong,
#: 404 names what is missing. Other statuses are shown before the message.
_SELF_EXPLAINING: Final = frozenset({400, 404})

#: How much of an answer that is not the API's JSON is shown in an error line.
_MAX_SHOWN_CHARS: Final = 120

#: The exit status for a refused request, and for an unreachable daemon.
EXIT_REFUSED: Final = 1
EXIT_UNREACHABLE: Final = 2


class _RefusedError(Exception):
    """The daemon answered with an error, or with something that is not the API's JSON."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status of the answer, when the daemon gave one.
        self.status = status


class _UnreachableError(Exception):
    """No answer from the daemon: refused connection, unknown host, timeout, dropped socket."""


@dataclass(frozen=True)
class _Answer:
    """A successful answer: its status and its decoded JSON body."""

    status: int
    body: Any


class _Client:
    """The REST JSON routes of one daemon, over one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base: URL) -> None:
        self._session = session
        self.base = base

    async def request(
        self,
        method: str,
        *path: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> _Answer:
        """Send one request and decode its JSON answer.

        Returns:
            The status (2xx) and the decoded body.

        Raises:
            _RefusedError: a 4xx or 5xx answer (with the daemon's error text), or a body that is
                not JSON.
            _UnreachableError: no connection, or no complete answer within the timeouts.
        """
        url = self.base.joinpath(*path)
        data = None if body is None else orjson.dumps(body)
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, url, params=params, data=data, headers=headers
            ) as response:
                raw = await response.read()
                status, reason = response.status, response.reason or ""
        except asyncio.TimeoutError:
            raise _UnreachableError(
                f"no answer from the daemon at {self.base} within "
                f"{CONNECT_TIMEOUT_S:g} s (connect) / {TOTAL_TIMEOUT_S:g} s (total)"
            ) from None
        except aiohttp.ClientError as exc:
            why = _why(exc)
            raise _UnreachableError(f"cannot reach the daemon at {self.base}: {why}") from None
        return _decode(status, reason, raw)


def _decode(status: int, reason: str, raw: bytes) -> _Answer:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        head = raw.decode("utf-8", "replace")
        detail = f"the answer is not JSON: {_one_line(head)}"
        raise _RefusedError(f"{status} {reason}: {detail}", status) from None
    if status < 400:
        return _Answer(status, body)
    message = body.get("error") if isinstance(body, dict) else None
    if not isinstance(message, str):
        shown = "" if body is None else f": {_one_line(repr(body))}"
        raise _RefusedError(f"{status} {reason}{shown}", status)
    if status in _SELF_EXPLAINING:
        raise _RefusedError(_one_line(message), status)
    raise _RefusedError(f"{status} {reason}: {_one_line(message)}", status)


def _why(exc: aiohttp.ClientError) -> str:
    """The reason a connection failed, in a few words."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        if isinstance(error, socket.gaierror):
            return error.strerror or str(error)
        if error.errno is not None and error.errno > 0:
            return os.strerror(error.errno).lower()
        return error.strerror or str(error)
    return str(exc) or type(exc).__name__


def _one_line(text: str) -> str:
    """``text`` on one line and cut short: an error is one line on stderr."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_SHOWN_CHARS else flat[: _MAX_SHOWN_CHARS - 3] + "..."


# -------------------------------------------------------------------------- command line

_Handler = Callable[[_Client, argparse.Namespace], Awaitable[int]]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``nodes`` subcommand and its own subcommands."""
    parser = subparsers.add_parser(
        "nodes",
        help="read and edit the nodes of a running daemon",
        description="Read and edit the nodes of a running daemon through its HTTP API.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = _add(actions, "list", "list nodes", _list)
    listing.add_argument("--host", metavar="ID", help="only the nodes of this host doc")
    listing.add_argument("--type", metavar="TYPE", help="only nodes of this type (Pin, ...)")

    _add(actions, "get", "show one node", _get).add_argument("id", help="node id")

    setting = _add(actions, "set", "create a node or update some of its fields", _set)
    setting.add_argument("id", help="node id")
    _add_field_options(setting)

    _add(actions, "delete", "delete a node and its subtree", _delete).add_argument(
        "id", help="node id"
    )
    _add(actions, "invoke", "run a node's chain on its host", _invoke).add_argument(
        "id", help="node id"
    )


def _add(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    handler: _Handler,
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=summary, description=summary[0].upper() + summary[1:])
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        type=_base_url,
        help=f"the daemon's HTTP address (default: ${URL_ENV}, else {DEFAULT_URL})",
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.set_defaults(func=_command(handler))
    return parser


def _add_field_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", metavar="T", help="node type (needed to create)")
    parser.add_argument(
        "--parent",
        metavar="P",
        help="parent node id (needed to create; an empty string for a root)",
    )
    parser.add_argument("--host", metavar="H", help="host doc (create only; default the daemon's)")
    parser.add_argument("--name", metavar="N", help="display name")
    states = ", ".join(state.value for state in NodeState)
    parser.add_argument("--state", metavar="S", help=f"node state: {states}")
    meta = parser.add_mutually_exclusive_group()
    meta.add_argument(
        "--meta", metavar="JSON", type=_meta_object, help="replace the whole meta object"
    )
    meta.add_argument(
        "--meta-set",
        metavar="KEY=VALUE",
        action="append",
        type=_meta_pair,
        help="set one meta key, keeping the others (repeatable; VALUE is JSON, else a string)",
    )


def _base_url(text: str) -> URL:
    """The daemon's address, checked before any connection is tried.

    Raises:
        argparse.ArgumentTypeError: not an absolute http(s) URL.
    """
    try:
        url = URL(text)
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")
    return url


def _meta_object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


def _meta_pair(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    try:
        return key, orjson.loads(value)
    except orjson.JSONDecodeError:
        # Bare words are the common case (mode=output): taken as the string they spell.
        return key, value


def _command(handler: _Handler) -> Callable[[argparse.Namespace], int]:
    """Wrap an async handler as the ``func`` of a parser: one event loop, one session."""

    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(_session(handler, args))
        except _RefusedError as exc:
            _fail(str(exc))
            return EXIT_REFUSED
        except _UnreachableError as exc:
            _fail(str(exc))
            return EXIT_UNREACHABLE
        except KeyboardInterrupt:
            return 130

    return run


async def _session(handler: _Handler, args: argparse.Namespace) -> int:
    timeout = aiohttp.ClientTimeout(total=TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return await handler(_Client(session, args.url), args)


def _fail(message: str) -> None:
    sys.stderr.write(f"krill: {message}\n")
    sys.stderr.flush()


# ------------------------------------------------------------------------------ actions


async def _list(client: _Client, args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("host", args.host), ("type", args.type)) if v is not None}
    nodes = _expect_list((await client.request("GET", "nodes", params=params)).body)
    if args.json:
        _print_json(nodes)
        return 0
    _console().print(_node_table(nodes))
    return 0


async def _get(client: _Client, args: argparse.Namespace) -> int:
    node = _expect_node((await client.request("GET", "node", args.id)).body)
    _show_node(node, args.json, f"node {node.get('id', args.id)}")
    return 0


async def _set(client: _Client, args: argparse.Namespace) -> int:
    body = _fields_to_send(args)
    if args.meta_set:
        body["meta"] = await _merged_meta(client, args.id, args.meta_set)
    answer = await client.request("POST", "node", args.id, body=body)
    node = _expect_node(answer.body)
    verb = "created" if answer.status == 201 else "updated"
    _show_node(node, args.json, f"node {node.get('id', args.id)} {verb}")
    return 0


async def _delete(client: _Client, args: argparse.Namespace) -> int:
    body = (await client.request("DELETE", "node", args.id)).body
    removed = body.get("removed") if isinstance(body, dict) else None
    if not isinstance(removed, list):
        raise _RefusedError(f"unexpected answer to DELETE: {_one_line(repr(body))}")
    if args.json:
        _print_json(body)
        return 0
    for node_id in removed:
        sys.stdout.write(f"{node_id}\n")
    return 0


async def _invoke(client: _Client, args: argparse.Namespace) -> int:
    result = (await client.request("POST", "node", args.id, "invoke")).body
    if not isinstance(result, dict):
        raise _RefusedError(f"unexpected answer to invoke: {_one_line(repr(result))}")
    if args.json:
        _print_json(result)
    else:
        _console().print(_invoke_text(args.id, result))
    return EXIT_REFUSED if result.get("errors") else 0


# ----------------------------------------------------------------------- set: the body


def _fields_to_send(args: argparse.Namespace) -> dict[str, Any]:
    """The node fields given on the command line, as the JSON body of ``POST /node/{id}``."""
    body: dict[str, Any] = {}
    for key in ("type", "host", "name", "state"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    if args.parent is not None:
        # Ids are never empty, so an empty parent can only mean a root.
        body["parent"] = args.parent or None
    if args.meta is not None:
        body["meta"] = args.meta
    return body


async def _merged_meta(
    client: _Client, node_id: str, pairs: Sequence[tuple[str, Any]]
) -> dict[str, Any]:
    """The node's current meta with ``pairs`` written over it; only ``pairs`` for a new node.

    # NOTE: the daemon replaces meta as a whole, so a key another client changes between
    # this read and the write that follows is set back. Two people editing different keys
    # of one node's meta at the same second is the case where it matters.
    """
    try:
        current = _expect_node((await client.request("GET", "node", node_id)).body)
    except _RefusedError as exc:
        if exc.status != 404:
            raise
        current = {}
    meta = current.get("meta") or {}
    if not isinstance(meta, dict):
        raise _RefusedError(f"node {node_id}: meta is not an object: {_one_line(repr(meta))}")
    return {**meta, **dict(pairs)}


# ---------------------------------------------------------------------------- output


def _console() -> Console:
    # Built per command so it writes to the sys.stdout of the moment; a pipe gets plain text
    # wide enough that ids are never cut.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def _print_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _expect_list(body: object) -> list[dict[str, Any]]:
    if not isinstance(body, list) or not all(isinstance(n, dict) for n in body):
        raise _RefusedError(f"expected a JSON array of nodes, got {_one_line(repr(body))}")
    return body


def _expect_node(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _RefusedError(f"expected a node as a JSON object, got {_one_line(repr(body))}")
    return body


def _node_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table(caption=f"{len(nodes)} node{'' if len(nodes) == 1 else 's'}")
    for column in LIST_COLUMNS:
        table.add_column(column, overflow="fold")
    for node in sorted(nodes, key=lambda n: (_cell(n.get("host")), _cell(n.get("id")))):
        table.add_row(*(Text(_cell(node.get(column))) for column in LIST_COLUMNS))
    return table


def _show_node(node: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        _print_json(node)
        return
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in node.items():
        if key == "meta" and isinstance(value, dict) and value:
            for meta_key, meta_value in value.items():
                table.add_row(Text(f"meta.{meta_key}"), Text(_json_text(meta_value)))
        elif key == "updated" and isinstance(value, (int, float)):
            table.add_row(Text(key), Text(_timestamp(value)))
        else:
            table.add_row(Text(key), Text(_cell(value)))
    _console().print(table)


def _invoke_text(node_id: str, result: Mapping[str, Any]) -> Text:
    if "routed_to" in result:
        return Text(f"{node_id}: sent to host {result['routed_to']}, which runs it")
    ran = result.get("ran") or []
    lines = [f"{node_id}: ran {', '.join(map(str, ran)) if ran else 'nothing'}"]
    errors = result.get("errors") or {}
    if isinstance(errors, dict):
        lines += [f"  {failed} failed: {_one_line(str(why))}" for failed, why in errors.items()]
    skipped = result.get("skipped") or []
    if skipped:
        lines.append(f"  skipped: {', '.join(map(str, skipped))}")
    return Text("\n".join(lines))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else _json_text(value)


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode()


def _timestamp(seconds: float) -> str:
    try:
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return repr(seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
