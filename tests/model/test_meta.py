"""Typed meta: every rule refuses what it should, with an error naming the field."""

from __future__ import annotations

import dataclasses
import math

import orjson
import pytest

from krill_crdt.errors import ValidationError
from krill_crdt.model import (
    CATALOG,
    MAX_CHAIN_IDS,
    ChainMeta,
    DataPointMeta,
    ExecutorMeta,
    MqttBridgeMeta,
    NodeType,
    PinMeta,
    SerialDeviceMeta,
    ServerMeta,
)

T = NodeType

# A valid meta for every type; each failing case below changes one thing in it.
VALID: dict[NodeType, dict[str, object]] = {
    T.Server: {"address": "pi-1.local", "port": 8442},
    T.Client: {"user_agent": "Mozilla/5.0", "token_id": "tok-1"},
    T.Project: {"description": "Greenhouse\nnorth side"},
    T.Peer: {"peer_id": "peer-7", "endpoint": "http://10.0.0.7:8442"},
    T.Pin: {"pin": 17, "mode": "output", "targets": ["dp-1"]},
    T.DataPoint: {"unit": "°C", "snapshot_value": 21.5, "snapshot_time": 1700000000.0},
    T.DiscardAbove: {"threshold": 100.0},
    T.DiscardBelow: {"threshold": -40.0},
    T.Deadband: {"band": 0.5},
    T.Debounce: {"window_ms": 50},
    T.SerialDevice: {"port": "/dev/ttyUSB0", "baudrate": 115200},
    T.HighThreshold: {"level": 30.0, "hysteresis": 1.0},
    T.LowThreshold: {"level": 5.0},
    T.CronTimer: {"expression": "*/5 * * * *", "timezone": "Europe/Berlin"},
    T.Timer: {"interval_ms": 1000},
    T.Button: {"targets": ["gate-1"]},
    T.IncomingWebHook: {"path": "/hooks/door-bell", "token_hash": "ab" * 32},
    T.LogicGate: {"operation": "AND", "sources": ["a", "b"]},
    T.Calculation: {"expression": "(a + b) / 2", "sources": ["a", "b"]},
    T.Compute: {"function": "max", "range_ms": 60000},
    T.OutgoingWebHook: {"url": "https://example.org/hook", "method": "POST"},
    T.MqttBridge: {"topic": "sensors/+/temp", "qos": 1},
}

# (type, changes to VALID, field named in the error, words of the rule)
FAILING: list[tuple[NodeType, dict[str, object], str, str]] = [
    (T.Server, {"address": "bad_host!"}, "meta.address", "host name or an IP address"),
    (T.Server, {"address": "a" * 64 + ".local"}, "meta.address", "host name"),
    (T.Server, {"port": 0}, "meta.port", "must be 1..65535, got 0"),
    (T.Server, {"port": 65536}, "meta.port", "must be 1..65535"),
    (T.Client, {"user_agent": "curl\x07"}, "meta.user_agent", "control characters"),
    (T.Client, {"user_agent": "x" * 513}, "meta.user_agent", "at most 512 characters"),
    (T.Client, {"token_id": "a b"}, "meta.token_id", "whitespace"),
    (T.Project, {"description": "bell\x07"}, "meta.description", "control characters"),
    (T.Project, {"description": "x" * 4097}, "meta.description", "at most 4096"),
    (T.Peer, {"peer_id": ""}, "meta.peer_id", "must be 1..128 characters"),
    (T.Peer, {"endpoint": "ftp://10.0.0.7"}, "meta.endpoint", "http:// or https://"),
    (T.Pin, {"pin": 54}, "meta.pin", "must be 0..53, got 54"),
    (T.Pin, {"pin": -1}, "meta.pin", "must be 0..53"),
    (T.Pin, {"pin": "17"}, "meta.pin", "must be a whole number"),
    (T.Pin, {"mode": "analog"}, "meta.mode", "must be one of 'input', 'output', 'pwm'"),
    (T.Pin, {"pull": "sideways"}, "meta.pull", "must be one of 'none', 'up', 'down'"),
    (T.Pin, {"initial": "mid"}, "meta.initial", "must be one of 'low', 'high'"),
    (T.Pin, {"shutdown": 1}, "meta.shutdown", "must be one of 'low', 'high'"),
    (T.Pin, {"active_low": 1}, "meta.active_low", "must be true or false"),
    (T.Pin, {"targets": "dp-1"}, "meta.targets", "must be a list of node ids"),
    (T.Pin, {"targets": ["a", "a"]}, "meta.targets[1]", "must not repeat an id"),
    (T.Pin, {"targets": ["a", ""]}, "meta.targets[1]", "must be 1..128 characters"),
    (T.Pin, {"targets": [7]}, "meta.targets[0]", "must be a string"),
    (
        T.Pin,
        {"targets": [f"n{i}" for i in range(MAX_CHAIN_IDS + 1)]},
        "meta.targets",
        f"at most {MAX_CHAIN_IDS} ids",
    ),
    (T.DataPoint, {"unit": "x" * 33}, "meta.unit", "at most 32 characters"),
    (T.DataPoint, {"data_type": "float"}, "meta.data_type", "must be one of"),
    (T.DataPoint, {"precision": 16}, "meta.precision", "must be 0..15"),
    (T.DataPoint, {"snapshot_time": None}, "meta.snapshot_time", "exactly when snapshot_value"),
    (T.DataPoint, {"snapshot_time": -1.0}, "meta.snapshot_time", "must be >= 0"),
    (T.DataPoint, {"snapshot_value": "warm"}, "meta.snapshot_value", "must be a number"),
    (T.DataPoint, {"data_type": "bool"}, "meta.snapshot_value", "must be a bool"),
    (
        T.DataPoint,
        {"data_type": "text", "snapshot_value": "x" * 1025},
        "meta.snapshot_value",
        "at most 1024 characters",
    ),
    (T.DataPoint, {"snapshot_value": math.inf}, "meta.snapshot_value", "finite"),
    (T.DiscardAbove, {"threshold": "high"}, "meta.threshold", "must be a number"),
    (T.DiscardAbove, {"threshold": math.nan}, "meta.threshold", "finite"),
    (T.DiscardBelow, {"threshold": None}, "meta.threshold", "must be a number"),
    (T.Deadband, {"band": -0.1}, "meta.band", "must be >= 0"),
    (T.Debounce, {"window_ms": 0}, "meta.window_ms", "must be 1..600000"),
    (T.SerialDevice, {"port": "COM3"}, "meta.port", "device path"),
    (T.SerialDevice, {"port": "ftp://host"}, "meta.port", "device path"),
    (T.SerialDevice, {"port": "/dev/tty USB0"}, "meta.port", "device path"),
    (T.SerialDevice, {"baudrate": 12345}, "meta.baudrate", "must be one of"),
    (T.SerialDevice, {"bytesize": 9}, "meta.bytesize", "must be one of 5, 6, 7, 8"),
    (T.SerialDevice, {"parity": "X"}, "meta.parity", "must be one of"),
    (T.SerialDevice, {"stopbits": 3}, "meta.stopbits", "must be one of 1.0, 1.5, 2.0"),
    (T.SerialDevice, {"terminator": ";"}, "meta.terminator", "must be one of"),
    (T.SerialDevice, {"parse": "xml"}, "meta.parse", "must be one of"),
    (T.SerialDevice, {"parse": "regex"}, "meta.pattern", "exactly when parse is 'regex'"),
    (T.SerialDevice, {"pattern": r"T=(\d+)"}, "meta.pattern", "exactly when parse is 'regex'"),
    (T.SerialDevice, {"parse": "regex", "pattern": "("}, "meta.pattern", "valid regular"),
    (T.SerialDevice, {"parse": "regex", "pattern": "T=1"}, "meta.pattern", "capture group"),
    (T.MqttBridge, {"topic": ""}, "meta.topic", "must not be empty"),
    (T.MqttBridge, {"topic": "a/#/b"}, "meta.topic", "'#' may only be the last level"),
    (T.MqttBridge, {"topic": "a+/b"}, "meta.topic", "whole levels"),
    (T.MqttBridge, {"qos": 3}, "meta.qos", "must be one of 0, 1, 2"),
    (T.MqttBridge, {"direction": "in"}, "meta.direction", "must be one of 'publish'"),
    (T.MqttBridge, {"direction": "both"}, "meta.topic", "plain topic (no '+' or '#')"),
    (T.MqttBridge, {"value_path": "a..b"}, "meta.value_path", "none of them empty"),
    (T.MqttBridge, {"value_path": "a b"}, "meta.value_path", "must not hold spaces"),
    (T.MqttBridge, {"value_path": "x" * 257}, "meta.value_path", "at most 256"),
    (T.MqttBridge, {"retain": 1}, "meta.retain", "must be true or false"),
    (T.Server, {"version": "v" * 65}, "meta.version", "at most 64 characters"),
    (T.Server, {"last_seen": -1.0}, "meta.last_seen", "must be >= 0"),
    (T.Server, {"uptime_s": float("nan")}, "meta.uptime_s", "finite"),
    (T.Client, {"online": "yes"}, "meta.online", "must be true or false"),
    (T.Peer, {"online": 0}, "meta.online", "must be true or false"),
    (T.Pin, {"level": "high"}, "meta.level", "must be true or false"),
    (T.Pin, {"duty": 100.5}, "meta.duty", "must be <= 100"),
    (T.HighThreshold, {"armed": 1}, "meta.armed", "must be true or false"),
    (T.HighThreshold, {"hysteresis": -0.5}, "meta.hysteresis", "must be >= 0"),
    (T.LowThreshold, {"level": True}, "meta.level", "not a boolean"),
    (T.CronTimer, {"expression": "* * * *"}, "meta.expression", "5 or 6 fields"),
    (T.CronTimer, {"expression": "* * * * * * *"}, "meta.expression", "5 or 6 fields"),
    (T.CronTimer, {"expression": "* * * * $"}, "meta.expression", "5 or 6 fields"),
    (T.CronTimer, {"timezone": "Not A Zone"}, "meta.timezone", "IANA time zone"),
    (T.Timer, {"interval_ms": 50}, "meta.interval_ms", "must be 100..2678400000"),
    (T.Timer, {"one_shot": "yes"}, "meta.one_shot", "must be true or false"),
    (T.IncomingWebHook, {"path": "hooks"}, "meta.path", "must be a path"),
    (T.IncomingWebHook, {"path": "/a/../b"}, "meta.path", "must be a path"),
    (T.IncomingWebHook, {"token_hash": "secret"}, "meta.token_hash", "64 lowercase hex"),
    (T.LogicGate, {"operation": "IMPLIES"}, "meta.operation", "must be one of"),
    (T.LogicGate, {"operation": "NOT"}, "meta.sources", "at most one id for operation 'NOT'"),
    (T.LogicGate, {"sources": ["a", "a b"]}, "meta.sources[1]", "whitespace"),
    (T.Calculation, {"expression": "   "}, "meta.expression", "must not be blank"),
    (T.Calculation, {"expression": "a" * 1025}, "meta.expression", "at most 1024"),
    (T.Compute, {"function": "median"}, "meta.function", "must be one of"),
    (T.Compute, {"range_ms": 0}, "meta.range_ms", "must be 1.."),
    (T.OutgoingWebHook, {"url": "ftp://example.org"}, "meta.url", "http:// or https://"),
    (T.OutgoingWebHook, {"url": "http://"}, "meta.url", "must name a host"),
    (T.OutgoingWebHook, {"url": "http://exa mple.org"}, "meta.url", "whitespace"),
    (T.OutgoingWebHook, {"url": "http://[::1"}, "meta.url", "well-formed URL"),
    (T.OutgoingWebHook, {"url": "http://h:99999/"}, "meta.url", "well-formed URL"),
    (T.OutgoingWebHook, {"method": "FETCH"}, "meta.method", "must be one of"),
    (T.OutgoingWebHook, {"timeout_ms": 50}, "meta.timeout_ms", "must be 100..120000"),
    (T.OutgoingWebHook, {"retries": 11}, "meta.retries", "must be 0..10"),
]

# Types with no default for some field, and the first field they need.
REQUIRED = {
    T.Peer: "peer_id",
    T.Pin: "pin",
    T.DiscardAbove: "threshold",
    T.DiscardBelow: "threshold",
    T.Deadband: "band",
    T.SerialDevice: "port",
    T.HighThreshold: "level",
    T.LowThreshold: "level",
    T.CronTimer: "expression",
    T.Timer: "interval_ms",
    T.IncomingWebHook: "path",
    T.Calculation: "expression",
    T.OutgoingWebHook: "url",
    T.MqttBridge: "topic",
}


def read(node_type: NodeType, data: dict[str, object]) -> object:
    return CATALOG[node_type].meta.from_dict(data)


@pytest.mark.parametrize("node_type", list(NodeType), ids=str)
def test_valid_meta_is_accepted_and_round_trips(node_type: NodeType) -> None:
    meta = CATALOG[node_type].meta.from_dict(VALID[node_type])
    assert CATALOG[node_type].meta.from_dict(meta.to_dict()) == meta


@pytest.mark.parametrize(
    ("node_type", "changes", "field", "rule"),
    FAILING,
    ids=[f"{t}-{field}-{i}" for i, (t, _, field, _) in enumerate(FAILING)],
)
def test_rule_refuses_with_an_error_naming_the_field(
    node_type: NodeType, changes: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        read(node_type, {**VALID[node_type], **changes})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert rule in str(caught.value)


def test_error_message_has_field_rule_and_value() -> None:
    with pytest.raises(ValidationError) as caught:
        read(T.Pin, {"pin": 99})
    assert str(caught.value) == "meta.pin: must be 0..53, got 99"
    assert (caught.value.field, caught.value.rule, caught.value.got) == (
        "meta.pin",
        "must be 0..53",
        99,
    )


@pytest.mark.parametrize("node_type", list(REQUIRED), ids=str)
def test_missing_required_field_is_named(node_type: NodeType) -> None:
    with pytest.raises(ValidationError, match=rf"^meta\.{REQUIRED[node_type]}: is required$"):
        read(node_type, {})


@pytest.mark.parametrize("node_type", [t for t in NodeType if t not in REQUIRED], ids=str)
def test_types_without_required_fields_have_defaults(node_type: NodeType) -> None:
    meta = read(node_type, {})
    assert meta == CATALOG[node_type].meta()


def test_integral_floats_are_accepted_for_whole_numbers() -> None:
    meta = PinMeta.from_dict({"pin": 17.0})
    assert meta.pin == 17
    assert type(meta.pin) is int


def test_fractional_floats_are_refused_for_whole_numbers() -> None:
    with pytest.raises(ValidationError, match=r"^meta\.pin: must be a whole number, got 1\.5$"):
        PinMeta.from_dict({"pin": 1.5})


@pytest.mark.parametrize(
    ("node_type", "field"),
    [
        (T.Pin, "pin"),
        (T.Server, "port"),
        (T.DiscardAbove, "threshold"),
        (T.Deadband, "band"),
        (T.HighThreshold, "level"),
        (T.Timer, "interval_ms"),
        (T.SerialDevice, "stopbits"),
        (T.MqttBridge, "qos"),
    ],
)
@pytest.mark.parametrize("flag", [True, False])
def test_booleans_are_refused_as_numbers(node_type: NodeType, field: str, flag: bool) -> None:
    with pytest.raises(ValidationError) as caught:
        read(node_type, {**VALID[node_type], field: flag})
    assert caught.value.field == f"meta.{field}"


def test_data_point_number_snapshot_is_stored_as_a_float() -> None:
    meta = DataPointMeta.from_dict({"snapshot_value": 3, "snapshot_time": 10})
    assert (meta.snapshot_value, meta.snapshot_time) == (3.0, 10.0)
    assert type(meta.snapshot_value) is float


def test_data_point_bool_snapshot_is_not_a_number() -> None:
    with pytest.raises(ValidationError, match=r"^meta\.snapshot_value: must be a number"):
        DataPointMeta.from_dict({"snapshot_value": True, "snapshot_time": 1.0})


def test_serial_stopbits_read_back_as_canonical_numbers() -> None:
    assert SerialDeviceMeta.from_dict({"port": "loop://", "stopbits": 2}).stopbits == 2.0
    assert SerialDeviceMeta.from_dict({"port": "loop://", "stopbits": 1.5}).stopbits == 1.5


def test_id_lists_read_back_as_tuples_and_write_as_lists() -> None:
    meta = PinMeta.from_dict({"pin": 4, "targets": ["a", "b"]})
    assert meta.targets == ("a", "b")
    assert meta.to_dict()["targets"] == ["a", "b"]


def test_id_lists_allow_exactly_the_maximum() -> None:
    ids = [f"n{i}" for i in range(MAX_CHAIN_IDS)]
    assert len(PinMeta.from_dict({"pin": 4, "targets": ids}).targets) == MAX_CHAIN_IDS


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ValidationError, match=r"^meta\.pin: must be 0\.\.53, got 60$"):
        PinMeta(pin=60)


def test_meta_is_frozen() -> None:
    meta = PinMeta(pin=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.pin = 5  # type: ignore[misc]


def test_equal_meta_hash_equal() -> None:
    assert hash(PinMeta(pin=4, targets=("a",))) == hash(
        PinMeta.from_dict({"pin": 4.0, "targets": ["a"]})
    )


@pytest.mark.parametrize("node_type", list(NodeType), ids=str)
def test_to_dict_is_json_and_names_every_field(node_type: NodeType) -> None:
    meta = CATALOG[node_type].meta.from_dict(VALID[node_type])
    data = meta.to_dict()
    assert orjson.loads(orjson.dumps(data)) == data
    assert set(data) == {f.name for f in dataclasses.fields(meta)} - {"extra"}


def test_chain_nodes_have_targets_and_executors_have_sources() -> None:
    chain = {T.Pin, T.DataPoint, T.HighThreshold, T.LowThreshold, T.CronTimer, T.Timer,
             T.Button, T.IncomingWebHook}  # fmt: skip
    executors = {T.LogicGate, T.Calculation, T.Compute, T.OutgoingWebHook}
    for node_type, spec in CATALOG.items():
        assert issubclass(spec.meta, ChainMeta) == (node_type in chain | executors)
        assert issubclass(spec.meta, ExecutorMeta) == (node_type in executors)


def test_unknown_key_is_refused_with_the_closest_known_key() -> None:
    with pytest.raises(ValidationError) as caught:
        PinMeta.from_dict({"pin": 4, "mdoe": "output"})
    assert caught.value.field == "meta.mdoe"
    assert str(caught.value) == "meta.mdoe: is not a field of PinMeta (did you mean 'mode'?)"


def test_unknown_key_without_a_close_match_gets_no_suggestion() -> None:
    with pytest.raises(ValidationError, match=r"^meta\.zzz: is not a field of PinMeta$"):
        PinMeta.from_dict({"pin": 4, "zzz": 1})


def test_extra_is_not_a_key_of_stored_meta() -> None:
    with pytest.raises(ValidationError, match=r"^meta\.extra: is not a field"):
        PinMeta.from_dict({"pin": 4, "extra": {}})


def test_misspelt_choice_gets_a_suggestion() -> None:
    with pytest.raises(ValidationError, match=r"did you mean 'output'\?"):
        PinMeta.from_dict({"pin": 4, "mode": "ouptut"})


def test_meta_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^meta: must be an object, got 'list'$"):
        PinMeta.from_dict([("pin", 4)])  # type: ignore[arg-type]


def test_long_offending_values_are_shortened_in_messages() -> None:
    with pytest.raises(ValidationError) as caught:
        read(T.CronTimer, {"expression": "x" * 200})
    assert len(str(caught.value)) < 200


def test_huge_integers_are_refused_with_a_short_message() -> None:
    with pytest.raises(ValidationError, match=r"^meta\.pin: must be 0\.\.53, got 'an integer of"):
        PinMeta.from_dict({"pin": 10**5000})


def test_long_unknown_keys_are_shortened_in_the_field_path() -> None:
    with pytest.raises(ValidationError) as caught:
        PinMeta.from_dict({"pin": 4, "k" * 10_000: 1})
    assert len(caught.value.field) < 80


def test_status_and_result_fields_start_empty() -> None:
    assert read(T.Server, {}) == ServerMeta(version="", started_at=None, uptime_s=0.0)
    assert read(T.Pin, {"pin": 4}) == PinMeta(pin=4, level=None, duty=None, level_time=None)
    assert read(T.HighThreshold, {"level": 1.0}).armed is None  # type: ignore[attr-defined]
    bridge = read(T.MqttBridge, {"topic": "a/b"})
    assert bridge == MqttBridgeMeta(topic="a/b", direction="publish", value_path="value")
    assert bridge.publishes and not bridge.subscribes  # type: ignore[attr-defined]


def test_a_bridge_in_both_directions_on_a_plain_topic_is_valid() -> None:
    meta = MqttBridgeMeta.from_dict({"topic": "home/level", "direction": "both", "value_path": ""})
    assert meta.publishes and meta.subscribes
