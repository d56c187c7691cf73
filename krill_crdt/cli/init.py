"""``krill init [--lan] [--output FILE] [--force]``: write a commented config file.

Without ``--lan`` the file holds the embedded defaults, every key under its comment. With
``--lan`` it is set up for a LAN deployment (listen on every interface, multicast on a LAN
address the user fills in) and a fresh swarm key is written next to it (32 random bytes as
hex, mode 0600; an existing key is kept, as replacing it would cut the peer off from its swarm).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``init`` subcommand."""
    parser = subparsers.add_parser(
        "init",
        help="write a commented config file",
        description=(
            "Write a config file with every key and its comment. --lan writes one for a LAN "
            "deployment and generates the swarm key file next to it."
        ),
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=Path("krill.toml"),
        metavar="FILE",
        help="where to write the config (default: ./krill.toml)",
    )
    parser.add_argument("--lan", action="store_true", help="a LAN deployment, with a swarm key")
    parser.add_argument("--force", action="store_true", help="overwrite an existing config file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the ``init`` subcommand and return its exit status."""
    from krill_crdt.daemon.template import render_config, write_swarm_key

    output: Path = args.output
    text = render_config(lan=args.lan)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(output, flags, 0o644)
    except FileExistsError:
        print(f"krill init: {output} exists; --force overwrites it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"krill init: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"wrote {output}")

    if args.lan:
        key = output.parent / "swarm.key"
        try:
            written = write_swarm_key(key)
        except OSError as exc:
            print(f"krill init: cannot write {key}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"{'wrote a new' if written else 'kept the existing'} swarm key {key} (0600)")
        print(
            f"next: set [discovery] interface in {output} to this machine's LAN address, "
            f"and copy {key} to every peer of the swarm"
        )
    return 0
