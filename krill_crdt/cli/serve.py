"""``krill serve [--config FILE]``: run a peer daemon until SIGTERM/SIGINT.

Without ``--config`` the peer runs on the embedded defaults (data under ``./.krill``, HTTP on
127.0.0.1:8442, multicast on loopback only, simulated GPIO, no MQTT) with a demo project fed
by a simulated sensor. ``KRILL_SECTION_KEY`` variables override the defaults and the file.

Exit status: 0 after a clean stop, 1 when the peer failed (to start, or to stop in time),
2 for a config that cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from krill_crdt.errors import KrillError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="run a peer daemon until SIGTERM/SIGINT",
        description=(
            "Run a peer: store, sync, transports, HTTP API and dashboard. Without --config, "
            "on embedded defaults (./.krill, http://127.0.0.1:8442, loopback multicast, "
            "simulated GPIO) with a demo project. KRILL_SECTION_KEY environment variables "
            "(KRILL_HTTP_LISTEN, ...) override the file. See docs/config.md."
        ),
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML config (krill init writes one)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the ``serve`` subcommand and return its exit status."""
    from krill_crdt.daemon.config import ConfigError, load_config
    from krill_crdt.daemon.logging import configure_logging
    from krill_crdt.daemon.serve import serve

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"krill serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log)
    try:
        return asyncio.run(serve(config, demo=args.config is None))
    except (KrillError, OSError) as exc:
        print(f"krill serve: cannot run the peer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C during the stop
        return 1
