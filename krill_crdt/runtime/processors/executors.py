"""Executors: nodes that compute from their sources or act on the world.

Each executor lists its inputs in ``meta.sources``. The value of a source is what it passed
on in this invocation if it ran, else its snapshot if it is a data point (see
:func:`~krill_crdt.runtime.processors._values.source_value`).
"""

from __future__ import annotations

import ast
import asyncio
import math
import operator
import re
import string
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import orjson
from simpleeval import InvalidExpression, SimpleEval  # type: ignore[import-untyped]

from ...errors import KrillError
from ...model import CalculationMeta, ComputeMeta, LogicGateMeta, Node, NodeType
from ...model import OutgoingWebHookMeta as WebHookMeta
from ...store.series import Value
from ._values import incoming, log, resource, shown, source_value, to_bool, to_number
from .base import Context, Outcome, ProcessorError

__all__ = [
    "BACKOFF_CAP_S",
    "BACKOFF_FIRST_S",
    "CALCULATION_FUNCTIONS",
    "MAX_EXPRESSION_DEPTH",
    "MAX_EXPRESSION_NODES",
    "MAX_RESPONSE_BYTES",
    "CalculationProcessor",
    "ComputeProcessor",
    "LogicGateProcessor",
    "OutgoingWebHookProcessor",
    "aggregate",
    "evaluate",
    "gate",
    "variable_names",
]


# Logic gates.


def gate(operation: str, states: Sequence[bool]) -> bool:
    """Combine digital states.

    Args:
        operation: ``AND``, ``OR``, ``NOT`` (exactly one state), ``XOR`` (true for an odd
            number of true states), ``NAND`` or ``NOR``.
        states: the states of the sources, at least one.

    Returns:
        The gate's output.

    Raises:
        ProcessorError: no states, ``NOT`` with other than one, or an unknown operation.
    """
    if not states:
        raise ProcessorError(f"a {operation} gate needs at least one source")
    if operation == "NOT":
        if len(states) != 1:
            raise ProcessorError(f"a NOT gate takes exactly one source, it has {len(states)}")
        return not states[0]
    if operation in ("AND", "NAND"):
        result = all(states)
    elif operation in ("OR", "NOR"):
        result = any(states)
    elif operation == "XOR":
        result = sum(states) % 2 == 1
    else:
        raise ProcessorError(f"unknown gate operation {operation!r}")
    return not result if operation in ("NAND", "NOR") else result


class LogicGateProcessor:
    """Combines the digital states of its sources (a bool, a number not zero, a switch word).

    Outcome: always proceeds, with the gate's output (a bool).
    """

    type: ClassVar[NodeType] = NodeType.LogicGate
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    async def run(self, ctx: Context) -> Outcome:
        """Read every source as a state and combine them.

        Returns:
            Proceeds with the output.

        Raises:
            ProcessorError: no sources, a source without a value or with a value that is not
                a digital state (naming it), or ``NOT`` with other than one source.
        """
        meta = ctx.node.meta
        if not isinstance(meta, LogicGateMeta):
            raise ProcessorError(f"node {ctx.node.id} is a {ctx.node.type}, not a LogicGate")
        states = []
        for source in meta.sources:
            try:
                states.append(to_bool(source_value(ctx, source)))
            except ProcessorError as exc:
                raise ProcessorError(f"source {source!r}: {exc}") from None
        return Outcome(proceed=True, value=gate(meta.operation, states))


# Calculations.

#: Most syntax nodes a formula may parse into. ``(a + b) * 0.5`` is 7; 256 covers formulas
#: over a dozen sources with room to spare, and bounds the work of a single evaluation.
MAX_EXPRESSION_NODES = 256

#: Deepest nesting of a formula's syntax tree. Evaluation recurses once per level; 32 levels
#: is more than people write and far from Python's recursion limit.
MAX_EXPRESSION_DEPTH = 32


def _real(value: object) -> float:
    # Every arithmetic step goes through floats: no huge integers (9 ** 9 ** 9) and no
    # complex results ((-8) ** 0.5) can be built along the way.
    if isinstance(value, complex):
        raise ValueError("the result is not a real number")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise OverflowError("the result is not a finite number")
    return number


def _arith(op: Callable[[float, float], object]) -> Callable[[object, object], float]:
    def apply(left: object, right: object) -> float:
        return _real(op(_real(left), _real(right)))

    return apply


def _unary(op: Callable[[float], float]) -> Callable[[object], float]:
    def apply(value: object) -> float:
        return _real(op(_real(value)))

    return apply


def _round(value: object, places: object = 0) -> float:
    number = _real(places)
    if not number.is_integer():
        raise ValueError("round() takes a whole number of places")
    return _real(round(_real(value), int(number)))


def _fold(pick: Callable[..., Any]) -> Callable[..., float]:
    def apply(*values: object) -> float:
        if not values:
            raise ValueError(f"{pick.__name__}() needs at least one value")
        return _real(pick(_real(value) for value in values))

    return apply


_OPERATORS: Mapping[type[ast.AST], Callable[..., float]] = {
    ast.Add: _arith(operator.add),
    ast.Sub: _arith(operator.sub),
    ast.Mult: _arith(operator.mul),
    ast.Div: _arith(operator.truediv),
    ast.FloorDiv: _arith(operator.floordiv),
    ast.Mod: _arith(operator.mod),
    ast.Pow: _arith(operator.pow),
    ast.USub: _unary(operator.neg),
    ast.UAdd: _unary(operator.pos),
}

#: The functions a formula may call.
CALCULATION_FUNCTIONS: Mapping[str, Callable[..., float]] = {
    "min": _fold(min),
    "max": _fold(max),
    "abs": _unary(abs),
    "round": _round,
}

# The syntax a formula may use: arithmetic on numbers and names, and calls of the functions
# above. Everything else (attributes, subscripts, comparisons, lambdas, strings) is refused
# before evaluation, whatever the evaluator would allow.
_ALLOWED_SYNTAX = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Constant, ast.Load,
    *_OPERATORS,
)  # fmt: skip

_SYNTAX_NAMES = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Compare: "comparisons",
    ast.BoolOp: "and/or",
    ast.IfExp: "conditional expressions",
    ast.Lambda: "lambdas",
    ast.JoinedStr: "f-strings",
    ast.keyword: "keyword arguments",
    ast.Starred: "* arguments",
}


def _depth(node: ast.AST) -> int:
    children = list(ast.iter_child_nodes(node))
    return 1 + max((_depth(child) for child in children), default=0)


@lru_cache(maxsize=256)
def _parse(expression: str) -> ast.expr:
    """Parse and vet a formula once; the cache serves repeated runs of the same node."""
    # Step 1: syntax.
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ProcessorError(f"expression {shown(expression)} is not a formula: {reason}") from None

    # Step 2: size and depth, before walking it in any other way.
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_EXPRESSION_NODES:
        raise ProcessorError(
            f"expression is too complex: {len(nodes)} parts, at most {MAX_EXPRESSION_NODES}"
        )
    if _depth(tree) > MAX_EXPRESSION_DEPTH:
        raise ProcessorError(f"expression is nested deeper than {MAX_EXPRESSION_DEPTH} levels")

    # Step 3: only arithmetic, numbers, names and calls; then only numbers and calls of
    # known functions by name (the syntax first, so `x.y()` is reported as attribute access).
    for node in nodes:
        if not isinstance(node, _ALLOWED_SYNTAX):
            what = _SYNTAX_NAMES.get(type(node), type(node).__name__)
            raise ProcessorError(f"expression uses {what}, which formulas do not allow")
    for node in nodes:
        if isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or not isinstance(node.value, (int, float))
        ):
            raise ProcessorError(f"expression holds {shown(node.value)}; only numbers are allowed")
        if isinstance(node, ast.Call) and (
            not isinstance(node.func, ast.Name) or node.func.id not in CALCULATION_FUNCTIONS
        ):
            name = node.func.id if isinstance(node.func, ast.Name) else "that"
            raise ProcessorError(
                f"expression calls {name}(); only {', '.join(CALCULATION_FUNCTIONS)} are allowed"
            )
    return tree.body


def variable_names(sources: Sequence[str]) -> dict[str, int]:
    """The names a formula may use for its sources.

    Each source is bound by position (``a`` for the first, ``b`` for the second, up to ``z``)
    and by its id made into a name: every character other than a letter, a digit or ``_``
    becomes ``_``, and an id that does not start with a letter gets ``n_`` in front
    (``temp-kitchen`` -> ``temp_kitchen``, ``7f3a`` -> ``n_7f3a``). A position letter or a
    function name wins over an id name; an id name that two sources share is left out.

    Returns:
        Name -> index into ``sources``.
    """
    names = {letter: i for i, letter in enumerate(string.ascii_lowercase[: len(sources)])}
    by_id: dict[str, int] = {}
    shared: set[str] = set()
    for i, source in enumerate(sources):
        name = re.sub(r"[^A-Za-z0-9_]", "_", source)
        if not name[:1].isalpha():
            name = f"n_{name}"
        if name in by_id and by_id[name] != i:
            shared.add(name)
        by_id[name] = i
    for name, i in by_id.items():
        if name not in shared and name not in names and name not in CALCULATION_FUNCTIONS:
            names[name] = i
    return names


def evaluate(expression: str, variables: Mapping[str, float]) -> float:
    """Evaluate a formula over named numbers.

    Formulas use ``+ - * / // % **``, parentheses, numbers, the variables, and
    ``min``, ``max``, ``abs``, ``round``. Every step is done in floats.

    Returns:
        The result, a finite float.

    Raises:
        ProcessorError: the formula is not valid, uses anything else (attributes, imports,
            strings...), is longer than :data:`MAX_EXPRESSION_NODES` parts or deeper than
            :data:`MAX_EXPRESSION_DEPTH`, names an unknown variable, divides by zero, or its
            result is not a finite real number.
    """
    tree = _parse(expression)
    evaluator = SimpleEval(
        operators=dict(_OPERATORS), functions=dict(CALCULATION_FUNCTIONS), names=dict(variables)
    )
    try:
        return _real(evaluator.eval(expression, previously_parsed=tree))
    except ZeroDivisionError:
        raise ProcessorError("division by zero") from None
    except InvalidExpression as exc:
        known = ", ".join(sorted(variables)) or "none"
        raise ProcessorError(f"{exc} (variables: {known})") from None
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ProcessorError(f"cannot compute: {exc}") from None


class CalculationProcessor:
    """Evaluates ``expression`` over its sources as numbers (see :func:`evaluate` for the
    grammar and :func:`variable_names` for how sources are named).

    Outcome: always proceeds, with the result (a float).
    """

    type: ClassVar[NodeType] = NodeType.Calculation
    #: Waits on nothing but the host's writes: the executor steps it in place.
    inline: ClassVar[bool] = True

    async def run(self, ctx: Context) -> Outcome:
        """Read the sources and evaluate the formula.

        Returns:
            Proceeds with the result.

        Raises:
            ProcessorError: a source has no numeric value (naming it), or :func:`evaluate`
                fails.
        """
        meta = ctx.node.meta
        if not isinstance(meta, CalculationMeta):
            raise ProcessorError(f"node {ctx.node.id} is a {ctx.node.type}, not a Calculation")
        values = []
        for source in meta.sources:
            try:
                values.append(to_number(source_value(ctx, source)))
            except ProcessorError as exc:
                raise ProcessorError(f"source {source!r}: {exc}") from None
        names = variable_names(meta.sources)
        result = evaluate(meta.expression, {name: values[i] for name, i in names.items()})
        return Outcome(proceed=True, value=result)


# Aggregates over history.


def aggregate(function: str, samples: Sequence[tuple[float, Value]]) -> Value | None:
    """Aggregate samples (``(ts, value)``, any order) with one function.

    Args:
        function: ``min``, ``max``, ``mean``, ``sum``, ``count`` or ``last`` (the newest).
        samples: the samples.

    Returns:
        The result; ``count`` and ``sum`` of nothing are 0.0, the others None. ``last``
        returns the newest value as it is; the others return a float.

    Raises:
        ProcessorError: an unknown function, or a value that is not a number (bools count
            as 1 and 0) for ``min``, ``max``, ``mean`` or ``sum``.
    """
    if function == "count":
        return float(len(samples))
    if function == "last":
        return max(samples, key=lambda sample: sample[0])[1] if samples else None
    numbers = [to_number(value) for _ts, value in samples]
    if function == "sum":
        return math.fsum(numbers)
    if not numbers:
        return None
    if function == "min":
        return min(numbers)
    if function == "max":
        return max(numbers)
    if function == "mean":
        return math.fsum(numbers) / len(numbers)
    raise ProcessorError(f"unknown function {function!r}")


class ComputeProcessor:
    """Aggregates the samples of all its sources within ``range_ms`` back from now.

    The samples of every source are pooled: ``mean`` of two sources is the mean of all their
    samples in the window. Reads the ``"series"`` resource (``range(node_id, since, until)``)
    in a worker thread, since a window may hold many samples.

    Outcome: proceeds with the result. An empty window is a quiet period, not a fault:
    ``count`` and ``sum`` proceed with 0.0; ``min``, ``max``, ``mean`` and ``last`` do not
    proceed.
    """

    type: ClassVar[NodeType] = NodeType.Compute

    async def run(self, ctx: Context) -> Outcome:
        """Read each source's window and aggregate.

        Returns:
            The outcome described on the class.

        Raises:
            ProcessorError: no sources, the series cannot be read, or a sample is not a
                number where one is needed.
        """
        meta = ctx.node.meta
        if not isinstance(meta, ComputeMeta):
            raise ProcessorError(f"node {ctx.node.id} is a {ctx.node.type}, not a Compute")
        if not meta.sources:
            raise ProcessorError("a Compute node needs at least one source")
        series = resource(ctx, "series")
        now = ctx.host.now()
        since = now - meta.range_ms / 1000
        samples: list[tuple[float, Value]] = []
        try:
            for source in meta.sources:
                samples += await asyncio.to_thread(series.range, source, since, now)
        except KrillError as exc:
            raise ProcessorError(f"cannot read the series: {exc}") from None
        result = aggregate(meta.function, samples)
        if result is None:
            return Outcome(proceed=False)
        return Outcome(proceed=True, value=result)


# Outgoing webhooks.

#: First pause before a retry; each further pause doubles. 0.5 s lets a receiver that is
#: restarting come back without hammering it.
BACKOFF_FIRST_S = 0.5

#: Longest pause between two attempts, so the tenth retry does not wait minutes.
BACKOFF_CAP_S = 8.0

#: Added to an outgoing webhook's worst case of attempts and pauses to make its timeout: room
#: for building the body and reading a capped response after the last attempt's clock stops.
TIMEOUT_MARGIN_S = 1.0

#: Most response bytes read back. The response becomes the node's output value and may travel
#: on to other nodes; a hook answers with a status document, not a download.
MAX_RESPONSE_BYTES = 64 * 1024

#: HTTP statuses of at least this are the receiver's fault and worth another attempt.
_SERVER_ERROR = 500

#: Methods that carry the JSON body; GET and DELETE requests go without one.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _RetryableError(Exception):
    """One attempt failed in a way another attempt may fix."""


def _safe_url(url: str) -> str:
    # Scheme, host, port and path only: a query or user info may hold a secret, and the
    # result ends up in logs and in the node's error text.
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class OutgoingWebHookProcessor:
    """Sends an HTTP request with the chain's values as JSON.

    Body (for POST, PUT and PATCH)::

        {"node": "<this node's id>", "time": <Unix seconds>, "value": <incoming value>,
         "inputs": {"<node id>": <value it passed on>, ...}}

    One attempt may take ``timeout_ms``. A connection error, a timeout or a 5xx status is
    retried up to ``retries`` times, pausing :data:`BACKOFF_FIRST_S` doubled each time (at
    most :data:`BACKOFF_CAP_S`); any other non-2xx status fails at once. Uses the ``"http"``
    resource (an ``aiohttp.ClientSession``).

    Outcome: proceeds with ``{"status": <int>, "body": <JSON value, or text>}``.

    Args:
        backoff_first_s: first pause between attempts (tests shorten it).
        backoff_cap_s: longest pause.
    """

    type: ClassVar[NodeType] = NodeType.OutgoingWebHook

    def __init__(
        self, *, backoff_first_s: float = BACKOFF_FIRST_S, backoff_cap_s: float = BACKOFF_CAP_S
    ) -> None:
        self.backoff_first_s = backoff_first_s
        self.backoff_cap_s = backoff_cap_s

    def timeout(self, node: Node) -> float | None:
        """How long a run of this node may take: every attempt's ``timeout_ms``, every pause
        between attempts, and :data:`TIMEOUT_MARGIN_S`.

        With the defaults (5 s, 2 retries) that is 17.5 s, beyond the executor's 10 s, which
        would otherwise cut the last attempt off. The chain's timeout still bounds it.

        Returns:
            Seconds, or None for a node that is not an outgoing webhook.
        """
        meta = node.meta
        if not isinstance(meta, WebHookMeta):
            return None
        pauses = sum(self._pause(attempt) for attempt in range(1, meta.retries + 1))
        return (meta.retries + 1) * meta.timeout_ms / 1000 + pauses + TIMEOUT_MARGIN_S

    def _pause(self, attempt: int) -> float:
        """The pause before attempt number ``attempt`` (the first retry is 1)."""
        return min(self.backoff_first_s * 2.0 ** (attempt - 1), self.backoff_cap_s)

    async def run(self, ctx: Context) -> Outcome:
        """Send the request, retrying as described on the class.

        Returns:
            Proceeds with the response's status and body.

        Raises:
            ProcessorError: a non-retryable status, or the last attempt failed; the message
                names the method, the URL without query, the attempts made and the last
                reason.
        """
        # Step 1: what to send.
        node = ctx.node
        meta = node.meta
        if not isinstance(meta, WebHookMeta):
            raise ProcessorError(f"node {node.id} is a {node.type}, not an OutgoingWebHook")
        session: aiohttp.ClientSession = resource(ctx, "http")
        body: bytes | None = None
        if meta.method in _BODY_METHODS:
            body = self._body(ctx)
        target = f"{meta.method} {_safe_url(meta.url)}"

        # Step 2: attempts, with a growing pause between them.
        # NOTE: a POST whose answer timed out or was cut off may have been acted on; the
        # NOTE: retry then delivers it twice. Receivers that must not act twice can dedupe on
        # NOTE: the body's "node" and "time".
        attempts = meta.retries + 1
        reason = ""
        for attempt in range(attempts):
            if attempt:
                pause = self._pause(attempt)
                log.debug("webhook %s: retry %d in %.2f s: %s", node.id, attempt, pause, reason)
                await asyncio.sleep(pause)
            try:
                return await self._attempt(session, meta, body)
            except _RetryableError as exc:
                reason = str(exc)
        raise ProcessorError(f"{target}: failed after {attempts} attempt(s): {reason}")

    @staticmethod
    def _body(ctx: Context) -> bytes:
        payload = {
            "node": ctx.node.id,
            "time": ctx.host.now(),
            "value": incoming(ctx),
            "inputs": dict(ctx.inputs),
        }
        try:
            return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise ProcessorError(f"the values cannot be sent as JSON: {exc}") from None

    async def _attempt(
        self, session: aiohttp.ClientSession, meta: WebHookMeta, body: bytes | None
    ) -> Outcome:
        headers = {"Content-Type": "application/json"} if body is not None else None
        timeout = aiohttp.ClientTimeout(total=meta.timeout_ms / 1000)
        try:
            async with session.request(
                meta.method, meta.url, data=body, headers=headers, timeout=timeout
            ) as response:
                status = response.status
                if status >= _SERVER_ERROR:
                    raise _RetryableError(f"HTTP {status} {response.reason or ''}".rstrip())
                if not 200 <= status < 300:
                    raise ProcessorError(
                        f"{meta.method} {_safe_url(meta.url)}: refused with HTTP {status} "
                        f"{response.reason or ''}".rstrip()
                    )
                raw = await _read_capped(response, MAX_RESPONSE_BYTES)
                is_json = response.content_type == "application/json"
        except asyncio.TimeoutError:
            raise _RetryableError(f"no answer within {meta.timeout_ms} ms") from None
        except aiohttp.ClientConnectionError as exc:
            # Refused, reset, unreachable, or the server hung up: the receiver may be back soon.
            raise _RetryableError(f"{type(exc).__name__}: {exc}") from None
        except aiohttp.ClientError as exc:
            # A malformed response, too many redirects, a bad URL: another attempt fares the same.
            raise ProcessorError(
                f"{meta.method} {_safe_url(meta.url)}: {type(exc).__name__}: {exc}"
            ) from None
        return Outcome(proceed=True, value={"status": status, "body": _response_body(raw, is_json)})


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    # One read returns what has arrived so far, not necessarily the whole body: read on
    # until the end or the limit.
    data = bytearray()
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _response_body(raw: bytes, is_json: bool) -> Any:
    # NOTE: a response longer than MAX_RESPONSE_BYTES is cut there; cut JSON no longer parses
    # NOTE: and is passed on as text.
    if is_json and raw.strip():
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return raw.decode("utf-8", errors="replace")
