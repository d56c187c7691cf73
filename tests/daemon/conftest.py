"""Daemons in subprocesses, on loopback only, each on its own ports and data directory."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: Every wait in these tests is bounded by this (seconds) unless the test says otherwise.
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def multicast_env() -> dict[str, str]:
    """A multicast group and port of its own, so a test never meets another daemon."""
    return {
        "KRILL_DISCOVERY_GROUP": f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}",
        "KRILL_DISCOVERY_PORT": str(random.randint(20_000, 32_000)),
        "KRILL_DISCOVERY_INTERFACE": "127.0.0.1",
    }


class Daemon:
    """One ``krill serve`` subprocess."""

    def __init__(self, cwd: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("KRILL_", "NOTIFY_", "WATCH"))
        }
        full_env["KRILL_HTTP_LISTEN"] = f"127.0.0.1:{self.port}"
        full_env.update(env)
        self.log = cwd / f"daemon-{self.port}.log"
        self._log_handle = self.log.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "krill_crdt", "serve", *args],
            cwd=cwd,
            env=full_env,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(self.url + path, timeout=2.0) as response:
            return int(response.status), bytes(response.read())

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path)[1])

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Poll ``/health`` until it answers; fail with the daemon's log if it never does."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"krill serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                health: dict[str, Any] = self.get_json("/health")
                return health
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        pytest.fail(f"no /health within {timeout} s:\n{self.output()}")

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Send SIGTERM and return the exit status; fail if it takes longer than ``timeout``."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"krill serve still running {timeout} s after SIGTERM:\n{self.output()}")

    def stop_cleanly(self) -> None:
        """SIGTERM, then exit status 0 within the stop timeout; fail with the log otherwise."""
        status = self.terminate()
        if status != 0:
            pytest.fail(f"krill serve exited with {status} after SIGTERM:\n{self.output()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5.0)
        self._log_handle.close()

    def output(self) -> str:
        self._log_handle.flush()
        return self.log.read_text(errors="replace")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    """Start ``krill serve`` subprocesses; every one is killed at teardown."""
    daemons: list[Daemon] = []

    def start(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(cwd or tmp_path, list(args), {**multicast_env(), **(env or {})})
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.kill()
