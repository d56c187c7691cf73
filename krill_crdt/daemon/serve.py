"""Run one peer as a daemon until SIGTERM or SIGINT.

    exit_status = asyncio.run(serve(load_config(path), demo=path is None))

Step by step: start the simulated sensor (demo only), start the peer, create the demo project
(demo only), log the URL, tell systemd ``READY=1`` and keep its watchdog fed, wait for a
signal, tell systemd ``STOPPING=1``, stop the peer (pins to their shutdown level, store
flushed and closed, transports closed) within :data:`STOP_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from ..runtime.config import PeerConfig
from ..runtime.peer import Peer
from .demo import SimulatedSensor, ensure_demo
from .systemd import Notifier

__all__ = ["STOP_TIMEOUT_S", "serve"]

log = logging.getLogger("krill.daemon")

#: How long stopping the peer may take before the daemon gives up on a clean stop. systemd's
#: default stop timeout is 90 s, but a daemon stopped by hand or by a test must be gone within
#: 5 s; 4 s leaves a second for the rest of the shutdown.
STOP_TIMEOUT_S = 4.0


async def serve(
    config: PeerConfig,
    *,
    demo: bool = False,
    notifier: Notifier | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run a peer until SIGTERM/SIGINT (or until ``stop`` is set); return the exit status.

    Args:
        config: the peer's configuration.
        demo: also run the simulated sensor and create the demo project.
        notifier: where to send systemd notifications (from the environment by default).
        stop: set it to stop the daemon, as a signal would.

    Returns:
        0 after a clean stop, 1 if the peer could not stop within :data:`STOP_TIMEOUT_S`.

    Raises:
        KrillError, OSError: the peer could not start (a port in use, an unreadable key);
            whatever had started is stopped again.
    """
    notifier = notifier or Notifier.from_environ()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, signum, stop)

    sensor = SimulatedSensor() if demo else None
    peer = Peer(config)
    watchdog: asyncio.Task[None] | None = None
    try:
        # Step 1: start everything; the demo's sensor first so its link finds it at once.
        if sensor is not None:
            await sensor.start()
        await peer.start()
        if sensor is not None:
            await ensure_demo(peer, sensor.url, config.peer.data_dir)

        # Step 2: tell the world.
        log.info("krill serving host doc %s at %s", peer.host, peer.url)
        notifier.notify("READY=1", f"STATUS=serving host doc {peer.host} at {peer.url}")
        watchdog = loop.create_task(notifier.keep_alive())

        # Step 3: run until told to stop.
        await stop.wait()
    finally:
        notifier.notify("STOPPING=1", "STATUS=stopping")
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        # The sensor goes first: no reading may start a chain while the peer stops.
        if sensor is not None:
            await sensor.stop()
        clean = await _stop_peer(peer)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("krill stopped%s", "" if clean else " (not cleanly: the stop timed out)")
    return 0 if clean else 1


def _on_signal(signum: int, stop: asyncio.Event) -> None:
    log.info("%s received: stopping", signal.Signals(signum).name)
    stop.set()


async def _stop_peer(peer: Peer) -> bool:
    """Stop the peer within the timeout; return False if it did not finish in time."""
    try:
        await asyncio.wait_for(peer.stop(), STOP_TIMEOUT_S)
    except asyncio.TimeoutError:
        log.error("the peer did not stop within %.0f s", STOP_TIMEOUT_S)
        return False
    except Exception:
        log.exception("stopping the peer failed")
        return False
    return True
