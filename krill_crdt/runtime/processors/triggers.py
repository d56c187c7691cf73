"""Triggers: nodes that start chains or decide whether a chain goes on.

Thresholds sit under a data point and let its chain go on only when the value crosses a level
(with hysteresis). Timers are started by the runtime's scheduler, which asks them for their
next fire time through :class:`Scheduled`. Buttons and incoming webhooks are invoked by the
HTTP API; the helpers here check a webhook's token and read its body.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import datetime
from typing import Any, ClassVar, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import CroniterError, croniter  # type: ignore[import-untyped]

from ...model import (
    CronTimerMeta,
    DataPointMeta,
    HighThresholdMeta,
    IncomingWebHookMeta,
    LowThresholdMeta,
    Node,
    NodeType,
    TimerMeta,
)
from ._values import incoming, log, shown, to_number, write_meta
from .base import Context, Outcome, ProcessorError

__all__ = [
    "MAX_WEBHOOK_BODY_BYTES",
    "ButtonProcessor",
    "CronTimerProcessor",
    "HighThresholdProcessor",
    "IncomingWebHookProcessor",
    "LowThresholdProcessor",
    "Scheduled",
    "TimerProcessor",
    "check_token",
    "hash_token",
    "parse_body",
]

#: Largest webhook body read. A body becomes a chain's value and may end up in a text data
#: point (at most 1024 characters) or an outgoing request; 64 KiB is far beyond any real
#: trigger payload and keeps a hostile caller from making every node downstream carry megabytes.
MAX_WEBHOOK_BODY_BYTES = 64 * 1024


class Scheduled(Protocol):
    """A processor whose node fires on its own schedule (the runtime's scheduler uses it)."""

    def next_fire(self, node: Node, after: float) -> float | None:
        """The next time the node fires, strictly after ``after`` (Unix seconds).

        Returns:
            The time, or None when the node will not fire again.

        Raises:
            ProcessorError: the node's schedule is invalid.
        """
        ...


# Thresholds.


class _ThresholdProcessor:
    """Fires on a crossing of ``level``, then waits to be re-armed past the hysteresis band.

    State: the armed flag, kept in the node's ``meta.armed`` (written only when it flips, so a
    steady signal costs no writes) and mirrored in memory, where each run reads and sets it
    without suspending in between: two runs of one node cannot both fire on one crossing.
    A restarted host reads the flag back from its host doc, so it neither fires again for a
    crossing it already fired on nor misses the first crossing after the restart.

    A node's very first run (``armed`` still None) only learns the flag from the value it sees
    (armed if the value is past the re-arm point) and never fires: nothing says whether the
    value crossed before the node existed.
    """

    type: ClassVar[NodeType]
    #: True: fires when the value rises to the level; False: when it falls to it.
    rising: ClassVar[bool]
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    def __init__(self) -> None:
        self._armed: dict[str, bool] = {}

    def forget(self, node_id: str) -> None:
        """Drop the in-memory flag of a node; its next run reads it from the node again."""
        self._armed.pop(node_id, None)

    def armed(self, node_id: str) -> bool | None:
        """Whether a node is armed as this process knows it; None before its first run here.

        Returns:
            The flag, or None.
        """
        return self._armed.get(node_id)

    async def run(self, ctx: Context) -> Outcome:
        """Compare the data point's value with the level.

        The value is what the chain passed on (the data point just accepted it), else the
        invocation's value, else the parent data point's snapshot.

        Returns:
            Proceeds with the value (a float) only when this value fires the trigger.

        Raises:
            ProcessorError: there is no value, it is not a number, or the flag cannot be
                written.
        """
        # Step 1: the value and the two points of the hysteresis band.
        node = ctx.node
        meta = node.meta
        if not isinstance(meta, (HighThresholdMeta, LowThresholdMeta)):
            raise ProcessorError(f"node {node.id} is a {node.type}, not a threshold")
        value = to_number(self._value(ctx))
        if self.rising:
            crossed, rearm = value >= meta.level, value < meta.level - meta.hysteresis
        else:
            crossed, rearm = value <= meta.level, value > meta.level + meta.hysteresis

        # Step 2: the transition, decided and recorded in memory with no await in between.
        armed = self._armed.get(node.id)
        if armed is None:
            # First run in this process: what the host doc kept, as it is now.
            stored = ctx.host.get(node.id).meta
            if isinstance(stored, (HighThresholdMeta, LowThresholdMeta)):
                armed = stored.armed
        fired = armed is True and crossed
        if armed is None:
            now_armed = rearm
        elif fired:
            now_armed = False
        else:
            now_armed = armed or rearm
        self._armed[node.id] = now_armed
        if fired:
            log.debug("threshold %s fired at %s", node.id, value)

        # Step 3: the flag into the node, when it changed, so a restart picks it up.
        await write_meta(ctx, "record the threshold's armed state", armed=now_armed)
        return Outcome(proceed=fired, value=value)

    @staticmethod
    def _value(ctx: Context) -> Any:
        value = incoming(ctx)
        if value is not None:
            return value
        parent = ctx.node.parent
        if parent is not None:
            meta = ctx.host.get(parent).meta
            if isinstance(meta, DataPointMeta) and meta.snapshot_value is not None:
                return meta.snapshot_value
        raise ProcessorError("no value to compare: the data point above has none yet")


class HighThresholdProcessor(_ThresholdProcessor):
    """Fires when the value rises to ``level`` or above, having been below
    ``level - hysteresis`` since it last fired."""

    type: ClassVar[NodeType] = NodeType.HighThreshold
    rising: ClassVar[bool] = True


class LowThresholdProcessor(_ThresholdProcessor):
    """Fires when the value falls to ``level`` or below, having been above
    ``level + hysteresis`` since it last fired."""

    type: ClassVar[NodeType] = NodeType.LowThreshold
    rising: ClassVar[bool] = False


# Timers.


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProcessorError(f"unknown time zone {name!r}") from None


class CronTimerProcessor:
    """Fires on a cron schedule read in the node's time zone.

    ``expression`` has 5 fields (minute hour day month weekday) or 6 with seconds first.
    croniter's extensions are accepted too (``L``, ``#``, and ``H``, hashed per node id so
    nodes with the same line spread out). Across a daylight saving change a time that does
    not exist fires at the first minute after the gap; a time that exists twice fires once.

    Outcome: proceeds with the invocation's value (None when the scheduler invokes it).
    """

    type: ClassVar[NodeType] = NodeType.CronTimer
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    def next_fire(self, node: Node, after: float) -> float:
        """The next time the schedule fires, strictly after ``after``.

        Returns:
            Unix time in seconds.

        Raises:
            ProcessorError: the expression or the time zone is invalid, naming it, or the
                expression never matches a real date (``0 0 30 2 *``).
        """
        meta = node.meta
        if not isinstance(meta, CronTimerMeta):
            raise ProcessorError(f"node {node.id} is a {node.type}, not a CronTimer")
        zone = _zone(meta.timezone)
        expression = meta.expression
        start = datetime.fromtimestamp(after, zone)
        try:
            schedule = croniter(
                expression,
                start,
                second_at_beginning=len(expression.split()) == 6,
                hash_id=node.id,
            )
            return float(schedule.get_next(float))
        except (CroniterError, ValueError, OverflowError) as exc:
            raise ProcessorError(f"invalid cron expression {expression!r}: {exc}") from None

    async def run(self, ctx: Context) -> Outcome:
        """Fire: the scheduler invokes the node when it is due.

        Returns:
            Proceeds with the invocation's value.

        Raises:
            ProcessorError: the expression is invalid (so a broken schedule shows as an error
                on the node at its first invoke).
        """
        self.next_fire(ctx.node, ctx.host.now())
        return Outcome(proceed=True, value=ctx.value)


class TimerProcessor:
    """Fires every ``interval_ms``, or once when ``one_shot``.

    A repeating timer fires on a grid anchored at the Unix epoch (an hourly timer at whole
    UTC hours), so its phase does not drift with run times and is the same after a restart.
    A one-shot timer fires once, one interval after the scheduler first asks for it.

    Outcome: proceeds with the invocation's value; a one-shot timer that already fired does
    not proceed.
    """

    type: ClassVar[NodeType] = NodeType.Timer
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    def __init__(self) -> None:
        # One-shot bookkeeping by node id, tied to the meta it was made with: a changed
        # interval (or a one-shot switched off and on) arms the timer again.
        self._due: dict[str, tuple[TimerMeta, float]] = {}
        self._fired: dict[str, TimerMeta] = {}

    def next_fire(self, node: Node, after: float) -> float | None:
        """The next time the timer fires.

        Returns:
            For a repeating timer, the first grid time strictly after ``after``. For a
            one-shot timer, the time fixed at the first call (``after`` + interval), even if
            that is now past (fire at once), or None once it has fired.

        Raises:
            ProcessorError: the node is not a Timer.
        """
        meta = self._meta(node)
        interval = meta.interval_ms / 1000
        if meta.one_shot:
            # NOTE: one-shot state lives in memory only: after a restart a one-shot timer
            # NOTE: that already fired is armed again and fires once more.
            if self._fired.get(node.id) == meta:
                return None
            due = self._due.get(node.id)
            if due is None or due[0] != meta:
                due = self._due[node.id] = (meta, after + interval)
            return due[1]

        # Start one step early and walk forward: float division near a grid point can round
        # either way, and the result must be strictly after ``after``.
        tick = math.floor(after / interval) - 1
        while tick * interval <= after:
            tick += 1
        return tick * interval

    async def run(self, ctx: Context) -> Outcome:
        """Fire, unless this is a one-shot timer that has fired already.

        Returns:
            The outcome described on the class.

        Raises:
            ProcessorError: the node is not a Timer.
        """
        meta = self._meta(ctx.node)
        if meta.one_shot:
            if self._fired.get(ctx.node.id) == meta:
                return Outcome(proceed=False)
            self._fired[ctx.node.id] = meta
            self._due.pop(ctx.node.id, None)
        return Outcome(proceed=True, value=ctx.value)

    @staticmethod
    def _meta(node: Node) -> TimerMeta:
        if not isinstance(node.meta, TimerMeta):
            raise ProcessorError(f"node {node.id} is a {node.type}, not a Timer")
        return node.meta


# Buttons and incoming webhooks.


class ButtonProcessor:
    """A press in a dashboard. Outcome: always proceeds, with the invocation's value."""

    type: ClassVar[NodeType] = NodeType.Button
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    async def run(self, ctx: Context) -> Outcome:
        """Proceed.

        Returns:
            Proceeds with ``ctx.value``.
        """
        return Outcome(proceed=True, value=ctx.value)


class IncomingWebHookProcessor:
    """A request reached the node's path. The HTTP route checks the token
    (:func:`check_token`), reads the body (:func:`parse_body`) and invokes the node with it.

    Outcome: always proceeds, with the parsed body (None for an empty body).
    """

    type: ClassVar[NodeType] = NodeType.IncomingWebHook
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    async def run(self, ctx: Context) -> Outcome:
        """Proceed with the body.

        Returns:
            Proceeds with ``ctx.value``.
        """
        return Outcome(proceed=True, value=ctx.value)


def hash_token(token: str) -> str:
    """The form a webhook token is stored in (``meta.token_hash``).

    Returns:
        SHA-256 of the token's UTF-8 bytes, as 64 lowercase hex digits.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_token(node: Node, token: str | None) -> bool:
    """Check a caller's token against an incoming webhook's ``token_hash``.

    The comparison is over the two SHA-256 hex digests with :func:`hmac.compare_digest`, so
    its time does not depend on how much of the token was right.

    Returns:
        True only if the node has a token hash and the token matches it. A node without a
        token hash refuses every call.

    Raises:
        ProcessorError: the node is not an incoming webhook.
    """
    meta = node.meta
    if not isinstance(meta, IncomingWebHookMeta):
        raise ProcessorError(f"node {node.id} is a {node.type}, not an IncomingWebHook")
    if not meta.token_hash or token is None:
        return False
    return hmac.compare_digest(hash_token(token), meta.token_hash)


def parse_body(body: bytes) -> Any:
    """Read a webhook request body as JSON.

    Returns:
        The parsed value; None for an empty (or all-blank) body.

    Raises:
        ProcessorError: the body is larger than :data:`MAX_WEBHOOK_BODY_BYTES` or is not
            valid UTF-8 JSON; the message says which and where.
    """
    if len(body) > MAX_WEBHOOK_BODY_BYTES:
        raise ProcessorError(
            f"webhook body is {len(body)} bytes, at most {MAX_WEBHOOK_BODY_BYTES} are read"
        )
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProcessorError(f"webhook body is not valid JSON ({exc}): {shown(body)}") from None
