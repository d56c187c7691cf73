"""Who may write what: read-only peers, tokens on REST and on /ws, per-doc lists."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Map

from krill_crdt.errors import AccessDeniedError, ValidationError
from krill_crdt.model import Node, NodeType
from krill_crdt.runtime.config import AccessConfig
from krill_crdt.runtime.peer import Peer
from krill_crdt.transport.yprotocol import (
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from krill_crdt.transport.yws import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED
from tests.runtime.test_swarm import contents, linked, wait_for
from tests.security.conftest import SecureSwarm, bearer

pytestmark = pytest.mark.timeout(120)

JSON = {"Content-Type": "application/json"}


def project(host: str, node_id: str) -> Node:
    return Node.new(NodeType.Project, host=host, parent=host, id=node_id, name=node_id)


def forbidden(peer: Peer) -> float:
    return sum(
        peer.metrics.value("krill_frames_rejected_total", transport=t, reason="forbidden")
        for t in ("udp", "ws")
    )


# ------------------------------------------------------------------------------- peers


async def test_a_read_only_peer_syncs_but_its_writes_never_reach_another_doc(
    secure: SecureSwarm,
) -> None:
    writers = [secure.peer_id("alpha"), secure.peer_id("bravo")]
    viewer_id = secure.peer_id("viewer")
    # The viewer may write its own host doc only; the others may write everything.
    access = AccessConfig(write=(*writers, f"viewer={viewer_id}"))
    alpha = await secure.start(secure.config("alpha", access=access))
    bravo = await secure.start(secure.config("bravo", access=access))
    viewer = await secure.start(secure.config("viewer", access=access))
    peers = [alpha, bravo, viewer]
    await alpha.create(project("alpha", "greenhouse"))
    await wait_for(
        lambda: (
            linked(peers) and all("greenhouse" in p.store.docs().get("alpha", {}) for p in peers)
        ),
        timeout=20,
    )

    # The API refuses at once, naming the doc and the rule.
    with pytest.raises(AccessDeniedError, match="may only read"):
        await viewer.update("greenhouse", {"name": "renamed by the viewer"})
    with pytest.raises(AccessDeniedError):
        await viewer.create(project("alpha", "intruder"))

    # A write forced into the viewer's own store is refused by every other peer.
    await viewer.store.update("greenhouse", {"name": "forced"})
    await viewer.store.create(project("bravo", "planted"))
    await wait_for(lambda: forbidden(alpha) >= 1 and forbidden(bravo) >= 1)
    await asyncio.sleep(0.5)
    for peer in (alpha, bravo):
        assert peer.get("greenhouse").name == "greenhouse"
        assert "planted" not in peer.store.docs().get("bravo", {})

    # Its own doc is its to write, and everyone gets it.
    await viewer.create(project("viewer", "display"))
    await wait_for(lambda: all("display" in p.store.docs()["viewer"] for p in peers))
    # The writers still agree with each other.
    assert contents([alpha])[0] == contents([bravo])[0]


def test_access_entries_are_checked_and_named() -> None:
    with pytest.raises(ValidationError, match=r"access\.write"):
        AccessConfig(write=("not a peer",))
    with pytest.raises(ValidationError, match=r"access\.read"):
        AccessConfig(read=("bad doc!=*",))
    AccessConfig(write=("greenhouse=token:admin", "shed=*", "ab" * 16, "AB" * 16))


# --------------------------------------------------------------------------------- REST


async def test_rest_needs_a_token_and_a_read_only_token_cannot_write(secure: SecureSwarm) -> None:
    access = AccessConfig(read=("token:viewer",), write=(secure.peer_id("alpha"), "token:admin"))
    peer = await secure.start(secure.config("alpha", access=access, tokens=True))
    admin, viewer = bearer(secure.tokens["admin"]), bearer(secure.tokens["viewer"])
    body = {"type": "Project", "parent": "alpha", "name": "p"}
    before = contents([peer])

    async with aiohttp.ClientSession(peer.url) as http:
        # Without a token: only /health and the dashboard answer.
        async with http.get("/health") as r:
            assert r.status == 200
        async with http.get("/") as r:
            assert r.status == 200
        for method, path in (("POST", "/node/p"), ("GET", "/nodes"), ("GET", "/metrics")):
            async with http.request(method, path, json=body) as r:
                assert r.status == 401, (method, path)
                assert r.headers["WWW-Authenticate"] == "Bearer"
        async with http.post("/node/p", json=body, headers=bearer("x" * 32)) as r:
            assert r.status == 401
        async with http.post(
            "/sync/alpha", data=b"\x00\x00", headers={"Content-Type": "application/octet-stream"}
        ) as r:
            assert r.status == 401
        assert contents([peer]) == before

        # A read-only token reads, and every write is 403.
        async with http.get("/nodes", headers=viewer) as r:
            assert r.status == 200
            assert any(n["id"] == "alpha" for n in await r.json())
        async with http.post("/node/p", json=body, headers=viewer) as r:
            assert r.status == 403
            assert "may not write host doc 'alpha'" in (await r.json())["error"]
        async with http.delete("/node/alpha", headers=viewer) as r:
            assert r.status == 403
        async with http.post("/node/alpha/invoke", headers=viewer) as r:
            assert r.status == 403
        assert contents([peer]) == before

        # The admin token writes; an oversized body is 413 and changes nothing.
        async with http.post("/node/p", json=body, headers=admin) as r:
            assert r.status == 201
        huge = {**body, "name": "x" * (600 * 1024)}
        async with http.post("/node/q", json=huge, headers=admin) as r:
            assert r.status == 413
        assert "q" not in peer.store.doc("alpha")

        # Event streams take the token from the query (browsers cannot set headers there).
        async with http.get("/events", params={"token": secure.tokens["viewer"]}) as r:
            assert r.status == 200
        async with http.get("/events") as r:
            assert r.status == 401


async def test_a_token_limited_to_one_doc_sees_and_changes_only_that_doc(
    secure: SecureSwarm,
) -> None:
    me = secure.peer_id("alpha")
    access = AccessConfig(read=("alpha=token:viewer",), write=(me, "shed=token:shed"))
    peer = await secure.start(secure.config("alpha", access=access, tokens=True))
    await peer.store.create(Node.new(NodeType.Server, host="shed", id="shed", name="shed"))
    shed = bearer(secure.tokens["shed"])

    async with aiohttp.ClientSession(peer.url) as http:
        async with http.get("/nodes", headers=shed) as r:
            assert {n["host"] for n in await r.json()} == {"shed"}
        async with http.get("/node/alpha", headers=shed) as r:
            assert r.status == 403
        async with http.post("/node/shed", json={"name": "tool shed"}, headers=shed) as r:
            assert r.status == 200
        async with http.post("/node/alpha", json={"name": "x"}, headers=shed) as r:
            assert r.status == 403
    assert peer.get("shed").name == "tool shed"
    assert peer.get("alpha").name == "alpha"


def test_a_token_file_with_a_weak_token_is_refused_without_showing_it(
    secure: SecureSwarm,
) -> None:
    from krill_crdt.runtime.access import Tokens

    secure.token_file.write_text("admin short-secret\n")
    with pytest.raises(ValidationError) as caught:
        Tokens.load(secure.token_file)
    assert "line 1" in str(caught.value) and "short-secret" not in str(caught.value)


# ------------------------------------------------------------------------------ /ws/doc


def client_update(text: str) -> bytes:
    """A Yjs update that writes a node map into ``nodes``, as a rogue editor would."""
    doc = Doc()
    nodes = doc.get("nodes", type=Map)
    nodes["rogue"] = Map({"name": text})
    return doc.get_update()


async def ws_session(
    http: aiohttp.ClientSession, url: str, **params: str
) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(url, params=params)


async def test_a_read_only_yjs_client_syncs_but_its_writes_are_refused(
    secure: SecureSwarm,
) -> None:
    access = AccessConfig(read=("token:viewer",), write=(secure.peer_id("alpha"), "token:admin"))
    peer = await secure.start(secure.config("alpha", access=access, tokens=True))
    url = peer.url.replace("http://", "ws://") + "/ws/alpha"
    before = peer.store.doc("alpha").state_vector()

    async with aiohttp.ClientSession() as http:
        # No token: closed with 4401 before anything is sent.
        ws = await http.ws_connect(url)
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, CLOSE_UNAUTHORIZED)

        # The viewer's token: the doc arrives, then a write closes the socket with 4403.
        ws = await http.ws_connect(url, params={"token": secure.tokens["viewer"]})
        first = decode_message((await ws.receive(timeout=5)).data)
        assert isinstance(first, SyncStep1)
        await ws.send_bytes(encode_message(SyncStep1(b"\x00")))
        reply: Any = None
        while not isinstance(reply, SyncStep2):
            reply = decode_message((await ws.receive(timeout=5)).data)
        replica = Doc()
        replica.apply_update(reply.update)
        assert "alpha" in replica.get("nodes", type=Map)
        await ws.send_bytes(encode_message(SyncUpdate(client_update("from the viewer"))))
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type is aiohttp.WSMsgType.CLOSE:
                break
        assert msg.data == CLOSE_FORBIDDEN
        assert "rogue" not in peer.store.doc("alpha")
        assert peer.store.doc("alpha").state_vector() == before

        # The admin's token in the Authorization header writes.
        ws = await http.ws_connect(url, headers=bearer(secure.tokens["admin"]))
        await ws.receive(timeout=5)
        await ws.send_bytes(encode_message(SyncUpdate(client_update("from the admin"))))
        await wait_for(lambda: "rogue" in peer.store.doc("alpha").nodes.to_py())
        await ws.close()
