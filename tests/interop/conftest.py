"""Fixtures of the interop tests: Node.js with the pinned Yjs packages installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
#: Seconds a first ``npm ci`` may take (six small packages from the registry).
INSTALL_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def node() -> str:
    """The Node.js executable, with the interop packages installed from the lock file."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("the Yjs interop test needs Node.js and npm on PATH; at least one is missing")
    modules = HERE / "node_modules"
    if not (modules / "y-websocket").is_dir():
        try:
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=HERE,
                check=True,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
        except subprocess.CalledProcessError as exc:
            pytest.fail(f"npm ci failed in {HERE}:\n{exc.stderr}")
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci in {HERE} did not finish within {INSTALL_TIMEOUT:.0f} s")
    return node
