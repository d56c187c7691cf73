"""A real headless Chromium for the dashboard tests, driven by Playwright.

The browser is Debian's ``chromium`` package; Playwright's own browser download is never used
(it needs the internet). A missing browser fails the test with the command that installs it:
a dashboard test that silently skips would prove nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = Path("/usr/bin/chromium")

#: Screenshots the browser tests leave behind for a person to look at.
ARTIFACTS = Path(__file__).parent / "artifacts"

#: Headless, and nothing that reaches beyond loopback: no background requests, no QUIC, no
#: component or sync service, no first-run dialog. ``--no-sandbox`` because tests may run as
#: root in a container, where Chromium's sandbox cannot start.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
)

#: Seconds a DOM wait may take; a live update crosses two peers and one event stream.
DOM_TIMEOUT_S = 10.0


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A running headless Chromium (a Playwright ``Browser``), closed after the test."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard browser tests need Debian's chromium "
            "package (apt-get install -y chromium)",
            pytrace=False,
        )
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail(
            "playwright is missing: install the dev extra (pip install -e '.[dev]')",
            pytrace=False,
        )

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def artifacts() -> Path:
    """The folder screenshots go to (created if needed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
