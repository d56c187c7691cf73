"""The ``krill`` command line (also ``python -m krill_crdt``).

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed namespace and
returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: Subcommand modules, in the order ``krill --help`` lists them.
SUBCOMMANDS = ("serve", "init", "keygen", "demo", "nodes", "bench", "sim")


def build_parser() -> argparse.ArgumentParser:
    from krill_crdt import __version__

    parser = argparse.ArgumentParser(
        prog="krill", description="Keep a swarm of edge devices in sync."
    )
    parser.add_argument("--version", action="version", version=f"krill_crdt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``krill`` command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args))
