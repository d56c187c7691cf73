"""A throwaway Mosquitto for the MQTT benchmark cases, listening on a free port of 127.0.0.1.

The broker runs from a config written into its own temporary directory, keeps nothing on disk
and is stopped (SIGTERM, then SIGKILL) by :meth:`BenchBroker.stop`. The binary is found on
``KRILL_MOSQUITTO``, the Debian paths or ``PATH``; without one the MQTT cases report their
variants as not run, with the reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from ._child import stop_child, wait_listening

__all__ = ["BenchBroker", "BrokerUnavailableError", "find_broker"]

HOST = "127.0.0.1"

#: Debian installs the broker in /usr/sbin, which is not on every user's PATH.
CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")

#: Mosquitto accepts connections within tens of milliseconds; a loaded 2-core machine may be
#: much slower, and a benchmark that cannot start should still fail quickly.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class BrokerUnavailableError(ImportError):
    """No broker binary here, or it would not start.

    An ImportError, so the benchmark runner reports the variant as not run instead of failing.
    """


def find_broker() -> str | None:
    """Return the path of an executable ``mosquitto``, or None."""
    configured = os.environ.get("KRILL_MOSQUITTO")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("mosquitto")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class BenchBroker:
    """One Mosquitto process for one benchmark variant.

    Attributes:
        port: the listener's port once started.
        url: ``mqtt://127.0.0.1:PORT``.
    """

    def __init__(self) -> None:
        self.port = 0
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def start(self) -> BenchBroker:
        """Start the broker and wait until it accepts TCP connections.

        Raises:
            BrokerUnavailableError: no binary, or it exited or did not listen in time.
        """
        binary = find_broker()
        if binary is None:
            raise BrokerUnavailableError("mosquitto is not installed (Debian package mosquitto)")
        self._workdir = Path(tempfile.mkdtemp(prefix="krill-bench-broker-"))
        self.port = _free_port()
        config = self._workdir / "mosquitto.conf"
        lines = [
            # Without it the broker holds small packets back (Nagle) for tens of milliseconds.
            "set_tcp_nodelay true",
            "persistence false",
            # A burst baseline publishes 10,000 QoS 1 messages at once; the default queue of
            # 1000 per subscriber would drop most of them and the burst would never complete.
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
        ]
        if os.getuid() == 0:
            # As root, Mosquitto drops to its own user, which cannot read this temp dir.
            lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
        config.write_text("\n".join(lines) + "\n")
        log_file = self._workdir / "mosquitto.log"
        with log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [binary, "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        failure = wait_listening(
            self._process,
            HOST,
            self.port,
            START_TIMEOUT,
            exited=lambda: "mosquitto exited: " + log_file.read_text(errors="replace"),
        )
        if failure is None:
            return self
        self.stop()
        raise BrokerUnavailableError(f"mosquitto on port {self.port}: {failure}")

    def stop(self) -> None:
        """Stop the broker and remove its directory. Idempotent."""
        process, self._process = self._process, None
        stop_child(process, STOP_TIMEOUT)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
