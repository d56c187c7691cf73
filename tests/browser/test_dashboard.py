"""The dashboard in a real browser: two peers, two pages, an edit on one shows on the other."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from krill_crdt.model import Node, NodeType
from krill_crdt.runtime.peer import Peer
from tests.browser.conftest import DOM_TIMEOUT_S
from tests.runtime.test_swarm import Swarm, converged, linked, wait_for

pytestmark = pytest.mark.timeout(90)

WAIT_MS = DOM_TIMEOUT_S * 1000


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Peer, Peer]]:
    """Two linked, converged peers; alpha hosts a small garden project with some history."""
    swarm = Swarm(tmp_path)
    alpha, bravo = await swarm.start("alpha"), await swarm.start("bravo")
    try:
        await alpha.create(Node.new(NodeType.Project, host="alpha", parent="alpha", id="garden"))
        await alpha.create(
            Node.new(
                NodeType.DataPoint,
                host="alpha",
                parent="garden",
                id="temp",
                name="temperature",
                meta={"unit": "C", "precision": 1},
            )
        )
        await alpha.create(
            Node.new(NodeType.Button, host="alpha", parent="garden", id="water", meta={})
        )
        await alpha.create(
            Node.new(
                NodeType.Pin,
                host="alpha",
                parent="alpha",
                id="led",
                name="porch light",
                meta={"pin": 17, "mode": "output"},
            )
        )
        await bravo.create(Node.new(NodeType.Project, host="bravo", parent="bravo", id="shed"))
        now = time.time()
        for minute in range(60):
            value = 18 + 3 * math.sin(minute / 9)
            alpha.store.series.append("temp", now - (60 - minute) * 60, value)
        await wait_for(lambda: linked([alpha, bravo]) and converged([alpha, bravo], hosts=2))
        yield alpha, bravo
    finally:
        for peer in list(swarm.peers):
            await peer.stop()


async def open_dashboard(browser: Browser, peer: Peer, errors: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 860})
    page.on("pageerror", lambda exc: errors.append(f"{peer.host}: {exc}"))
    await page.goto(peer.url + "/")
    await expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    await expect(page.locator('[data-node-id="garden"]')).to_be_visible(timeout=WAIT_MS)
    return page


def row_name(page: Page, node_id: str) -> Locator:
    return page.locator(f'[data-node-id="{node_id}"] .node-name')


async def test_an_edit_in_one_dashboard_appears_live_in_another_peers_dashboard(
    browser: Browser, pair: tuple[Peer, Peer], artifacts: Path
) -> None:
    alpha, bravo = pair
    errors: list[str] = []
    page_a = await open_dashboard(browser, alpha, errors)
    page_b = await open_dashboard(browser, bravo, errors)

    # Each page shows its own peer and both host docs, nested by parent.
    await expect(page_a.locator("#peer-name")).to_have_text("alpha")
    await expect(page_a.locator("#peer-id")).to_have_text(alpha.id.hex()[:8])
    await expect(page_b.locator("#peer-name")).to_have_text("bravo")
    for page in (page_a, page_b):
        await expect(page.locator('section.host[data-host="alpha"]')).to_be_visible()
        await expect(page.locator('section.host[data-host="bravo"]')).to_be_visible()
        nested = page.locator('[data-node-id="garden"] + ul [data-node-id="temp"]')
        await expect(nested).to_be_visible()
    reload_marker = await page_b.evaluate("window.performance.timeOrigin")

    # Rename on alpha's page; bravo's page follows without reloading.
    await page_a.locator('[data-node-id="garden"]').click()
    await page_a.locator("#edit-name").fill("greenhouse")
    await page_a.locator("#edit-state").select_option("warn")
    await page_a.locator("#edit-save").click()
    await expect(page_a.locator("#edit-result")).to_have_text("Saved.", timeout=WAIT_MS)

    await expect(row_name(page_b, "garden")).to_have_text("greenhouse", timeout=WAIT_MS)
    await expect(page_b.locator('[data-node-id="garden"] .badge')).to_have_text("warn")
    assert await page_b.evaluate("window.performance.timeOrigin") == reload_marker
    assert bravo.get("garden").name == "greenhouse"

    # A trigger can be invoked from the page; the chain's result is shown.
    await page_a.locator('[data-node-id="water"]').click()
    await page_a.locator("#invoke-run").click()
    await expect(page_a.locator("#invoke-result")).to_contain_text('"ran"', timeout=WAIT_MS)

    # A data point's history is drawn as an SVG line.
    await page_a.locator('[data-node-id="temp"]').click()
    line = page_a.locator("#series-plot svg polyline")
    await expect(line).to_have_count(1, timeout=WAIT_MS)
    points = await line.get_attribute("points")
    assert points is not None and len(points.split()) == 60

    # An out-of-range meta value is refused; the API's message shows next to the form.
    await page_a.locator("#edit-meta").fill('{"unit": "C", "precision": 99}')
    await page_a.locator("#edit-save").click()
    error = page_a.locator("#edit-error")
    await expect(error).to_be_visible(timeout=WAIT_MS)
    await expect(error).to_contain_text("meta.precision: must be 0..15, got 99")
    assert alpha.get("temp").to_fields()["meta"]["precision"] == 1

    await page_b.locator('[data-node-id="garden"]').click()
    await expect(page_b.locator("#edit-name")).to_have_value("greenhouse")
    shots = {
        "dashboard-alpha.png": page_a,
        "dashboard-bravo.png": page_b,
    }
    for name, page in shots.items():
        path = artifacts / name
        await page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
    assert errors == []


async def test_a_peer_with_tokens_asks_for_one_and_then_works(
    browser: Browser, tmp_path: Path
) -> None:
    from dataclasses import replace

    from krill_crdt.runtime.access import new_token
    from krill_crdt.runtime.config import HttpConfig

    token = new_token()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"operator {token}\n")
    tokens.chmod(0o600)
    swarm = Swarm(tmp_path)
    config = replace(
        swarm.config("alpha"), http=HttpConfig(listen="127.0.0.1:0", token_file=tokens)
    )
    peer = await Peer(config).start()
    errors: list[str] = []
    try:
        await peer.create(Node.new(NodeType.Project, host="alpha", parent="alpha", id="garden"))

        # Without a token the page asks for one (a 401 from the API), then loads with it.
        page = await browser.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        asked: list[str] = []

        async def answer(dialog: object) -> None:
            from playwright.async_api import Dialog

            assert isinstance(dialog, Dialog)
            asked.append(dialog.message)
            await dialog.accept(token)

        page.on("dialog", answer)
        await page.goto(peer.url + "/")
        await expect(page.locator('[data-node-id="garden"]')).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
        assert len(asked) == 1 and "token" in asked[0]

        # A token handed over in the address is taken and removed from the address bar.
        fresh = await browser.new_page()
        await fresh.goto(f"{peer.url}/#token={token}")
        await expect(fresh.locator('[data-node-id="garden"]')).to_be_visible(timeout=WAIT_MS)
        assert "token" not in fresh.url
    finally:
        await peer.stop()
    assert errors == []
