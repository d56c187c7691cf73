"""The one error family of krill_crdt: every failure a user can hit is a :class:`KrillError`.

Subclasses also derive from the matching built-in (``ValueError``, ``KeyError``, ``OSError``)
where one fits, so code written against the built-ins keeps working.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "BadMacError",
    "ChainCycleError",
    "ChainDepthError",
    "ChainFanOutError",
    "ChangeStreamOverflowError",
    "CorruptStoreError",
    "FrameError",
    "KrillError",
    "MalformedFrameError",
    "NodeExistsError",
    "NodeNotFoundError",
    "OversizedFrameError",
    "PlanError",
    "SchemaVersionError",
    "StoreClosedError",
    "StoreError",
    "TruncatedFrameError",
    "UnknownVersionError",
    "UpdateRejectedError",
    "ValidationError",
]


class KrillError(Exception):
    """Base of every error raised by krill_crdt."""


class ValidationError(KrillError, ValueError):
    """A value breaks a rule of the node model.

    Attributes:
        field: dotted path of the offending field (``"meta.pin"``), or ``""`` for the whole value.
        rule: what the rule demands, in words (``"must be 0..53"``).
    """

    def __init__(self, field: str, rule: str, got: object = ..., *, node_id: str = "") -> None:
        self.field = field
        self.rule = rule
        self.got = got
        self.node_id = node_id
        where = f"{field}: " if field else ""
        tail = "" if got is ... else f", got {got!r}"
        prefix = f"node {node_id}: " if node_id else ""
        super().__init__(f"{prefix}{where}{rule}{tail}")


class SchemaVersionError(ValidationError):
    """A node was written by a schema major version this release cannot read."""


class NodeNotFoundError(KrillError, KeyError):
    """No node with that id exists in the host doc(s) asked."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "node not found"


class NodeExistsError(KrillError, ValueError):
    """A create named a node id that already exists."""


class StoreError(KrillError, OSError):
    """The durable store failed to read or write."""


class CorruptStoreError(StoreError):
    """A store file or one host doc in it cannot be read back.

    Attributes:
        path: the database file.
        doc: the host doc id affected, or ``""`` when the whole file is unreadable.
    """

    def __init__(self, path: str, doc: str, reason: str) -> None:
        self.path = path
        self.doc = doc
        self.reason = reason
        which = f"host doc {doc!r} in " if doc else ""
        super().__init__(f"{which}{path} is corrupt: {reason}")

    def __str__(self) -> str:
        which = f"host doc {self.doc!r} in " if self.doc else ""
        return f"{which}{self.path} is corrupt: {self.reason}"


class StoreClosedError(StoreError):
    """The store was used after it was closed."""


class UpdateRejectedError(KrillError, ValueError):
    """A CRDT update could not be decoded or applied; the doc is left exactly as it was."""


class AccessDeniedError(KrillError, PermissionError):
    """The access lists do not let this peer, peer id or token read or write a host doc."""


class ChangeStreamOverflowError(KrillError):
    """A change stream's consumer fell too far behind and events were dropped."""


class FrameError(KrillError, ValueError):
    """A wire frame was refused. Subclasses say why; none exposes any of the payload."""


class TruncatedFrameError(FrameError):
    """The frame ends before the length its header announces, or before a whole header."""


class OversizedFrameError(FrameError):
    """The frame, or a field in it, is larger than its limit allows."""


class MalformedFrameError(FrameError):
    """The frame's bytes do not follow the layout (bad magic, kind, flags or field bounds)."""


class UnknownVersionError(FrameError):
    """The frame's format version is not one this release reads."""


class BadMacError(FrameError):
    """The frame's MAC does not match: another swarm key, or bytes changed in flight."""


class PlanError(KrillError, ValueError):
    """A chain cannot be planned."""


class ChainCycleError(PlanError):
    """The chain's dependencies loop.

    Attributes:
        cycle: the nodes on the loop, in dependency order.
    """

    def __init__(self, cycle: list[int], message: str = "") -> None:
        self.cycle = cycle
        super().__init__(message or f"chain dependencies form a cycle through nodes {cycle}")


class ChainDepthError(PlanError):
    """The chain is deeper (in waves) than the depth limit."""


class ChainFanOutError(PlanError):
    """A node in the chain has more targets than the fan-out cap."""
