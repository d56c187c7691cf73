"""The dashboard's files are served by every peer, with their types, and nothing else is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from krill_crdt.runtime.config import DiscoveryConfig, HttpConfig, PeerConfig, PeerSection
from krill_crdt.runtime.peer import Peer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    config = PeerConfig(
        peer=PeerSection(name="solo", data_dir=tmp_path / "solo"),
        http=HttpConfig(listen="127.0.0.1:0"),
        discovery=DiscoveryConfig(multicast=False),
    )
    async with Peer(config) as running:
        yield running


async def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """Send ``GET target`` byte for byte (no client-side path clean-up); return status, body."""
    address = URL(url)
    assert address.host is not None and address.port is not None
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {address.host}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_the_page_is_served_at_the_root_as_html(peer: Peer) -> None:
    async with aiohttp.ClientSession() as session, session.get(peer.url + "/") as response:
        body = await response.text()
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert '<script type="module" src="/static/app.js">' in body


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("index.html", "text/html; charset=utf-8"),
    ],
)
async def test_static_files_are_served_with_their_content_type(
    peer: Peer, name: str, content_type: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{peer.url}/static/{name}") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == content_type
        assert len(await response.read()) > 100


async def test_the_page_loads_nothing_from_outside_the_peer(peer: Peer) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/", "/static/app.js", "/static/style.css"):
            async with session.get(peer.url + path) as response:
                text = await response.text()
                assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
                assert "https://" not in text
                assert "@import" not in text


@pytest.mark.parametrize(
    "target",
    [
        "/static/../peer.py",
        "/static/..%2Fpeer.py",
        "/static/..%2F..%2Fruntime%2Fpeer.py",
        "/static/%2e%2e/dashboard.py",
        "/static/..",
        "/static/",
        "/static/.%2Fapp.js",
    ],
)
async def test_paths_outside_the_static_folder_are_refused(peer: Peer, target: str) -> None:
    status, body = await raw_get(peer.url, target)

    assert status in (400, 403, 404)
    assert b"import" not in body  # no Python source leaked


async def test_an_unknown_static_file_is_a_json_404(peer: Peer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{peer.url}/static/nope.js") as response,
    ):
        assert response.status == 404
        assert response.content_type == "application/json"
        assert "error" in await response.json()


async def test_the_api_routes_are_still_served_beside_the_dashboard(peer: Peer) -> None:
    async with aiohttp.ClientSession() as session, session.get(peer.url + "/health") as response:
        assert response.status == 200
        assert (await response.json())["name"] == "solo"
