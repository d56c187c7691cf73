"""Who may read and write each host doc: the ``[access]`` lists, tokens and secret files.

Three kinds of callers reach a peer's docs, and one :class:`AccessPolicy` decides for all:

* **peers** of the swarm, named by their 16-byte peer id (hex in the lists, as ``GET /health``
  shows it). Every frame they send is MAC'd with the swarm key; the sync engine asks the
  policy before it answers a read (SYNC_STEP1) and before it applies an update;
* **clients** over HTTP and ``/ws/{doc}``, named ``token:NAME`` by the token they present,
  as listed in ``http.token_file``;
* **this peer itself** (its API, processors and anonymous clients when no token file is
  set), held to its own peer id: a peer never writes a doc the swarm would refuse from it,
  which would leave its copy forever different from everyone else's.

``[access] read`` and ``write`` are lists of entries ``WHO`` or ``DOC=WHO``, where ``WHO`` is
a peer id, ``token:NAME`` or ``*`` (everyone), and ``DOC`` a host doc id. ``WHO`` may read
(write) doc ``D`` if an entry ``WHO``, ``D=WHO``, ``*`` or ``D=*`` is in the list; whoever may
write may also read. The defaults (``["*"]`` both) let every swarm member and every valid
token do everything.

NOTE: the swarm key is shared by every member, and a frame's MAC proves only that its sender
NOTE: holds it: a member that lies about its peer id cannot be told apart. Peer lists keep
NOTE: honest but read-only members (a display, a logger) from writing; a party that must
NOTE: not be able to write at all gets a token, not the swarm key.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import ValidationError
from ..transport.http import Access
from .config import EVERYONE, PEER_ID_PATTERN, TOKEN_NAME_PATTERN, AccessConfig

__all__ = [
    "MIN_TOKEN_CHARS",
    "AccessConfig",
    "AccessPolicy",
    "Tokens",
    "check_secret_file",
    "new_token",
    "private_file",
    "read_secret",
    "token_of",
]

log = logging.getLogger("krill.runtime.access")

#: Shortest token accepted from a token file: 16 random characters are about 95 bits.
MIN_TOKEN_CHARS = 16

_PEER_ID = re.compile(PEER_ID_PATTERN)
_TOKEN_NAME = re.compile(TOKEN_NAME_PATTERN)


def _rules(entries: Iterable[str]) -> dict[str, frozenset[str]]:
    """Map each doc (``*`` for all) to the set of who may."""
    rules: dict[str, set[str]] = {}
    for entry in entries:
        doc, sep, who = entry.rpartition("=")
        if _PEER_ID.fullmatch(who.lower()):
            who = who.lower()
        rules.setdefault(doc if sep else EVERYONE, set()).add(who)
    return {doc: frozenset(names) for doc, names in rules.items()}


# --------------------------------------------------------------------------------- secrets


def check_secret_file(path: Path, what: str) -> None:
    """Warn (once per call) when a secret file can be read or written by others than its owner."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # reading it will say what is wrong
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s %s is accessible to other users (mode %03o); restrict it with: chmod 600 %s",
            what,
            path,
            stat.S_IMODE(mode),
            path,
        )


def read_secret(path: Path, key: str, what: str) -> str:
    """Read a one-line secret (a password) from ``path``, warning when others may read it.

    Raises:
        ValidationError: the file cannot be read or is empty; the message names the key and
            the file, never the content.
    """
    check_secret_file(path, what)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValidationError(key, f"cannot read {path}: {reason}") from None
    if not text:
        raise ValidationError(key, f"{path} is empty")
    return text


def new_token() -> str:
    """A fresh random token: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


class Tokens:
    """The tokens of ``http.token_file``, by name.

    The file holds one token per line: ``NAME TOKEN``, or a bare ``TOKEN`` (named
    ``default``). Blank lines and lines starting with ``#`` are skipped. Lookups compare in
    constant time, so response times say nothing about how much of a guess was right.
    """

    __slots__ = ("_by_name",)

    def __init__(self, tokens: dict[str, str]) -> None:
        self._by_name = dict(tokens)

    @classmethod
    def load(cls, path: Path, key: str = "http.token_file") -> Tokens:
        """Read a token file.

        Raises:
            ValidationError: unreadable, empty, a malformed line (named by its number), a
                token shorter than :data:`MIN_TOKEN_CHARS` or a name given twice. Messages
                never quote a token.
        """
        check_secret_file(path, "token file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = (
                exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            )
            raise ValidationError(key, f"cannot read {path}: {reason}") from None
        tokens: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) > 2:
                raise ValidationError(key, f"{path} line {number}: must be NAME TOKEN or TOKEN")
            name, token = ("default", words[0]) if len(words) == 1 else (words[0], words[1])
            if not _TOKEN_NAME.fullmatch(name):
                raise ValidationError(
                    key, f"{path} line {number}: a name is 1..64 of A-Z a-z 0-9 _ . -"
                )
            if len(token) < MIN_TOKEN_CHARS:
                raise ValidationError(
                    key, f"{path} line {number}: a token needs {MIN_TOKEN_CHARS}+ characters"
                )
            if name in tokens:
                raise ValidationError(key, f"{path} line {number}: name {name!r} given twice")
            tokens[name] = token
        if not tokens:
            raise ValidationError(key, f"{path} holds no token")
        return cls(tokens)

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def name_of(self, token: str | None) -> str | None:
        """The name of ``token``, or None when it is not one of ours."""
        if not token:
            return None
        given = token.encode("utf-8", "surrogateescape")
        found = None
        for name, known in self._by_name.items():
            # Every entry is compared, match or not, so the time taken does not depend on
            # which entry (if any) matched.
            if hmac.compare_digest(given, known.encode("utf-8")):
                found = name
        return found


# ---------------------------------------------------------------------------------- policy


class AccessPolicy:
    """Decides every read and write of a host doc, for peers, tokens and this peer."""

    __slots__ = ("_own", "_read", "_tokens", "_write")

    def __init__(
        self, config: AccessConfig, *, own_peer: bytes, tokens: Tokens | None = None
    ) -> None:
        self._read = _rules(config.read)
        self._write = _rules(config.write)
        self._own = own_peer.hex()
        self._tokens = tokens

    @property
    def requires_tokens(self) -> bool:
        """Whether HTTP and ``/ws`` clients must present a token."""
        return self._tokens is not None

    def _may(self, who: str, doc: str, write: bool) -> bool:
        lists = (self._write,) if write else (self._write, self._read)
        for rules in lists:
            for scope in (doc, EVERYONE):
                names = rules.get(scope)
                if names is not None and (who in names or EVERYONE in names):
                    return True
        return False

    def peer_may(self, peer: bytes, doc: str, write: bool) -> bool:
        """May the peer with this id read (``write=False``) or write ``doc``?

        This has the engine's ``authorize`` signature.
        """
        return self._may(peer.hex(), doc, write)

    def self_may(self, doc: str, write: bool) -> bool:
        """May this peer itself read or write ``doc``?"""
        return self._may(self._own, doc, write)

    def token_verdict(self, token: str | None, doc: str | None, write: bool) -> Access:
        """The verdict for a client presenting ``token`` (None: none presented).

        ``doc=None`` asks only whether the token is valid. Without a token file every client
        is treated as this peer itself (the default HTTP listener is on loopback).
        """
        if self._tokens is None:
            if doc is None or self.self_may(doc, write):
                return Access.ALLOW
            return Access.FORBIDDEN
        name = self._tokens.name_of(token)
        if name is None:
            return Access.UNAUTHENTICATED
        if doc is None:
            return Access.ALLOW
        if self._may(f"token:{name}", doc, write) and (not write or self.self_may(doc, True)):
            return Access.ALLOW
        return Access.FORBIDDEN


def token_of(authorization: str | None, query_token: str | None) -> str | None:
    """The token of a request: ``Authorization: Bearer X`` first, else ``?token=X``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return query_token or None


def private_file(path: Path, data: bytes, *, exclusive: bool = True) -> None:
    """Write ``data`` to a new file readable by its owner only (0600).

    Raises:
        FileExistsError: ``exclusive`` and the file exists.
        OSError: it cannot be written.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_APPEND)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "ab" if not exclusive else "wb") as handle:
        handle.write(data)
    # The umask can only take bits away; this keeps 0600 under any umask.
    os.chmod(path, 0o600)
