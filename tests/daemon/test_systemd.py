"""systemd's notify protocol, received on a real datagram socket the test owns."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from krill_crdt.daemon.systemd import Notifier

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield sock, str(path)
    sock.close()


def receive_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    """Every message received until one holds ``wanted``; fail after ``timeout`` seconds."""
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if wanted in messages[-1].splitlines():
            return messages
    pytest.fail(f"no {wanted} within {timeout} s; got {messages}")


def test_notify_sends_one_datagram_of_lines(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert Notifier(path).notify("READY=1", "STATUS=up")
    assert sock.recv(4096) == b"READY=1\nSTATUS=up"


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"krill-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier("@" + name).notify("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "gone.sock")).notify("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog_interval == 2.0


def test_watchdog_for_another_process_is_ignored() -> None:
    other = str(os.getpid() + 1)
    env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": other}
    assert Notifier.from_environ(env).watchdog_interval is None


async def test_keep_alive_pings_until_cancelled(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    task = asyncio.create_task(Notifier(path, watchdog_usec=100_000).keep_alive())
    await asyncio.sleep(0.17)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    sock.setblocking(False)
    pings = []
    while True:
        try:
            pings.append(sock.recv(4096))
        except BlockingIOError:
            break
    assert pings.count(b"WATCHDOG=1") >= 3


def test_serve_sends_ready_watchdog_and_stopping(
    spawn: Any, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    daemon = spawn(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})

    ready = receive_until(sock, "READY=1", 5.0)
    assert any(f"at {daemon.url}" in m for m in ready)
    receive_until(sock, "WATCHDOG=1", 2.0)
    receive_until(sock, "WATCHDOG=1", 2.0)

    daemon.process.terminate()
    receive_until(sock, "STOPPING=1", 5.0)
    assert daemon.process.wait(5.0) == 0
