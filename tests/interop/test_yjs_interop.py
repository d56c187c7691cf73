"""A stock Yjs client (y-websocket under Node.js) joins a host doc over ``/ws/{doc}``.

Needs Node.js and npm; the pinned packages of ``package-lock.json`` are installed into
``tests/interop/node_modules`` on first run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from krill_crdt.errors import NodeNotFoundError
from krill_crdt.model import Node, NodeType
from krill_crdt.store import HostDoc, Origin
from krill_crdt.transport.yws import TRANSPORT, YjsRooms

HERE = Path(__file__).parent
SCRIPT = HERE / "yjs_client.mjs"
HOST = "host-a"
#: Seconds the Node.js client may run in all; it syncs, writes and reads in well under one.
CLIENT_TIMEOUT = 20.0
#: Seconds a first ``npm ci`` may take (six small packages from the registry).
INSTALL_TIMEOUT = 300.0


@pytest.fixture
async def served() -> AsyncIterator[tuple[HostDoc, YjsRooms, int]]:
    host_doc = HostDoc(HOST)
    host_doc.create(Node.new(NodeType.Server, host=HOST, id="srv", name="server"))

    def get_doc(doc: str) -> HostDoc:
        if doc != HOST:
            raise NodeNotFoundError(f"no host doc {doc!r}")
        return host_doc

    def read_only_token(doc: str, token: str | None, write: bool) -> bool:
        return token != "ro" or not write

    rooms = YjsRooms(get_doc, authorize=read_only_token)
    app = web.Application()
    rooms.attach(app)
    async with TestServer(app, host="127.0.0.1") as server:
        assert server.port is not None
        yield host_doc, rooms, server.port


async def next_event(lines: asyncio.StreamReader, timeout: float = CLIENT_TIMEOUT) -> Any:
    line = await asyncio.wait_for(lines.readline(), timeout)
    assert line, "the Node.js client ended without a word"
    return json.loads(line)


async def until(lines: asyncio.StreamReader, event: str) -> tuple[Any, list[Any]]:
    """Read events up to the first ``event``; return it and those before it."""
    seen: list[Any] = []
    for _ in range(1000):
        message = await next_event(lines)
        assert message["event"] != "error", message
        if message["event"] == event:
            return message, seen
        seen.append(message)
    raise AssertionError(f"no {event!r} event among {seen}")


async def start_client(node: str, port: int, *token: str) -> asyncio.subprocess.Process:
    """Run the Node.js client: it writes ``p-yjs`` and waits for ``p-python``."""
    return await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        f"ws://127.0.0.1:{port}/ws",
        HOST,
        "p-yjs",
        "p-python",
        str(int(CLIENT_TIMEOUT * 1000)),
        *token,
        cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_stock_yjs_client_syncs_writes_and_reads(
    node: str, served: tuple[HostDoc, YjsRooms, int]
) -> None:
    host_doc, rooms, port = served
    origins: list[Origin] = []
    host_doc.on_update(lambda update, origin: origins.append(origin))

    process = await start_client(node, port)
    assert process.stdout is not None and process.stderr is not None
    try:
        # Step 1: the client syncs and sees the Server node the host doc holds.
        await until(process.stdout, "synced")
        wrote, listed = await until(process.stdout, "wrote")
        seen_nodes = {m["node"]["id"]: m["node"] for m in listed if m["event"] == "node"}
        assert Node.from_fields(seen_nodes["srv"]) == host_doc.get("srv")

        # Step 2: its write arrives as a valid node, tagged as coming from a ws client.
        async def arrived() -> None:
            while "p-yjs" not in host_doc:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(arrived(), CLIENT_TIMEOUT)
        theirs = host_doc.get("p-yjs")
        assert (theirs.type, theirs.parent, theirs.host) == (NodeType.Project, "srv", HOST)
        assert theirs.meta.to_dict() == {"description": "created by a stock Yjs client"}
        assert wrote["node"]["id"] == "p-yjs"
        assert any(o.transport == TRANSPORT for o in origins)

        # Step 3: a node written here afterwards reaches the client.
        mine = host_doc.create(
            Node.new(NodeType.Project, host=HOST, parent="srv", id="p-python", name="py")
        )
        seen, _ = await until(process.stdout, "seen")
        assert Node.from_fields(seen["node"]) == mine
        assert await asyncio.wait_for(process.wait(), CLIENT_TIMEOUT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr = (await process.stderr.read()).decode(errors="replace")
    assert "Error" not in stderr, stderr

    # Everything the stock client sent (step 1, step 2, its write, its presence) was understood.
    metrics = rooms.metrics
    for kind in ("sync-step1", "sync-step2", "update", "awareness"):
        assert metrics.value("krill_frames_received_total", transport=TRANSPORT, kind=kind) >= 1
    refused = [
        sample
        for family in metrics.registry.collect()
        if family.name == "krill_frames_rejected"
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
    assert refused == []


async def test_stock_yjs_client_takes_4403_as_final(
    node: str, served: tuple[HostDoc, YjsRooms, int]
) -> None:
    host_doc, rooms, port = served
    before = host_doc.state_vector()

    process = await start_client(node, port, "ro")
    assert process.stdout is not None
    try:
        await until(process.stdout, "synced")
        # y-websocket emits "closed" (and stops reconnecting) only for a close it deems final.
        message = await until_error(process.stdout)
        assert "4403" in message["message"]
        assert await asyncio.wait_for(process.wait(), CLIENT_TIMEOUT) == 1
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert host_doc.state_vector() == before
    assert "p-yjs" not in host_doc
    assert (
        rooms.metrics.value("krill_frames_rejected_total", transport=TRANSPORT, reason="forbidden")
        == 1
    )


async def until_error(lines: asyncio.StreamReader) -> Any:
    for _ in range(1000):
        message = await next_event(lines)
        if message["event"] == "error":
            return message
    raise AssertionError("the Node.js client reported no error")
