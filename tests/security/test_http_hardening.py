"""Browsers, TLS, floods and slow clients on the HTTP side of a peer."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from krill_crdt.model import Node, NodeType
from krill_crdt.runtime.config import HttpConfig
from tests.mqtt_broker import make_tls_material
from tests.runtime.test_swarm import converged, linked, wait_for
from tests.security.conftest import SecureSwarm

pytestmark = pytest.mark.timeout(120)

BODY = {"type": "Project", "parent": "alpha", "name": "p"}


async def test_pages_of_other_origins_may_not_write_or_open_streams(secure: SecureSwarm) -> None:
    http = HttpConfig(listen="127.0.0.1:0", allowed_origins=("https://ops.example",))
    peer = await secure.start(secure.config("alpha", http=http))
    own = peer.url
    evil = {"Origin": "http://evil.example"}

    async with aiohttp.ClientSession(peer.url) as client:
        async with client.post("/node/p", json=BODY, headers=evil) as r:
            assert r.status == 403
            assert "evil.example" in (await r.json())["error"]
        async with client.get("/events", headers=evil) as r:
            assert r.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect("/ws/alpha", headers=evil)
        assert caught.value.status == 403
        # A plain read answers, without CORS headers: the page cannot read it.
        async with client.get("/nodes", headers=evil) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
        assert "p" not in peer.store.doc("alpha")

        # The dashboard's own origin writes.
        async with client.post("/node/p", json=BODY, headers={"Origin": own}) as r:
            assert r.status == 201

        # A listed origin gets CORS headers and an answered pre-flight.
        ops = {"Origin": "https://ops.example"}
        async with client.options(
            "/node/q", headers={**ops, "Access-Control-Request-Method": "POST"}
        ) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "https://ops.example"
        async with client.post("/node/q", json=BODY, headers=ops) as r:
            assert r.status == 201
            assert r.headers["Access-Control-Allow-Origin"] == "https://ops.example"


async def test_a_loopback_peer_answers_only_to_loopback_host_names(secure: SecureSwarm) -> None:
    peer = await secure.start(secure.config("alpha"))
    async with aiohttp.ClientSession(peer.url) as client:
        # A page on rebind.example whose name now points at 127.0.0.1 (DNS rebinding).
        port = peer.url.rsplit(":", 1)[1]
        headers = {"Host": f"rebind.example:{port}", "Origin": f"http://rebind.example:{port}"}
        async with client.post("/node/p", json=BODY, headers=headers) as r:
            assert r.status == 403
        async with client.get("/nodes", headers={"Host": f"rebind.example:{port}"}) as r:
            assert r.status == 403
        async with client.get("/nodes", headers={"Host": f"localhost:{port}"}) as r:
            assert r.status == 200


async def test_two_peers_serve_https_and_link_over_tls(secure: SecureSwarm, tmp_path: Path) -> None:
    tls = make_tls_material(tmp_path / "tls")
    http = HttpConfig(
        listen="127.0.0.1:0", tls_cert=tls.cert_file, tls_key=tls.key_file, tls_ca=tls.ca_file
    )
    a = await secure.start(secure.config("alpha", http=http))
    b = await secure.start(secure.config("bravo", http=http))
    assert a.url.startswith("https://")
    await a.create(Node.new(NodeType.Project, host="alpha", parent="alpha", id="p", name="p"))
    await wait_for(lambda: linked([a, b]) and converged([a, b], hosts=2), timeout=20)
    assert b.metrics.value("krill_frames_received_total", transport="ws", kind="sync_step2") >= 1

    trusted = ssl.create_default_context(cafile=str(tls.ca_file))
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{a.url}/health", ssl=trusted) as r:
            assert r.status == 200
        # Without the CA the certificate is not trusted; plain HTTP gets no answer.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await client.get(f"{a.url}/health")
        with pytest.raises(aiohttp.ClientError):
            await client.get(a.url.replace("https://", "http://") + "/health")


async def test_a_flood_from_one_client_gets_429_and_the_peer_keeps_answering(
    secure: SecureSwarm,
) -> None:
    peer = await secure.start(secure.config("alpha"))
    statuses: list[int] = []
    async with aiohttp.ClientSession(peer.url) as client:
        for _ in range(600):  # above the burst of 400, faster than 200 a second
            async with client.get("/health") as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert r.headers["Retry-After"] == "1"
                    break
        assert 429 in statuses
        await asyncio.sleep(1.0)  # a second later the client may ask again
        async with client.get("/health") as r:
            assert r.status == 200
    assert peer.metrics.value("krill_frames_rejected_total", transport="http", reason="rate") >= 1


async def test_a_body_that_trickles_in_too_slowly_is_408(secure: SecureSwarm) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from krill_crdt.metrics import Metrics
    from krill_crdt.store import Store
    from krill_crdt.transport.http import HttpOptions, PeerInfo, build_app

    store = await Store(secure.root / "store").open()
    app = build_app(
        store,
        lambda: PeerInfo(peer="00", name="alpha"),
        Metrics(),
        own_host="alpha",
        options=HttpOptions(body_timeout_s=0.3),
    )

    async def trickle() -> object:
        yield b'{"type": "Project", '
        await asyncio.sleep(1.0)
        yield b'"parent": null}'

    try:
        async with TestClient(TestServer(app)) as client:
            response = await client.post(
                "/node/p", data=trickle(), headers={"Content-Type": "application/json"}
            )
            assert response.status == 408
            assert "did not arrive within 0.3 s" in (await response.json())["error"]
        assert "p" not in store.docs().get("alpha", {})
    finally:
        await store.close()
