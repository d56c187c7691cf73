"""Data points and their filters.

A data point takes a new value (a sample handed in with the invocation, or what its
predecessors passed on), reads it as its ``data_type``, runs it past the filters that sit
under it, and, if none discards it, makes it the snapshot, appends it to the host-local
series and passes it on. Filters never run on their own: they are the data point's children
and the data point applies them; their own processors only proceed.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

from ...errors import KrillError
from ...model import (
    DataPointMeta,
    DeadbandMeta,
    DebounceMeta,
    DiscardAboveMeta,
    DiscardBelowMeta,
    Node,
    NodeType,
)
from ...model.meta import MAX_SNAPSHOT_TEXT_CHARS
from ...store.series import Value
from ._values import host_error, incoming, log, resource, shown, to_bool, to_number, to_text
from .base import Context, Outcome, ProcessorError, ProcessorHost

__all__ = [
    "FILTER_TYPES",
    "DataPointHost",
    "DataPointProcessor",
    "DeadbandProcessor",
    "DebounceProcessor",
    "DiscardAboveProcessor",
    "DiscardBelowProcessor",
    "coerce",
    "discard_reason",
]

#: The node types a data point applies to new values, found among its children.
FILTER_TYPES = frozenset(
    {NodeType.DiscardAbove, NodeType.DiscardBelow, NodeType.Deadband, NodeType.Debounce}
)


@runtime_checkable
class DataPointHost(ProcessorHost, Protocol):
    """What a data point needs of the host beyond :class:`ProcessorHost`."""

    def children(self, node_id: str) -> list[Node]:
        """The direct children of a node (its filters among them), in a stable order.

        Raises:
            NodeNotFoundError: no such node.
        """
        ...


def coerce(value: object, data_type: str) -> Value:
    """Read a value as a data point of ``data_type`` stores it.

    * ``number``: a number, a bool (1 or 0) or a numeric string; finite.
    * ``bool``: a bool, a number (not zero is true) or a switch word (``on``, ``off``...).
    * ``text``: a string as is; anything else rendered as text (see
      :func:`~krill_crdt.runtime.processors._values.to_text`, JSON for objects and lists);
      at most :data:`~krill_crdt.model.meta.MAX_SNAPSHOT_TEXT_CHARS` characters.

    Returns:
        The value as a float, a bool or a str.

    Raises:
        ProcessorError: the value does not fit, saying which data type it was read as.
    """
    if data_type not in ("number", "bool", "text"):
        raise ProcessorError(f"unknown data_type {data_type!r}")
    try:
        if data_type == "number":
            return to_number(value)
        if data_type == "bool":
            return to_bool(value)
        text = to_text(value)
    except ProcessorError as exc:
        raise ProcessorError(f"value does not fit data_type {data_type!r}: {exc}") from None
    if len(text) > MAX_SNAPSHOT_TEXT_CHARS:
        raise ProcessorError(
            f"value does not fit data_type 'text': {len(text)} characters, at most "
            f"{MAX_SNAPSHOT_TEXT_CHARS} are kept"
        )
    return text


def discard_reason(
    flt: Node, value: Value, snapshot: Value | None, snapshot_time: float | None, now: float
) -> str | None:
    """Decide whether one filter discards a new value.

    Args:
        flt: the filter node.
        value: the new value, already coerced.
        snapshot: the data point's current value, or None before its first.
        snapshot_time: when that value was accepted, or None before the first.
        now: the time of the new value.

    Returns:
        Why the value is discarded, or None if this filter keeps it.

    Raises:
        ProcessorError: a filter that compares numbers sits under a text data point.
    """
    meta = flt.meta
    if isinstance(meta, DebounceMeta):
        # Rate limit: a value within the window of the last accepted one is dropped.
        # NOTE: this keeps the first value of a burst, not the one that held for the whole
        # NOTE: window: holding a value back would need a timer per point to release it.
        if snapshot_time is not None and now - snapshot_time < meta.window_ms / 1000:
            return f"within {meta.window_ms} ms of the last accepted value"
        return None
    if isinstance(value, str):
        raise ProcessorError(f"filter {flt.id} ({flt.type}) compares numbers; this is a text point")
    number = to_number(value)
    if isinstance(meta, DiscardAboveMeta) and number > meta.threshold:
        return f"above {meta.threshold:g}"
    if isinstance(meta, DiscardBelowMeta) and number < meta.threshold:
        return f"below {meta.threshold:g}"
    if isinstance(meta, DeadbandMeta) and snapshot is not None:
        change = abs(number - to_number(snapshot))
        if change < meta.band:
            return f"changed by {change:g}, less than the band {meta.band:g}"
    return None


class DataPointProcessor:
    """Records a new value of a data point.

    Reads ``ctx.value``, else the latest input. With no value at all (a plain invoke, a
    button press upstream) it passes the current snapshot on without recording anything, and
    does not proceed before the first snapshot exists.

    Needs ``host.children`` (:class:`DataPointHost`) and the ``"series"`` resource
    (``append(node_id, ts, value)``).

    Outcome: proceeds with the accepted value (float, bool or str); does not proceed when a
    filter discarded it.
    """

    type: ClassVar[NodeType] = NodeType.DataPoint
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    async def run(self, ctx: Context) -> Outcome:
        """Coerce, filter, record and pass on a new value.

        Returns:
            The outcome described on the class.

        Raises:
            ProcessorError: the value does not fit the data type, a filter cannot apply, the
                host cannot list children, or the snapshot cannot be written. Nothing is
                recorded then.
        """
        # Step 1: the node as it is now, not as the run began, so two samples in quick
        # succession compare against each other.
        host = ctx.host
        node = host.get(ctx.node.id)
        meta = node.meta
        if not isinstance(meta, DataPointMeta):
            raise ProcessorError(f"node {node.id} is a {node.type}, not a DataPoint")
        raw = incoming(ctx)
        if raw is None:
            return Outcome(meta.snapshot_value is not None, meta.snapshot_value)

        # Step 2: type, then every filter under the point.
        value = coerce(raw, meta.data_type)
        now = host.now()
        if not isinstance(host, DataPointHost):
            raise ProcessorError("this peer's host cannot list children, so filters are unknown")
        for child in host.children(node.id):
            if child.type not in FILTER_TYPES:
                continue
            reason = discard_reason(child, value, meta.snapshot_value, meta.snapshot_time, now)
            if reason is not None:
                log.debug(
                    "data point %s: %s discarded by %s: %s", node.id, shown(value), child.id, reason
                )
                return Outcome(proceed=False)

        # Step 3: the snapshot first (it validates), then the series. Meta is one field of
        # the node, so it is written back whole with the two snapshot keys changed.
        # NOTE: as one field, meta resolves concurrent writes as a whole: an edit of another
        # NOTE: meta key (unit, targets) made on another peer before it saw this snapshot
        # NOTE: can lose to it, or win over it, when the two meet.
        fields = meta.to_dict()
        fields["snapshot_value"] = value
        fields["snapshot_time"] = now
        try:
            await host.update(node.id, {"meta": fields})
            resource(ctx, "series").append(node.id, now, value)
        except KrillError as exc:
            raise host_error("record the value", exc) from None
        return Outcome(proceed=True, value=value)


class _FilterProcessor:
    """A filter run on its own only proceeds: its data point applies it (see above)."""

    type: ClassVar[NodeType]
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    async def run(self, ctx: Context) -> Outcome:
        """Pass the incoming value on unchanged.

        Returns:
            Proceeds with the value it was given (None if none).
        """
        return Outcome(proceed=True, value=incoming(ctx))


class DiscardAboveProcessor(_FilterProcessor):
    """Filter: drops a value above ``threshold`` (applied by the data point)."""

    type: ClassVar[NodeType] = NodeType.DiscardAbove


class DiscardBelowProcessor(_FilterProcessor):
    """Filter: drops a value below ``threshold`` (applied by the data point)."""

    type: ClassVar[NodeType] = NodeType.DiscardBelow


class DeadbandProcessor(_FilterProcessor):
    """Filter: drops a value closer than ``band`` to the snapshot (applied by the data point)."""

    type: ClassVar[NodeType] = NodeType.Deadband


class DebounceProcessor(_FilterProcessor):
    """Filter: drops a value within ``window_ms`` of the last accepted one (applied by the
    data point)."""

    type: ClassVar[NodeType] = NodeType.Debounce
