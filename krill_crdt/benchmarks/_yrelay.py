"""The WebSocket baseline: pycrdt-websocket's relay server in a separate process.

A user who wants two Python programs to share a pycrdt document over WebSocket typically runs
pycrdt-websocket's ``WebsocketServer`` behind an ASGI server and connects each program with a
``pycrdt.Provider``. This module is both halves of that set-up for the benchmarks:

* ``python -m krill_crdt.benchmarks._yrelay PORT`` serves rooms on ``ws://127.0.0.1:PORT/ROOM``
  (Hypercorn, one worker) until SIGTERM or SIGINT;
* :class:`RelayProcess` starts that program on a free loopback port and stops it again;
* :class:`AiohttpChannel` lets a ``pycrdt.Provider`` talk through an aiohttp WebSocket (aiohttp
  is already a dependency of krill_crdt, so the baseline needs no other client library).

Missing optional packages (pycrdt-websocket, Hypercorn) surface as ImportError from
:meth:`RelayProcess.start`, which the benchmark runner reports as a variant not run.
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import socket
import subprocess
import sys

import aiohttp

from ._child import stop_child, wait_listening

__all__ = ["AiohttpChannel", "RelayProcess", "main"]

HOST = "127.0.0.1"

#: Starting a Python process that imports Hypercorn takes about half a second here, several on
#: a loaded machine.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def missing_packages() -> list[str]:
    """Return the distributions the baseline needs that do not import here."""
    needed = {"pycrdt-websocket": "pycrdt.websocket", "hypercorn": "hypercorn"}
    missing = []
    for dist, module in needed.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(dist)
    return missing


class RelayProcess:
    """The relay server in a child process on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, room: str) -> str:
        return f"ws://{HOST}:{self.port}/{room}"

    def start(self) -> RelayProcess:
        """Start the child and wait until it accepts TCP connections.

        Raises:
            ImportError: pycrdt-websocket or Hypercorn is not installed, or the child exited
                or did not listen in time.
        """
        missing = missing_packages()
        if missing:
            raise ImportError(f"baseline needs {' and '.join(missing)} (pip install)")
        self.port = _free_port()
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        process = self._process

        def exited() -> str:
            assert process.stderr is not None
            return (
                "the relay server exited: " + process.stderr.read().decode(errors="replace")[-2000:]
            )

        failure = wait_listening(process, HOST, self.port, START_TIMEOUT, exited=exited)
        if failure is None:
            return self
        self.stop()
        raise ImportError(f"relay server on port {self.port}: {failure}")

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL). Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_child(process, STOP_TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()


class AiohttpChannel:
    """A ``pycrdt.Channel`` over an aiohttp client WebSocket: one binary message each way."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, path: str) -> None:
        self._ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> AiohttpChannel:
        return self

    async def __anext__(self) -> bytes:
        message = await self._ws.receive()
        if message.type is not aiohttp.WSMsgType.BINARY:
            raise StopAsyncIteration
        return bytes(message.data)

    async def send(self, message: bytes) -> None:
        await self._ws.send_bytes(message)

    async def recv(self) -> bytes:
        return await self.__anext__()


async def _serve(port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from pycrdt.websocket import ASGIServer, WebsocketServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    async with WebsocketServer() as rooms:
        # Hypercorn types the app and the trigger loosely; both are what it documents.
        await serve(ASGIServer(rooms), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """Serve pycrdt-websocket rooms on 127.0.0.1:PORT until SIGTERM or SIGINT."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m krill_crdt.benchmarks._yrelay PORT", file=sys.stderr)
        return 2
    asyncio.run(_serve(int(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
