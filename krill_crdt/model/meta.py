"""The typed meta of every node type.

Each node type has one meta class here; :data:`krill_crdt.model.CATALOG` says which. Fields
without a default are required because no value is safe to assume for them (a GPIO pin number,
a webhook URL, a cron line). Every other field has the default a new node starts with.

Chains are edges stored in meta: a node that takes part in chains (pins, data points, triggers,
executors) lists in ``targets`` the node ids to invoke after it, and an executor lists in
``sources`` the node ids whose values are its inputs. Both are :class:`ChainMeta` (and
:class:`ExecutorMeta`) values, so the chain planner can find them without knowing every type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ..errors import ValidationError
from . import _formats as formats
from ._meta_base import Meta
from ._rules import (
    Flag,
    IdList,
    IntIn,
    Maybe,
    OneOf,
    Real,
    Text,
    check_id,
    check_id_or_empty,
    check_real,
    check_text,
    shown,
)

__all__ = [
    "BAUD_RATES",
    "BCM_PIN_MAX",
    "DEFAULT_HTTP_PORT",
    "MAX_DEBOUNCE_MS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_PRECISION",
    "MAX_RANGE_MS",
    "MAX_SNAPSHOT_TEXT_CHARS",
    "MAX_TIMER_MS",
    "MAX_UNIT_CHARS",
    "MAX_USER_AGENT_CHARS",
    "MAX_VERSION_CHARS",
    "MIN_TIMER_MS",
    "ButtonMeta",
    "CalculationMeta",
    "ChainMeta",
    "ClientMeta",
    "ComputeMeta",
    "CronTimerMeta",
    "DataPointMeta",
    "DeadbandMeta",
    "DebounceMeta",
    "DiscardAboveMeta",
    "DiscardBelowMeta",
    "ExecutorMeta",
    "HighThresholdMeta",
    "IncomingWebHookMeta",
    "LogicGateMeta",
    "LowThresholdMeta",
    "Meta",
    "MqttBridgeMeta",
    "OutgoingWebHookMeta",
    "PeerMeta",
    "PinMeta",
    "ProjectMeta",
    "SerialDeviceMeta",
    "ServerMeta",
    "TimerMeta",
]

#: The port a server's HTTP API listens on unless configured otherwise.
DEFAULT_HTTP_PORT = 8442

#: Highest BCM GPIO number: the Pi's SoC numbers its lines 0..53 (the header exposes 0..27).
BCM_PIN_MAX = 53

#: Longest unit of a data point ("°C", "kWh", "m³/h"); a unit is a label, not a sentence.
MAX_UNIT_CHARS = 32

#: Most decimal places a data point shows. A double carries 15 to 17 significant digits, so
#: more places would only print noise.
MAX_PRECISION = 15

#: Longest text a text data point keeps as its snapshot. A status line, not a document: every
#: new value travels to every follower of the host doc as a delta.
MAX_SNAPSHOT_TEXT_CHARS = 1024

#: Longest project description. Enough for a few paragraphs of notes.
MAX_DESCRIPTION_CHARS = 4096

#: Longest client user agent; browsers send a few hundred characters at most.
MAX_USER_AGENT_CHARS = 512

#: Longest debounce window: 10 minutes. Holding a value back longer is a delay, not a debounce.
MAX_DEBOUNCE_MS = 600_000

#: Shortest timer interval. Each tick may end in writes every follower receives; ten a second
#: is already more than a swarm of small hosts should carry for one timer.
MIN_TIMER_MS = 100

#: Longest timer interval: 31 days. Anything rarer is a calendar event, which a CronTimer says
#: better and which survives restarts.
MAX_TIMER_MS = 31 * 24 * 3600 * 1000

#: Longest window a Compute node aggregates over: one year of host-local history.
MAX_RANGE_MS = 366 * 24 * 3600 * 1000

#: Baud rates pyserial accepts on POSIX systems.
BAUD_RATES = (
    50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600,
    115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000,
    2500000, 3000000, 3500000, 4000000,
)  # fmt: skip

#: Longest release string a server reports ("1.4.0rc2+g1234abc"): a version, not a note.
MAX_VERSION_CHARS = 64

# Lowest and highest TCP port.
_PORT = IntIn(1, 65535)

# A Unix time in seconds, or None while unknown.
_WHEN = Maybe(Real(lo=0.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainMeta(Meta):
    """Meta of a node that takes part in chains.

    Attributes:
        targets: ids of the nodes to invoke after this one, in order.
    """

    targets: Annotated[tuple[str, ...], IdList()] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorMeta(ChainMeta):
    """Meta of an executor: a chain node that computes from the values of other nodes.

    Attributes:
        sources: ids of the nodes whose values are its inputs, in order.
    """

    sources: Annotated[tuple[str, ...], IdList()] = ()


# The structure of the swarm.


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerMeta(Meta):
    """Meta of a server: a host that owns a host doc and runs its nodes.

    The status fields are written by the server itself, when it starts and then every half
    minute or so, never by anyone else.

    Attributes:
        address: host name or IP address others reach it at; ``""`` while unknown.
        port: its HTTP port.
        version: the krill_crdt release it runs; ``""`` before it first started.
        started_at: when it last started (Unix time, seconds); ``None`` before that.
        uptime_s: seconds it had been up when it last wrote its status.
        last_seen: when it last wrote its status (its own clock): how stale the status is.
    """

    address: Annotated[str, formats.host_address] = ""
    port: Annotated[int, _PORT] = DEFAULT_HTTP_PORT
    version: Annotated[str, Text(MAX_VERSION_CHARS)] = ""
    started_at: Annotated[float | None, _WHEN] = None
    uptime_s: Annotated[float, Real(lo=0.0)] = 0.0
    last_seen: Annotated[float | None, _WHEN] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientMeta(Meta):
    """Meta of a client: a browser, app or script that edits the graph without hosting nodes.

    Attributes:
        user_agent: what the client says it is.
        token_id: id of the API token it signed in with (never the token); ``""`` if none.
        last_seen: when the client last said it was there (Unix time, seconds, written by the
            client); ``None`` if never.
        online: whether ``last_seen`` is recent, as the host judged it when it last wrote
            its status.
    """

    user_agent: Annotated[str, Text(MAX_USER_AGENT_CHARS)] = ""
    token_id: Annotated[str, check_id_or_empty] = ""
    last_seen: Annotated[float | None, _WHEN] = None
    online: Annotated[bool, Flag()] = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectMeta(Meta):
    """Meta of a project: a folder that groups data points, triggers and executors.

    Attributes:
        description: free notes; may span lines.
    """

    description: Annotated[str, Text(MAX_DESCRIPTION_CHARS, multiline=True)] = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMeta(Meta):
    """Meta of a peer a server has seen in the swarm.

    Attributes:
        peer_id: the peer's id, as its beacons carry it (hex).
        endpoint: its HTTP endpoint (``http://...`` or ``https://...``); ``""`` while unknown.
        online: whether the server hears from it, as of the server's last status write.
        last_seen: when the server last heard from it (the server's clock); ``None`` if never.
    """

    peer_id: Annotated[str, check_id]
    endpoint: Annotated[str, formats.optional_http_url] = ""
    online: Annotated[bool, Flag()] = False
    last_seen: Annotated[float | None, _WHEN] = None


# Inputs and values.


@dataclass(frozen=True, slots=True, kw_only=True)
class PinMeta(ChainMeta):
    """Meta of a GPIO pin on its server, numbered the BCM way.

    Attributes:
        pin: BCM line number, 0..53.
        mode: ``input``, ``output`` or ``pwm``.
        pull: bias resistor of an input: ``none``, ``up`` or ``down``.
        initial: level driven when the pin is claimed: ``low`` or ``high``.
        shutdown: level left behind when the host stops: ``low`` or ``high``.
        active_low: the pin's logical "on" is the electrical low level.
        level: the logical state it was last driven to or read at (for ``pwm``: whether the
            duty is above zero); ``None`` before its host first drove or read it.
        duty: the PWM duty cycle last set, in percent; ``None`` for other modes.
        level_time: when ``level`` last changed (Unix time, seconds); ``None`` with it.
    """

    pin: Annotated[int, IntIn(0, BCM_PIN_MAX)]
    mode: Annotated[str, OneOf(("input", "output", "pwm"))] = "input"
    pull: Annotated[str, OneOf(("none", "up", "down"))] = "none"
    initial: Annotated[str, OneOf(("low", "high"))] = "low"
    shutdown: Annotated[str, OneOf(("low", "high"))] = "low"
    active_low: Annotated[bool, Flag()] = False
    level: Annotated[bool | None, Maybe(Flag())] = None
    duty: Annotated[float | None, Maybe(Real(lo=0.0, hi=100.0))] = None
    level_time: Annotated[float | None, _WHEN] = None


def _snapshot(field: str, value: object) -> float | bool | str:
    # The data type decides which of these fits; that is checked with the other fields.
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return check_text(field, value, MAX_SNAPSHOT_TEXT_CHARS)
    return check_real(field, value)


# Python type of the snapshot value for each data type.
_SNAPSHOT_TYPES = {"number": float, "bool": bool, "text": str}


@dataclass(frozen=True, slots=True, kw_only=True)
class DataPointMeta(ChainMeta):
    """Meta of a data point: a named value with history, fed by pins, devices or executors.

    Attributes:
        unit: unit shown next to the value; may be empty.
        data_type: ``number``, ``bool`` or ``text``.
        precision: decimal places a number is shown with.
        snapshot_value: the last accepted value; ``None`` before the first.
        snapshot_time: when it was accepted (Unix time, seconds); ``None`` before the first.
    """

    unit: Annotated[str, Text(MAX_UNIT_CHARS)] = ""
    data_type: Annotated[str, OneOf(("number", "bool", "text"))] = "number"
    precision: Annotated[int, IntIn(0, MAX_PRECISION)] = 2
    snapshot_value: Annotated[float | bool | str | None, Maybe(_snapshot)] = None
    snapshot_time: Annotated[float | None, Maybe(Real(lo=0.0))] = None

    def _check_together(self) -> None:
        if (self.snapshot_value is None) != (self.snapshot_time is None):
            raise ValidationError(
                "meta.snapshot_time",
                "must be set exactly when snapshot_value is set",
                self.snapshot_time,
            )
        wanted = _SNAPSHOT_TYPES[self.data_type]
        if self.snapshot_value is not None and type(self.snapshot_value) is not wanted:
            raise ValidationError(
                "meta.snapshot_value",
                f"must be a {self.data_type} for data_type {self.data_type!r}",
                shown(self.snapshot_value),
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialDeviceMeta(Meta):
    """Meta of a serial device whose lines feed the data points under it.

    Attributes:
        port: device path (``/dev/ttyUSB0``) or pyserial URL (``loop://``, ``socket://h:p``).
        baudrate: one of :data:`BAUD_RATES`.
        bytesize: data bits, 5..8.
        parity: ``N``, ``E``, ``O``, ``M`` or ``S`` (pyserial's letters).
        stopbits: 1, 1.5 or 2.
        terminator: what ends a line: ``"\\n"``, ``"\\r\\n"`` or ``"\\r"``.
        parse: how a line becomes a value: ``number`` (the whole line), ``text`` (the whole
            line) or ``regex`` (the first group of ``pattern``).
        pattern: regular expression with a capture group; set exactly when ``parse`` is
            ``regex``.
    """

    port: Annotated[str, formats.serial_port]
    baudrate: Annotated[int, OneOf(BAUD_RATES)] = 9600
    bytesize: Annotated[int, OneOf((5, 6, 7, 8))] = 8
    parity: Annotated[str, OneOf(("N", "E", "O", "M", "S"))] = "N"
    stopbits: Annotated[float, OneOf((1.0, 1.5, 2.0))] = 1.0
    terminator: Annotated[str, OneOf(("\n", "\r\n", "\r"))] = "\n"
    parse: Annotated[str, OneOf(("number", "text", "regex"))] = "number"
    # NOTE: the pattern is checked for syntax only. A pattern with nested repeats can backtrack
    # for a long time; this stays harmless only while the runtime bounds the line length it
    # matches against.
    pattern: Annotated[str, formats.regex_pattern] = ""

    def _check_together(self) -> None:
        if (self.parse == "regex") != bool(self.pattern):
            raise ValidationError(
                "meta.pattern", "must be set exactly when parse is 'regex'", shown(self.pattern)
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttBridgeMeta(Meta):
    """Meta of an MQTT bridge between the broker and the data points of its host.

    Attributes:
        topic: the MQTT topic it publishes to, or the filter it subscribes to (``+`` and
            ``#`` allowed as whole levels, for subscribing only).
        qos: MQTT quality of service, 0..2.
        direction: ``publish`` (the value its chain brings goes to ``topic``), ``subscribe``
            (each message on ``topic`` becomes a new value of the data points under it) or
            ``both``; ``both`` needs a plain topic.
        value_path: where the value sits in a JSON object message, as keys joined by ``.``
            (``"value"``, ``"sensor.temp"``); ``""`` takes the whole message. A message that
            is a bare number, boolean or text is its own value whatever the path.
        retain: published messages are retained by the broker, so a subscriber that comes
            later gets the last value at once.
    """

    topic: Annotated[str, formats.topic_filter]
    qos: Annotated[int, OneOf((0, 1, 2))] = 1
    direction: Annotated[str, OneOf(("publish", "subscribe", "both"))] = "publish"
    value_path: Annotated[str, formats.json_path] = "value"
    retain: Annotated[bool, Flag()] = False

    def _check_together(self) -> None:
        if self.direction == "both" and ("+" in self.topic or "#" in self.topic):
            raise ValidationError(
                "meta.topic", "must be a plain topic (no '+' or '#') for direction 'both'"
            )

    @property
    def publishes(self) -> bool:
        """True when the bridge publishes what its chain brings."""
        return self.direction != "subscribe"

    @property
    def subscribes(self) -> bool:
        """True when the bridge feeds the data points under it from the broker."""
        return self.direction != "publish"


# Filters, which sit under a data point and decide whether a new value is kept.


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscardAboveMeta(Meta):
    """Meta of a filter that drops values above a threshold.

    Attributes:
        threshold: highest value kept.
    """

    threshold: Annotated[float, Real()]


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscardBelowMeta(Meta):
    """Meta of a filter that drops values below a threshold.

    Attributes:
        threshold: lowest value kept.
    """

    threshold: Annotated[float, Real()]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadbandMeta(Meta):
    """Meta of a filter that drops values within a band around the last kept one.

    Attributes:
        band: smallest change kept, >= 0.
    """

    band: Annotated[float, Real(lo=0.0)]


@dataclass(frozen=True, slots=True, kw_only=True)
class DebounceMeta(Meta):
    """Meta of a filter that keeps a value only once it has held for a window.

    Attributes:
        window_ms: how long a value must hold, in milliseconds.
    """

    # 50 ms: long enough for the contact bounce of common push buttons and reed switches.
    window_ms: Annotated[int, IntIn(1, MAX_DEBOUNCE_MS)] = 50


# Triggers, which start chains.


@dataclass(frozen=True, slots=True, kw_only=True)
class HighThresholdMeta(ChainMeta):
    """Meta of a trigger that fires when its data point rises above a level.

    Attributes:
        level: the level.
        hysteresis: how far the value must fall back below ``level`` to re-arm, >= 0.
        armed: whether the next rise to ``level`` fires (written by its host when it
            changes); ``None`` until the host has seen a first value.
    """

    level: Annotated[float, Real()]
    hysteresis: Annotated[float, Real(lo=0.0)] = 0.0
    armed: Annotated[bool | None, Maybe(Flag())] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LowThresholdMeta(ChainMeta):
    """Meta of a trigger that fires when its data point falls below a level.

    Attributes:
        level: the level.
        hysteresis: how far the value must climb back above ``level`` to re-arm, >= 0.
        armed: whether the next fall to ``level`` fires (written by its host when it
            changes); ``None`` until the host has seen a first value.
    """

    level: Annotated[float, Real()]
    hysteresis: Annotated[float, Real(lo=0.0)] = 0.0
    armed: Annotated[bool | None, Maybe(Flag())] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CronTimerMeta(ChainMeta):
    """Meta of a trigger that fires on a cron schedule.

    Attributes:
        expression: cron line of 5 fields (minute first) or 6 (seconds first).
        timezone: IANA time zone the schedule is read in.
    """

    expression: Annotated[str, formats.cron_shape]
    timezone: Annotated[str, formats.timezone_name] = "UTC"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerMeta(ChainMeta):
    """Meta of a trigger that fires at a fixed interval.

    Attributes:
        interval_ms: interval in milliseconds.
        one_shot: fire once, after one interval, instead of repeatedly.
    """

    interval_ms: Annotated[int, IntIn(MIN_TIMER_MS, MAX_TIMER_MS)]
    one_shot: Annotated[bool, Flag()] = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ButtonMeta(ChainMeta):
    """Meta of a trigger a person presses in a dashboard."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingWebHookMeta(ChainMeta):
    """Meta of a trigger that fires when an HTTP request reaches its path.

    Attributes:
        path: URL path it answers on, such as ``/hooks/door-bell``.
        token_hash: SHA-256 of the token callers must present, as 64 lowercase hex digits;
            ``""`` while no token is set, in which case every call is refused.
    """

    path: Annotated[str, formats.web_path]
    token_hash: Annotated[str, formats.token_hash] = ""


# Executors, which compute and act.


@dataclass(frozen=True, slots=True, kw_only=True)
class LogicGateMeta(ExecutorMeta):
    """Meta of an executor that combines its sources as booleans.

    Attributes:
        operation: ``AND``, ``OR``, ``NOT``, ``XOR``, ``NAND`` or ``NOR``. ``NOT`` takes at
            most one source.
    """

    operation: Annotated[str, OneOf(("AND", "OR", "NOT", "XOR", "NAND", "NOR"))] = "AND"

    def _check_together(self) -> None:
        if self.operation == "NOT" and len(self.sources) > 1:
            raise ValidationError(
                "meta.sources", "must hold at most one id for operation 'NOT'", len(self.sources)
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class CalculationMeta(ExecutorMeta):
    """Meta of an executor that evaluates a formula over its sources.

    Attributes:
        expression: the formula, one line; the runtime parses it.
    """

    expression: Annotated[str, formats.expression]


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeMeta(ExecutorMeta):
    """Meta of an executor that aggregates the recent history of its sources.

    Attributes:
        function: ``min``, ``max``, ``mean``, ``sum``, ``count`` or ``last``.
        range_ms: how far back it looks, in milliseconds.
    """

    function: Annotated[str, OneOf(("min", "max", "mean", "sum", "count", "last"))] = "mean"
    range_ms: Annotated[int, IntIn(1, MAX_RANGE_MS)] = 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingWebHookMeta(ExecutorMeta):
    """Meta of an executor that sends an HTTP request.

    Attributes:
        url: ``http://`` or ``https://`` URL to call.
        method: ``GET``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE``.
        timeout_ms: how long one attempt may take, in milliseconds.
        retries: further attempts after a failed one.
    """

    url: Annotated[str, formats.http_url]
    method: Annotated[str, OneOf(("GET", "POST", "PUT", "PATCH", "DELETE"))] = "POST"
    # 100 ms is below any useful round trip; 2 minutes is beyond where a hook should have
    # answered, and a chain should not wait on it longer.
    timeout_ms: Annotated[int, IntIn(100, 120_000)] = 5_000
    # More than 10 attempts turns one failing receiver into a flood of requests.
    retries: Annotated[int, IntIn(0, 10)] = 2
