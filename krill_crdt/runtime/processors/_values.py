"""Helpers every processor shares: where a run's value comes from, and how values are read.

Values travel between nodes as plain Python values (``float``, ``bool``, ``str``, or what a
webhook body parsed to). Each processor reads them through the coercions here, so the same
value means the same thing everywhere: ``"on"`` is true for a gate, a pin and a bool data
point alike.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson

from ...errors import KrillError, NodeNotFoundError
from ...model import DataPointMeta
from .base import Context, ProcessorError

__all__ = [
    "FALSE_WORDS",
    "MAX_SHOWN_CHARS",
    "TRUE_WORDS",
    "host_error",
    "incoming",
    "log",
    "resource",
    "shown",
    "source_value",
    "to_bool",
    "to_number",
    "to_text",
    "write_meta",
]

#: The logger of every processor; messages name the node they concern.
log = logging.getLogger("krill.runtime.processors")

#: Words read as true or false (case and surrounding blanks ignored). They cover what serial
#: devices, MQTT payloads and people commonly send for a switch.
TRUE_WORDS = frozenset({"true", "on", "yes", "high", "1"})
FALSE_WORDS = frozenset({"false", "off", "no", "low", "0"})

#: Longest rendering of a value inside an error message: enough to recognise it, short enough
#: that a huge webhook body does not end up in a node's error text.
MAX_SHOWN_CHARS = 60


def shown(value: object) -> str:
    """Render a value for an error message, cut to :data:`MAX_SHOWN_CHARS`.

    Returns:
        The value's ``repr``, shortened with an ellipsis when too long.
    """
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def incoming(ctx: Context) -> Any:
    """The value a run works on: the invocation's own value, else the latest input.

    A node the chain started at gets ``ctx.value`` (a sample, a webhook body). A node further
    down gets what its predecessors passed on; with several, the last one in the executor's
    order wins (inputs of None, such as a button press, carry no value).

    Returns:
        The value, or None when there is none.
    """
    if ctx.value is not None:
        return ctx.value
    # NOTE: a node with several predecessors that all passed a value sees only one of them;
    # NOTE: nodes that combine values (gates, calculations) read their sources instead.
    for value in reversed(list(ctx.inputs.values())):
        if value is not None:
            return value
    return None


def source_value(ctx: Context, source_id: str) -> Any:
    """The current value of one of an executor's sources.

    What the source passed on in this invocation comes first, since it is the newest; else
    the source's snapshot, if it is a data point.

    Returns:
        The value, never None.

    Raises:
        ProcessorError: the source does not exist, or has no value (a data point with no
            snapshot yet, or another node that passed nothing in this invocation).
    """
    passed = ctx.inputs.get(source_id)
    if passed is not None:
        return passed
    try:
        source = ctx.host.get(source_id)
    except NodeNotFoundError:
        raise ProcessorError(f"source {source_id!r} does not exist") from None
    if isinstance(source.meta, DataPointMeta):
        if source.meta.snapshot_value is None:
            raise ProcessorError(f"source {source_id!r} has no value yet")
        return source.meta.snapshot_value
    raise ProcessorError(
        f"source {source_id!r} is a {source.type} and passed no value in this invocation"
    )


def resource(ctx: Context, name: str) -> Any:
    """A shared resource of the running peer, by name.

    Returns:
        The resource.

    Raises:
        ProcessorError: the peer has no such resource (no GPIO on a desktop, no MQTT).
    """
    try:
        return ctx.host.resource(name)
    except KeyError:
        raise ProcessorError(f"this peer has no {name!r} resource") from None


def to_number(value: object) -> float:
    """Read a value as a finite number: a number, a bool (1 or 0), or a numeric string.

    Returns:
        The number.

    Raises:
        ProcessorError: anything else, or a value that is not finite.
    """
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    number: float | None = None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            number = None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise ProcessorError(f"{shown(value)} is not a finite number")
    return number


def to_bool(value: object) -> bool:
    """Read a value as a digital state: a bool, a number (not zero is true), or a word of
    :data:`TRUE_WORDS` / :data:`FALSE_WORDS`.

    Returns:
        The state.

    Raises:
        ProcessorError: anything else (other text, a JSON object or list, a NaN).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            raise ProcessorError("NaN is neither true nor false")
        return value != 0
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ProcessorError(
        f"{shown(value)} is not a digital state (a bool, a number, or one of "
        f"{', '.join(sorted(TRUE_WORDS | FALSE_WORDS))})"
    )


def to_text(value: object) -> str:
    """Render a value as text the way people and devices expect it.

    Bools become ``true``/``false``, whole numbers lose the ``.0`` that host docs add to
    every integer, other numbers keep their shortest exact form, JSON objects and lists
    become compact JSON.

    Returns:
        The text.

    Raises:
        ProcessorError: the value is None or cannot be written as JSON.
    """
    if value is None:
        raise ProcessorError("there is no value to write as text")
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        raise ProcessorError(f"{shown(value)} cannot be written as text") from None


def host_error(action: str, exc: KrillError) -> ProcessorError:
    """Turn a store error met while writing a result into the processor's own error.

    Returns:
        A :class:`ProcessorError` that says what was being done and why it failed.
    """
    return ProcessorError(f"cannot {action}: {exc}")


async def write_meta(ctx: Context, action: str, **fields: Any) -> None:
    """Write some meta fields of the node being run, over its meta as it is now.

    The node is read right before the write, with no suspension between, so a write made by
    another run of the same node meanwhile is built on, not undone. Nothing is written when
    the fields already hold these values.

    Args:
        ctx: the run.
        action: what the write does, for the error message (``"record the pin level"``).
        fields: meta fields and their new values.

    Raises:
        ProcessorError: the node is gone or the store refused the write.
    """
    node_id = ctx.node.id
    try:
        current = ctx.host.get(node_id).meta.to_dict()
        if all(current.get(key) == value for key, value in fields.items()):
            return
        await ctx.host.update(node_id, {"meta": {**current, **fields}})
    except KrillError as exc:
        raise host_error(action, exc) from None
