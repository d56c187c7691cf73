"""systemd's notify protocol, spoken directly: ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``.

Under ``Type=notify`` systemd names a datagram socket in ``NOTIFY_SOCKET`` (a path, or an
abstract socket when it starts with ``@``) and waits for ``READY=1`` before it counts the
service as started. With ``WatchdogSec=`` it also sets ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``) and restarts the service when no ``WATCHDOG=1`` arrives within that time.
Outside systemd none of these variables is set and every call here does nothing.

    notifier = Notifier.from_environ()
    notifier.notify("READY=1", "STATUS=serving on http://127.0.0.1:8442")
    task = asyncio.create_task(notifier.keep_alive())   # WATCHDOG=1 at half the interval
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger("krill.daemon.systemd")


class Notifier:
    """Sends state changes to systemd's notify socket, if there is one.

    Args:
        address: the socket as ``NOTIFY_SOCKET`` names it; ``None`` disables every call.
        watchdog_usec: ``WATCHDOG_USEC``: the watchdog interval in microseconds, or ``None``.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``.

        A watchdog meant for another process (``WATCHDOG_PID`` is not ours) or an interval
        that is not a positive number is ignored.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        pid = env.get("WATCHDOG_PID", "")
        if pid in ("", str(os.getpid())):
            text = env.get("WATCHDOG_USEC", "")
            usec = int(text) if text.isdigit() and int(text) > 0 else None
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half the interval), or None without one."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2_000_000

    def notify(self, *assignments: str) -> bool:
        """Send ``VAR=value`` lines in one datagram.

        Returns:
            True if it was sent; False without a socket or when sending failed (logged at
            warning the first time, then at debug: systemd going away must not stop a peer).
        """
        if self.address is None:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, target)
        except OSError as exc:
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "cannot notify systemd at %s: %s", self.address, exc)
            return False
        return True

    async def keep_alive(self) -> None:
        """Send ``WATCHDOG=1`` at half the watchdog interval until cancelled.

        Returns at once when there is no socket or no watchdog. The pings come from the event
        loop itself, so a loop that hangs stops them and systemd restarts the service.
        """
        interval = self.watchdog_interval
        if not self.enabled or interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)
