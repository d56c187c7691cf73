"""Data points and their filters.

A data point takes a new value (a sample handed in with the invocation, or what its
predecessors passed on), reads it as its ``data_type``, runs it past the filters that sit
under it, and, if none discards it, makes it the snapshot, appends it to the host-local
series and passes it on. Filters never run on their own: they are the data point's children
and the data point applies them; their own processors only proceed.

A Debounce filter does not discard: it holds the value back until the value has stood for
the window (see :class:`DataPointProcessor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

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
    "DebounceHost",
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


@runtime_checkable
class DebounceHost(ProcessorHost, Protocol):
    """What a data point with a Debounce filter needs of the host to hold a value back."""

    def invoke_later(self, node_id: str, value: Any, delay: float) -> None:
        """Run the chain of one of the host's nodes with ``value`` after ``delay`` seconds.

        At most one such run waits per node: a newer call for the same node cancels the
        waiting one and starts its delay again. Nothing waiting runs once the peer stopped.
        """
        ...


@dataclass(frozen=True, slots=True)
class _Settled:
    """A value a Debounce filter held back for its window and now lets through.

    The data point hands it to itself (through :meth:`DebounceHost.invoke_later`), so the
    released value runs the rest of the data point's path and then its targets, like any
    value. Only this module makes one; no JSON value can look like it.
    """

    value: Value
    arrived: float


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


def discard_reason(flt: Node, value: Value, snapshot: Value | None) -> str | None:
    """Decide whether one filter discards a new value.

    Args:
        flt: the filter node.
        value: the new value, already coerced.
        snapshot: the data point's current value, or None before its first.

    Returns:
        Why the value is discarded, or None if this filter keeps it. A Debounce filter always
        keeps it: it decides when a value arrives, not whether (its data point holds the value
        back, see :class:`DataPointProcessor`).

    Raises:
        ProcessorError: a filter that compares numbers sits under a text data point.
    """
    meta = flt.meta
    if isinstance(meta, DebounceMeta):
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

    With a Debounce filter under the point a new value is not recorded at once but held
    back until it has stood for the filter's window (the longest one, if there are several):

    * the filters that judge a value alone (DiscardAbove, DiscardBelow) apply on arrival, so
      a reading they would drop anyway neither replaces the held value nor restarts the
      window;
    * the value is handed to the host's ``invoke_later`` (:class:`DebounceHost`) for the
      window; a newer value within the window replaces it there and starts the window again;
    * when the window passes with nothing newer, the host runs the point's chain with the
      held value, which goes the rest of the way like any value: every filter but Debounce
      (a Deadband compares with the snapshot of that moment), the snapshot, the series, the
      targets.

    A released value is recorded with the time it arrived, not the time it was released: it
    is the reading of that moment and it stood from then on, so the series shows a change when
    it happened, and time ranges over the series (Compute) are not shifted by the window.

    Needs ``host.children`` (:class:`DataPointHost`), ``host.invoke_later`` when a Debounce
    filter applies (:class:`DebounceHost`) and the ``"series"`` resource
    (``append(node_id, ts, value)``).

    Outcome: proceeds with the accepted value (float, bool or str); does not proceed when a
    filter discarded it or a Debounce filter holds it back.
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
                host cannot list children or hold a value back, or the snapshot cannot be
                written. Nothing is recorded or held then.
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

        # Step 2: the value as the data type reads it, and when it arrived. A value a Debounce
        # filter held back comes back with its arrival time and is read again, in case the
        # data type was edited while it waited.
        if isinstance(raw, _Settled):
            value, now, settled = coerce(raw.value, meta.data_type), raw.arrived, True
        else:
            value, now, settled = coerce(raw, meta.data_type), host.now(), False

        # Step 3: the filters under the point. A value a Debounce filter is to hold meets only
        # those that judge it alone: a Deadband must compare with the snapshot as it is when
        # the value is released, not as it is now.
        if not isinstance(host, DataPointHost):
            raise ProcessorError("this peer's host cannot list children, so filters are unknown")
        filters = [child for child in host.children(node.id) if child.type in FILTER_TYPES]
        window_ms = 0
        if not settled:
            window_ms = max(
                (f.meta.window_ms for f in filters if isinstance(f.meta, DebounceMeta)), default=0
            )
        for flt in filters:
            if window_ms and flt.type is NodeType.Deadband:
                continue
            reason = discard_reason(flt, value, meta.snapshot_value)
            if reason is not None:
                log.debug(
                    "data point %s: %s discarded by %s: %s", node.id, shown(value), flt.id, reason
                )
                return Outcome(proceed=False)
        if window_ms:
            _hold(host, node.id, _Settled(value, now), window_ms)
            return Outcome(proceed=False)

        # Step 4: the snapshot first (it validates), then the series. Meta is one field of
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


def _hold(host: ProcessorHost, node_id: str, held: _Settled, window_ms: int) -> None:
    """Hand a value to the host to come back to its data point after the window, replacing
    one held before.

    Raises:
        ProcessorError: the host cannot run a chain later.
    """
    if not isinstance(host, DebounceHost):
        raise ProcessorError("this peer's host cannot hold values back, so Debounce cannot apply")
    host.invoke_later(node_id, held, window_ms / 1000)
    log.debug("data point %s: %s held for %d ms", node_id, shown(held.value), window_ms)


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
    """Filter: lets a value through only once ``window_ms`` passed without a newer one
    (applied by the data point, which holds the value back meanwhile)."""

    type: ClassVar[NodeType] = NodeType.Debounce
