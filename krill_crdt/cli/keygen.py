"""``krill keygen``: make the secrets a swarm runs on.

    krill keygen                      # a swarm key in ./swarm.key (mode 0600)
    krill keygen -o /etc/krill/swarm.key
    krill keygen --token admin        # a client token added to ./tokens, printed once

A swarm key is 32 random bytes, written as 64 hex digits; every peer of the swarm needs the
same file (``[peer] swarm_key_file``). A token is 32 random URL-safe characters appended to
a token file (``[http] token_file``) as ``NAME TOKEN``; it is printed so it can be handed to
the client, and nowhere else. Existing files are never overwritten: a new key would cut the
peer off from its swarm (``--force`` replaces a key on purpose).
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from pathlib import Path

__all__ = ["register", "run"]

#: Bytes of a swarm key: 256 bits, the key size of the frames' MAC.
KEY_BYTES = 32


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keygen`` subcommand."""
    parser = subparsers.add_parser(
        "keygen",
        help="write a swarm key, or add a client token",
        description=(
            "Write a new swarm key file (mode 0600), or with --token add a named client "
            "token to a token file and print it."
        ),
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="FILE",
        help="the file to write (default: ./swarm.key, or ./tokens with --token)",
    )
    parser.add_argument("--token", metavar="NAME", help="add a client token with this name")
    parser.add_argument("--force", action="store_true", help="replace an existing swarm key")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the ``keygen`` subcommand and return its exit status."""
    if args.token is not None:
        return _add_token(args.output or Path("tokens"), args.token)
    return _write_key(args.output or Path("swarm.key"), force=args.force)


def _write_key(path: Path, *, force: bool) -> int:
    from krill_crdt.runtime.access import private_file

    data = secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n"
    try:
        if force:
            scratch = path.with_name(f".{path.name}.new")
            scratch.unlink(missing_ok=True)
            private_file(scratch, data)
            scratch.replace(path)
        else:
            private_file(path, data)
    except FileExistsError:
        print(
            f"krill keygen: {path} exists; a new key cuts this peer off from its swarm "
            "(--force replaces it)",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"krill keygen: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote a new swarm key to {path} (mode 0600); copy it to every peer of the swarm")
    return 0


def _add_token(path: Path, name: str) -> int:
    from krill_crdt.errors import ValidationError
    from krill_crdt.runtime.access import Tokens, new_token, private_file
    from krill_crdt.runtime.config import TOKEN_NAME_PATTERN

    if not re.fullmatch(TOKEN_NAME_PATTERN, name):
        print("krill keygen: a token name is 1..64 of A-Z a-z 0-9 _ . -", file=sys.stderr)
        return 2
    if path.exists():
        try:
            known = Tokens.load(path).names
        except ValidationError as exc:
            print(f"krill keygen: {exc}", file=sys.stderr)
            return 1
        if name in known:
            print(f"krill keygen: {path} already has a token named {name!r}", file=sys.stderr)
            return 1
    token = new_token()
    try:
        private_file(path, f"{name} {token}\n".encode(), exclusive=False)
    except OSError as exc:
        print(f"krill keygen: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"added token {name!r} to {path} (mode 0600); give it to its client:", file=sys.stderr)
    print(token)
    return 0
