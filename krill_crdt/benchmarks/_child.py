"""Child processes of the benchmarks (a broker, a relay server): wait for them, stop them."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable

__all__ = ["stop_child", "wait_listening"]


def wait_listening(
    process: subprocess.Popen[bytes],
    host: str,
    port: int,
    timeout: float,
    *,
    exited: Callable[[], str],
) -> str | None:
    """Wait until ``process`` accepts TCP connections on ``host:port``.

    Returns:
        None once it listens; otherwise why not: ``exited()`` if the process ended, or a
        sentence saying it did not listen in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return exited()
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return None
        time.sleep(0.01)
    return f"nothing listened on port {port} within {timeout:g} s"


def stop_child(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Stop a child: SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
