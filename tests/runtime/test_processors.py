"""Node-type processors: each one's behaviour on its own, against a real store and series."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from krill_crdt.model import Node, NodeType
from krill_crdt.runtime.processors import (
    REGISTRY,
    Context,
    DataPointHost,
    Outcome,
    ProcessorError,
    check_token,
    hash_token,
    make_registry,
    parse_body,
)
from krill_crdt.runtime.processors.data import DataPointProcessor, DebounceHost
from krill_crdt.runtime.processors.devices import (
    MqttBridgeProcessor,
    PinProcessor,
    SerialDeviceProcessor,
)
from krill_crdt.runtime.processors.executors import (
    CalculationProcessor,
    ComputeProcessor,
    LogicGateProcessor,
    OutgoingWebHookProcessor,
    variable_names,
)
from krill_crdt.runtime.processors.structural import server_status
from krill_crdt.runtime.processors.triggers import (
    MAX_WEBHOOK_BODY_BYTES,
    ButtonProcessor,
    CronTimerProcessor,
    HighThresholdProcessor,
    LowThresholdProcessor,
    TimerProcessor,
)
from krill_crdt.store import Store

HOST = "pi-1"

#: 2023-11-14 22:13:20 UTC: a fixed "now" so series windows and schedules are exact.
START = 1_700_000_000.0


# The stand-in host: a real Store and SeriesStore, a settable clock, recording backends.


@dataclass
class FakeGpio:
    levels: dict[int, bool] = field(default_factory=dict)
    writes: list[tuple[int, bool]] = field(default_factory=list)
    duties: list[tuple[int, float]] = field(default_factory=list)

    def write(self, pin: int, high: bool) -> None:
        self.writes.append((pin, high))
        self.levels[pin] = high

    def read(self, pin: int) -> bool:
        return self.levels.get(pin, False)

    def pwm(self, pin: int, duty: float, frequency: float) -> None:
        self.duties.append((pin, duty))


@dataclass
class FakeSerial:
    sent: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, node_id: str, text: str) -> None:
        self.sent.append((node_id, text))


@dataclass
class FakeMqtt:
    published: list[tuple[str, bytes, int]] = field(default_factory=list)

    async def publish(self, topic: str, payload: bytes, qos: int, *, retain: bool = False) -> None:
        self.published.append((topic, payload, qos))


class Host:
    """What a running peer offers processors, over a real store in a temporary directory."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = START
        self.gpio = FakeGpio()
        self.serial = FakeSerial()
        self.mqtt = FakeMqtt()
        self.resources: dict[str, Any] = {
            "series": store.series,
            "gpio": self.gpio,
            "serial": self.serial,
            "mqtt": self.mqtt,
        }
        #: Node id -> (value, delay) of the chain run waiting for it; ``release`` runs it.
        self.later: dict[str, tuple[Any, float]] = {}

    def get(self, node_id: str) -> Node:
        return self.store.get(node_id)

    async def update(self, node_id: str, changes: Mapping[str, Any]) -> Node:
        return await self.store.update(node_id, changes)

    def now(self) -> float:
        return self.clock

    def resource(self, name: str) -> Any:
        return self.resources[name]

    def children(self, node_id: str) -> list[Node]:
        return self.store.doc(self.store.host_of(node_id)).children(node_id)

    def invoke_later(self, node_id: str, value: Any, delay: float) -> None:
        self.later[node_id] = (value, delay)

    async def add(self, type_: NodeType, node_id: str, parent: str = HOST, **meta: Any) -> Node:
        node = Node.new(type_, host=HOST, parent=parent, id=node_id, meta=meta)
        return await self.store.create(node)

    def ctx(
        self, node_id: str, value: Any = None, inputs: Mapping[str, Any] | None = None
    ) -> Context:
        return Context(self.get(node_id), self, dict(inputs or {}), value)


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    async with Store(tmp_path, clock=lambda: START) as store:
        await store.create(Node.new(NodeType.Server, host=HOST, id=HOST))
        yield Host(store)


async def sample(host: Host, node_id: str, value: Any, at: float | None = None) -> Outcome:
    """Hand a data point a new sample, as a serial line or a pin would."""
    if at is not None:
        host.clock = at
    return await DataPointProcessor().run(host.ctx(node_id, value))


async def release(host: Host, node_id: str, at: float) -> Outcome:
    """Run the data point with the value it held back, as the host does once its delay ends."""
    value, _delay = host.later.pop(node_id)
    host.clock = at
    return await DataPointProcessor().run(host.ctx(node_id, value))


def snapshot(host: Host, node_id: str) -> Any:
    return host.get(node_id).meta.snapshot_value  # type: ignore[attr-defined]


def series_values(host: Host, node_id: str) -> list[Any]:
    return [value for _ts, value in host.store.series.range(node_id)]


# Data points and filters.


async def test_the_stand_in_host_offers_children_and_delayed_runs_to_data_points(
    host: Host,
) -> None:
    assert isinstance(host, DataPointHost)
    assert isinstance(host, DebounceHost)


async def test_an_accepted_sample_becomes_the_snapshot_and_a_series_entry(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")

    outcome = await sample(host, "temp", 21.5, at=START + 5)

    assert outcome == Outcome(proceed=True, value=21.5)
    meta = host.get("temp").meta
    assert (meta.snapshot_value, meta.snapshot_time) == (21.5, START + 5)  # type: ignore[attr-defined]
    assert host.store.series.range("temp") == [(START + 5, 21.5)]


async def test_a_data_point_run_as_a_target_records_its_input(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")

    outcome = await DataPointProcessor().run(host.ctx("temp", inputs={"calc": 7.25}))

    assert outcome == Outcome(proceed=True, value=7.25)
    assert snapshot(host, "temp") == 7.25


async def test_a_data_point_without_a_value_passes_its_snapshot_on_unrecorded(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")
    assert await DataPointProcessor().run(host.ctx("temp")) == Outcome(proceed=False)
    await sample(host, "temp", 3.0)

    outcome = await DataPointProcessor().run(host.ctx("temp", inputs={"button": None}))

    assert outcome == Outcome(proceed=True, value=3.0)
    assert len(host.store.series.range("temp")) == 1


async def test_discard_above_drops_values_above_its_threshold(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")
    await host.add(NodeType.DiscardAbove, "cap", parent="temp", threshold=50.0)

    kept = await sample(host, "temp", 50.0)
    dropped = await sample(host, "temp", 50.5)

    assert (kept.proceed, dropped.proceed) == (True, False)
    assert snapshot(host, "temp") == 50.0


async def test_discard_below_drops_values_below_its_threshold(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")
    await host.add(NodeType.DiscardBelow, "floor", parent="temp", threshold=-40.0)

    dropped = await sample(host, "temp", -41.0)
    kept = await sample(host, "temp", -40.0)

    assert (dropped.proceed, kept.proceed) == (False, True)
    assert [value for _ts, value in host.store.series.range("temp")] == [-40.0]


async def test_deadband_drops_changes_smaller_than_its_band(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")
    await host.add(NodeType.Deadband, "band", parent="temp", band=0.5)

    results = [(await sample(host, "temp", value)).proceed for value in (20.0, 20.3, 20.5, 20.6)]

    # The first value has nothing to compare with; 20.3 is within 0.5 of 20.0; 20.5 is not;
    # 20.6 is within 0.5 of 20.5, the new snapshot.
    assert results == [True, False, True, False]
    assert snapshot(host, "temp") == 20.5


async def test_debounce_holds_a_new_value_back_for_its_window(host: Host) -> None:
    await host.add(NodeType.DataPoint, "door", data_type="bool")
    await host.add(NodeType.Debounce, "bounce", parent="door", window_ms=200)

    outcome = await sample(host, "door", "on", at=START)

    assert outcome == Outcome(proceed=False)
    assert {node_id: delay for node_id, (_value, delay) in host.later.items()} == {"door": 0.2}
    assert snapshot(host, "door") is None
    assert host.store.series.range("door") == []


async def test_debounce_keeps_only_the_newest_of_a_burst(host: Host) -> None:
    await host.add(NodeType.DataPoint, "door", data_type="bool")
    await host.add(NodeType.Debounce, "bounce", parent="door", window_ms=200)

    for step, value in enumerate((1, 0, 1, 0)):
        assert not (await sample(host, "door", value, at=START + step * 0.05)).proceed
    outcome = await release(host, "door", at=START + 0.35)

    assert outcome == Outcome(proceed=True, value=False)
    assert host.store.series.range("door") == [(START + 0.15, False)]
    assert host.later == {}


async def test_a_released_value_is_recorded_with_the_time_it_arrived(host: Host) -> None:
    await host.add(NodeType.DataPoint, "level")
    await host.add(NodeType.Debounce, "bounce", parent="level", window_ms=500)
    await sample(host, "level", 4.0, at=START + 1)

    await release(host, "level", at=START + 1.5)

    meta = host.get("level").meta
    assert (meta.snapshot_value, meta.snapshot_time) == (4.0, START + 1)  # type: ignore[attr-defined]


async def test_a_value_discarded_on_arrival_leaves_the_held_one_alone(host: Host) -> None:
    await host.add(NodeType.DataPoint, "level")
    await host.add(NodeType.Debounce, "bounce", parent="level", window_ms=100)
    await host.add(NodeType.DiscardAbove, "cap", parent="level", threshold=100.0)
    await sample(host, "level", 7.0)

    spike = await sample(host, "level", 999.0)
    await release(host, "level", at=START + 0.1)

    assert spike == Outcome(proceed=False)
    assert series_values(host, "level") == [7.0]


async def test_a_deadband_judges_a_held_value_against_the_snapshot_at_its_release(
    host: Host,
) -> None:
    await host.add(NodeType.DataPoint, "level")
    await host.add(NodeType.Debounce, "bounce", parent="level", window_ms=100)
    await host.add(NodeType.Deadband, "band", parent="level", band=0.5)

    results = []
    for step, value in enumerate((20.0, 20.3, 20.6)):
        await sample(host, "level", value, at=START + step)
        results.append((await release(host, "level", at=START + step + 0.1)).proceed)

    # 20.3 is within 0.5 of 20.0, the snapshot when it is released; 20.6 is not.
    assert results == [True, False, True]
    assert series_values(host, "level") == [20.0, 20.6]


async def test_debounce_needs_a_host_that_can_run_a_chain_later(host: Host) -> None:
    await host.add(NodeType.DataPoint, "door", data_type="bool")
    await host.add(NodeType.Debounce, "bounce", parent="door")

    class NoLater:
        """The stand-in host without ``invoke_later``."""

        get, now, resource, children = host.get, host.now, host.resource, host.children

        async def update(self, node_id: str, changes: Mapping[str, Any]) -> Node:
            return await host.update(node_id, changes)

    with pytest.raises(ProcessorError, match="cannot hold values back"):
        await DataPointProcessor().run(Context(host.get("door"), NoLater(), {}, True))
    assert snapshot(host, "door") is None


@pytest.mark.parametrize(
    ("data_type", "given", "stored"),
    [
        ("number", "21.5", 21.5),
        ("number", 3, 3.0),
        ("number", True, 1.0),
        ("bool", "on", True),
        ("bool", 0, False),
        ("bool", " FALSE ", False),
        ("text", 21.0, "21"),
        ("text", False, "false"),
        ("text", {"a": 1}, '{"a":1}'),
    ],
)
async def test_a_value_is_read_as_the_data_type_of_its_point(
    host: Host, data_type: str, given: Any, stored: Any
) -> None:
    await host.add(NodeType.DataPoint, "dp", data_type=data_type)

    outcome = await sample(host, "dp", given)

    assert outcome.value == stored and type(outcome.value) is type(stored)
    assert snapshot(host, "dp") == stored


@pytest.mark.parametrize(
    ("data_type", "given"),
    [("number", "warm"), ("number", float("nan")), ("bool", "maybe"), ("text", "x" * 2000)],
)
async def test_a_value_that_does_not_fit_the_data_type_is_refused_and_not_recorded(
    host: Host, data_type: str, given: Any
) -> None:
    await host.add(NodeType.DataPoint, "dp", data_type=data_type)

    with pytest.raises(ProcessorError, match=f"does not fit data_type '{data_type}'"):
        await sample(host, "dp", given)
    assert snapshot(host, "dp") is None
    assert host.store.series.range("dp") == []


async def test_a_number_filter_under_a_text_point_is_a_clear_error(host: Host) -> None:
    await host.add(NodeType.DataPoint, "status", data_type="text")
    await host.add(NodeType.DiscardAbove, "cap", parent="status", threshold=1.0)

    with pytest.raises(ProcessorError, match="compares numbers"):
        await sample(host, "status", "open")


# Thresholds.


async def fire_count(
    host: Host, processor: HighThresholdProcessor | LowThresholdProcessor, values: list[float]
) -> list[float]:
    fired = []
    for value in values:
        outcome = await processor.run(host.ctx("alarm", inputs={"temp": value}))
        if outcome.proceed:
            fired.append(outcome.value)
    return fired


async def test_a_high_threshold_fires_once_per_rise_of_a_noisy_signal(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")
    await host.add(NodeType.HighThreshold, "alarm", parent="temp", level=10.0, hysteresis=2.0)
    noisy = [5, 9, 10.5, 9.5, 10.2, 11, 9.1, 10.3, 7.9, 8.5, 10, 12, 7, 11]

    fired = await fire_count(host, HighThresholdProcessor(), noisy)

    # Wobbles above 8 after a firing do not re-arm it; 7.9 and 7 do.
    assert fired == [10.5, 10.0, 11.0]


async def test_a_low_threshold_fires_once_per_fall_of_a_noisy_signal(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")
    await host.add(NodeType.LowThreshold, "alarm", parent="temp", level=0.0, hysteresis=1.0)
    noisy = [3, 0.5, -0.2, 0.4, -0.1, 0.9, -0.5, 1.5, 0.2, 0, -3, 2, -1]

    fired = await fire_count(host, LowThresholdProcessor(), noisy)

    assert fired == [-0.2, 0.0, -1.0]


async def test_a_threshold_without_hysteresis_re_arms_just_below_its_level(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")
    await host.add(NodeType.HighThreshold, "alarm", parent="temp", level=10.0)

    fired = await fire_count(host, HighThresholdProcessor(), [9, 10, 10, 9.99, 10, 11])

    assert fired == [10.0, 10.0]


async def test_a_thresholds_first_run_in_a_process_only_learns_its_state(host: Host) -> None:
    # Already above the level when the process starts: no firing until it fell back and rose.
    await host.add(NodeType.DataPoint, "temp")
    await host.add(NodeType.HighThreshold, "alarm", parent="temp", level=10.0, hysteresis=1.0)
    processor = HighThresholdProcessor()

    fired = await fire_count(host, processor, [12, 13, 8, 12])

    assert fired == [12.0]
    processor.forget("alarm")
    assert processor.armed("alarm") is None


async def test_a_threshold_invoked_alone_reads_its_data_points_snapshot(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")
    await host.add(NodeType.HighThreshold, "alarm", parent="temp", level=10.0)
    processor = HighThresholdProcessor()
    await sample(host, "temp", 5.0)
    await processor.run(host.ctx("alarm"))
    await sample(host, "temp", 15.0)

    assert await processor.run(host.ctx("alarm")) == Outcome(proceed=True, value=15.0)


# Timers.


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


async def test_cron_next_fire_reads_a_sixth_field_as_seconds_first(host: Host) -> None:
    node = await host.add(NodeType.CronTimer, "tick", expression="*/15 * * * * *")

    after = utc("2024-05-01T12:00:07.5")
    first = CronTimerProcessor().next_fire(node, after)
    second = CronTimerProcessor().next_fire(node, first)

    assert (first, second) == (utc("2024-05-01T12:00:15"), utc("2024-05-01T12:00:30"))


async def test_cron_next_fire_reads_the_schedule_in_its_time_zone(host: Host) -> None:
    node = await host.add(
        NodeType.CronTimer, "wake", expression="0 9 * * *", timezone="America/New_York"
    )
    processor = CronTimerProcessor()

    # 09:00 in New York is 14:00 UTC in winter (EST) and 13:00 UTC in summer (EDT).
    assert processor.next_fire(node, utc("2024-01-10T00:00")) == utc("2024-01-10T14:00")
    assert processor.next_fire(node, utc("2024-07-10T00:00")) == utc("2024-07-10T13:00")


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "out of range"),
        ("*/0 * * * *", "step"),
        ("0 0 30 2 *", "failed to find next date"),
    ],
)
async def test_an_invalid_cron_expression_is_an_error_naming_it(
    host: Host, expression: str, reason: str
) -> None:
    node = await host.add(NodeType.CronTimer, "bad", expression=expression)

    pattern = f"invalid cron expression '{re.escape(expression)}'.*{reason}"
    with pytest.raises(ProcessorError, match=pattern):
        CronTimerProcessor().next_fire(node, START)
    with pytest.raises(ProcessorError, match="invalid cron expression"):
        await CronTimerProcessor().run(host.ctx("bad"))


async def test_an_unknown_cron_time_zone_is_an_error_naming_it(host: Host) -> None:
    node = await host.add(NodeType.CronTimer, "bad", expression="* * * * *", timezone="Mars/Base")

    with pytest.raises(ProcessorError, match="unknown time zone 'Mars/Base'"):
        CronTimerProcessor().next_fire(node, START)


async def test_a_cron_timer_fires_when_invoked(host: Host) -> None:
    await host.add(NodeType.CronTimer, "tick", expression="* * * * *")

    assert (await CronTimerProcessor().run(host.ctx("tick"))).proceed


async def test_a_repeating_timer_fires_on_its_interval_grid(host: Host) -> None:
    node = await host.add(NodeType.Timer, "every-2s", interval_ms=2000)
    processor = TimerProcessor()

    assert processor.next_fire(node, 1001.3) == 1002.0
    assert processor.next_fire(node, 1002.0) == 1004.0
    assert (await processor.run(host.ctx("every-2s"))).proceed
    assert (await processor.run(host.ctx("every-2s"))).proceed


async def test_a_one_shot_timer_fires_once(host: Host) -> None:
    node = await host.add(NodeType.Timer, "once", interval_ms=500, one_shot=True)
    processor = TimerProcessor()

    due = processor.next_fire(node, 100.0)
    assert due == 100.5
    assert processor.next_fire(node, 100.2) == due
    assert (await processor.run(host.ctx("once"))).proceed
    assert not (await processor.run(host.ctx("once"))).proceed
    assert processor.next_fire(node, 101.0) is None


async def test_a_one_shot_timer_is_armed_again_when_its_meta_changes(host: Host) -> None:
    await host.add(NodeType.Timer, "once", interval_ms=500, one_shot=True)
    processor = TimerProcessor()
    await processor.run(host.ctx("once"))

    await host.update("once", {"meta": {"interval_ms": 800, "one_shot": True}})

    assert processor.next_fire(host.get("once"), 200.0) == 200.8


# Buttons and incoming webhooks.


async def test_a_button_always_proceeds(host: Host) -> None:
    await host.add(NodeType.Button, "press")

    assert await ButtonProcessor().run(host.ctx("press")) == Outcome(proceed=True)


async def test_a_webhook_token_matches_only_its_sha256_hex(host: Host) -> None:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    node = await host.add(NodeType.IncomingWebHook, "hook", path="/hooks/door", token_hash=digest)

    assert hash_token("s3cret") == digest
    assert check_token(node, "s3cret")
    assert not check_token(node, "s3cret ")
    assert not check_token(node, None)


async def test_a_webhook_without_a_token_hash_refuses_every_token(host: Host) -> None:
    node = await host.add(NodeType.IncomingWebHook, "hook", path="/hooks/door")

    assert not check_token(node, "")
    assert not check_token(node, "anything")


async def test_a_webhook_body_is_read_as_json(host: Host) -> None:
    await host.add(NodeType.IncomingWebHook, "hook", path="/hooks/door")
    body = parse_body(b'{"open": true}')

    outcome = await REGISTRY[NodeType.IncomingWebHook].run(host.ctx("hook", body))

    assert outcome == Outcome(proceed=True, value={"open": True})
    assert parse_body(b"  ") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"open=1", "not valid JSON"),
        (b'{"open": tru', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"1" * (MAX_WEBHOOK_BODY_BYTES + 1), "at most"),
    ],
)
def test_a_bad_webhook_body_is_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(ProcessorError, match=message):
        parse_body(body)


# Logic gates.

TRUTH_TABLES = [
    ("AND", (False, False), False),
    ("AND", (False, True), False),
    ("AND", (True, True), True),
    ("OR", (False, False), False),
    ("OR", (True, False), True),
    ("OR", (True, True), True),
    ("XOR", (False, False), False),
    ("XOR", (True, False), True),
    ("XOR", (True, True), False),
    ("XOR", (True, True, True), True),
    ("NAND", (True, True), False),
    ("NAND", (True, False), True),
    ("NOR", (False, False), True),
    ("NOR", (False, True), False),
    ("NOT", (False,), True),
    ("NOT", (True,), False),
]


@pytest.mark.parametrize(("operation", "states", "expected"), TRUTH_TABLES)
async def test_a_logic_gate_follows_its_truth_table(
    host: Host, operation: str, states: tuple[bool, ...], expected: bool
) -> None:
    # Sources of every kind of snapshot: a bool, a number, and a switch word.
    sources = []
    for i, state in enumerate(states):
        data_type, value = [("bool", state), ("number", float(state) * 3), ("text", "on")][i]
        if data_type == "text" and not state:
            value = "off"
        await host.add(NodeType.DataPoint, f"in{i}", data_type=data_type)
        await sample(host, f"in{i}", value)
        sources.append(f"in{i}")
    await host.add(NodeType.LogicGate, "gate", operation=operation, sources=sources)

    outcome = await LogicGateProcessor().run(host.ctx("gate"))

    assert outcome == Outcome(proceed=True, value=expected)


async def test_a_logic_gate_prefers_a_value_passed_in_this_invocation(host: Host) -> None:
    await host.add(NodeType.DataPoint, "in0", data_type="bool")
    await sample(host, "in0", False)
    await host.add(NodeType.LogicGate, "gate", operation="NOT", sources=["in0"])

    outcome = await LogicGateProcessor().run(host.ctx("gate", inputs={"in0": True}))

    assert outcome.value is False


async def test_a_logic_gate_source_without_a_value_is_an_error_naming_it(host: Host) -> None:
    await host.add(NodeType.DataPoint, "in0", data_type="bool")
    await host.add(NodeType.LogicGate, "gate", operation="OR", sources=["in0"])

    with pytest.raises(ProcessorError, match=r"source 'in0'.*no value yet"):
        await LogicGateProcessor().run(host.ctx("gate"))


async def test_a_not_gate_needs_exactly_one_source(host: Host) -> None:
    await host.add(NodeType.LogicGate, "gate", operation="NOT")

    with pytest.raises(ProcessorError, match="at least one source"):
        await LogicGateProcessor().run(host.ctx("gate"))


# Calculations.


async def calculation(host: Host, expression: str, values: Mapping[str, Any]) -> Outcome:
    await host.add(NodeType.Calculation, "calc", expression=expression, sources=list(values))
    return await CalculationProcessor().run(host.ctx("calc", inputs=values))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("a + b * 2", 9.0),
        ("(a + b) / 2", 2.5),
        ("max(a, b) - min(a, b, 0)", 4.0),
        ("round(b / 3, 2)", 1.33),
        ("abs(a - b) ** 2 % 5", 4.0),
        ("b // 3", 1.0),
        ("indoor - n_2nd_floor", -3.0),
    ],
)
async def test_a_calculation_evaluates_its_formula_over_its_sources(
    host: Host, expression: str, expected: float
) -> None:
    outcome = await calculation(host, expression, {"indoor": 1.0, "2nd-floor": 4})

    assert outcome == Outcome(proceed=True, value=expected)


async def test_a_calculation_reads_a_data_point_sources_snapshot(host: Host) -> None:
    await host.add(NodeType.DataPoint, "temp")
    await sample(host, "temp", 20.0)
    await host.add(NodeType.Calculation, "calc", expression="a * 9 / 5 + 32", sources=["temp"])

    assert (await CalculationProcessor().run(host.ctx("calc"))).value == 68.0


def test_sources_are_named_by_position_and_by_sanitised_id() -> None:
    names = variable_names(["temp-in", "7f3a", "b", "max", "x.y", "x_y"])

    assert names == {
        "a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "f": 5,
        "temp_in": 0, "n_7f3a": 1,
    }  # fmt: skip


async def test_division_by_zero_is_a_clear_error(host: Host) -> None:
    with pytest.raises(ProcessorError, match="division by zero"):
        await calculation(host, "a / (b - 4)", {"x": 1.0, "y": 4.0})


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("a.__class__", "attribute access"),
        ("__import__('os')", r"calls __import__\(\)"),
        ("__import__('os').system('true')", "attribute access"),
        ("(1).real", "attribute access"),
        ("'x' * 10", "only numbers"),
        ("a if a else 1", "conditional"),
        ("[a][0]", "subscript"),
        ("a > 1", "comparisons"),
        ("lambda: 1", "lambda"),
        ("9 ** 9 ** 9", "cannot compute"),
        ("(-8) ** 0.5", "not a real number"),
        ("a +", "not a formula"),
        ("x", "'x' is not defined"),
    ],
)
async def test_an_unsafe_or_invalid_formula_is_refused_with_a_clear_error(
    host: Host, expression: str, message: str
) -> None:
    with pytest.raises(ProcessorError, match=message):
        await calculation(host, expression, {"s1": 2.0})


@pytest.mark.parametrize(
    ("expression", "message"),
    [(" + ".join(["a"] * 200), "too complex"), ("abs(" * 40 + "a" + ")" * 40, "nested deeper")],
)
async def test_an_overly_long_or_deep_formula_is_refused(
    host: Host, expression: str, message: str
) -> None:
    with pytest.raises(ProcessorError, match=message):
        await calculation(host, expression, {"s1": 1.0})


# Compute.


async def seeded_compute(host: Host, function: str) -> Outcome:
    # Two sources; the window is the last minute, so the samples 120 s ago are left out.
    series = host.store.series
    for node_id, samples in {
        "s1": [(-120, 100.0), (-50, 1.0), (-10, 3.0)],
        "s2": [(-30, 5.0), (-1, 7.0)],
    }.items():
        for offset, value in samples:
            series.append(node_id, START + offset, value)
    await host.add(
        NodeType.Compute, "agg", function=function, range_ms=60_000, sources=["s1", "s2"]
    )
    return await ComputeProcessor().run(host.ctx("agg"))


@pytest.mark.parametrize(
    ("function", "expected"),
    [("min", 1.0), ("max", 7.0), ("mean", 4.0), ("sum", 16.0), ("count", 4.0), ("last", 7.0)],
)
async def test_compute_aggregates_its_sources_over_the_window(
    host: Host, function: str, expected: float
) -> None:
    assert await seeded_compute(host, function) == Outcome(proceed=True, value=expected)


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("min", Outcome(proceed=False)),
        ("mean", Outcome(proceed=False)),
        ("last", Outcome(proceed=False)),
        ("count", Outcome(proceed=True, value=0.0)),
        ("sum", Outcome(proceed=True, value=0.0)),
    ],
)
async def test_compute_over_an_empty_window_proceeds_only_for_count_and_sum(
    host: Host, function: str, expected: Outcome
) -> None:
    await host.add(NodeType.Compute, "agg", function=function, sources=["quiet"])

    assert await ComputeProcessor().run(host.ctx("agg")) == expected


# Outgoing webhooks, against a local HTTP server.


@dataclass
class Receiver:
    """A local endpoint that answers with a scripted list of statuses."""

    statuses: list[int]
    delay_s: float = 0.0
    bodies: list[Any] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json() if request.can_read_body else None)
        await asyncio.sleep(self.delay_s)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return web.json_response({"ok": status < 400}, status=status)


@pytest.fixture
async def serve(host: Host) -> AsyncIterator[Callable[[Receiver], Any]]:
    servers: list[TestServer] = []
    session = aiohttp.ClientSession()
    host.resources["http"] = session

    async def start(receiver: Receiver) -> str:
        app = web.Application()
        app.router.add_route("*", "/hook", receiver.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/hook?key=secret"))

    yield start
    await session.close()
    for server in servers:
        await server.close()


async def outgoing(host: Host, url: str, **meta: Any) -> Outcome:
    await host.add(NodeType.OutgoingWebHook, "out", url=url, **meta)
    processor = OutgoingWebHookProcessor(backoff_first_s=0.01, backoff_cap_s=0.02)
    return await processor.run(host.ctx("out", inputs={"temp": 21.5}))


async def test_an_outgoing_webhook_posts_its_inputs_and_passes_the_answer_on(
    host: Host, serve: Callable[[Receiver], Any]
) -> None:
    receiver = Receiver([200])

    outcome = await outgoing(host, await serve(receiver))

    assert outcome == Outcome(proceed=True, value={"status": 200, "body": {"ok": True}})
    assert receiver.bodies == [
        {"node": "out", "time": START, "value": 21.5, "inputs": {"temp": 21.5}}
    ]


async def test_an_outgoing_webhook_retries_after_a_server_error(
    host: Host, serve: Callable[[Receiver], Any]
) -> None:
    receiver = Receiver([500, 201])

    outcome = await outgoing(host, await serve(receiver), retries=2)

    assert outcome.value == {"status": 201, "body": {"ok": True}}
    assert len(receiver.bodies) == 2


async def test_an_outgoing_webhook_gives_up_after_its_retries_with_the_last_reason(
    host: Host, serve: Callable[[Receiver], Any]
) -> None:
    receiver = Receiver([503])
    url = await serve(receiver)

    with pytest.raises(ProcessorError, match=r"failed after 3 attempt.*HTTP 503") as caught:
        await outgoing(host, url, retries=2)
    assert len(receiver.bodies) == 3
    assert "secret" not in str(caught.value)


async def test_an_outgoing_webhook_attempt_times_out(
    host: Host, serve: Callable[[Receiver], Any]
) -> None:
    receiver = Receiver([200], delay_s=0.5)

    with pytest.raises(ProcessorError, match="no answer within 100 ms"):
        await outgoing(host, await serve(receiver), timeout_ms=100, retries=0)


async def test_an_outgoing_webhook_refused_by_the_receiver_is_not_retried(
    host: Host, serve: Callable[[Receiver], Any]
) -> None:
    receiver = Receiver([404])

    with pytest.raises(ProcessorError, match="refused with HTTP 404"):
        await outgoing(host, await serve(receiver), retries=3)
    assert len(receiver.bodies) == 1


async def test_an_outgoing_webhook_retries_when_nothing_listens(
    host: Host, serve: Callable[[Receiver], Any]
) -> None:
    # Port 9 (discard) on the loopback interface: nothing listens there.
    with pytest.raises(ProcessorError, match=r"failed after 2 attempt.*Connect"):
        await outgoing(host, "http://127.0.0.1:9/hook", retries=1)


async def test_an_outgoing_get_sends_no_body(host: Host, serve: Callable[[Receiver], Any]) -> None:
    receiver = Receiver([200])

    await outgoing(host, await serve(receiver), method="GET")

    assert receiver.bodies == [None]


# Pins, serial devices, MQTT bridges.


@pytest.mark.parametrize(
    ("active_low", "value", "level"),
    [(False, True, True), (False, 0, False), (True, True, False), (True, "off", True)],
)
async def test_an_output_pin_drives_the_logical_state_respecting_active_low(
    host: Host, active_low: bool, value: Any, level: bool
) -> None:
    await host.add(NodeType.Pin, "relay", pin=17, mode="output", active_low=active_low)

    outcome = await PinProcessor().run(host.ctx("relay", value))

    assert host.gpio.writes == [(17, level)]
    assert outcome.value is (level != active_low)


async def test_an_output_pin_without_a_value_toggles(host: Host) -> None:
    await host.add(NodeType.Pin, "relay", pin=17, mode="output", active_low=True)
    host.gpio.levels[17] = True  # electrically high: logically off

    first = await PinProcessor().run(host.ctx("relay", inputs={"button": None}))
    second = await PinProcessor().run(host.ctx("relay"))

    assert host.gpio.writes == [(17, False), (17, True)]
    assert (first.value, second.value) == (True, False)


async def test_an_input_pin_passes_its_logical_level_on(host: Host) -> None:
    await host.add(NodeType.Pin, "switch", pin=4, mode="input", active_low=True)
    host.gpio.levels[4] = False

    assert await PinProcessor().run(host.ctx("switch")) == Outcome(proceed=True, value=True)


async def test_a_pwm_pin_takes_its_duty_from_the_input(host: Host) -> None:
    await host.add(NodeType.Pin, "fan", pin=18, mode="pwm")

    await PinProcessor().run(host.ctx("fan", 25))
    with pytest.raises(ProcessorError, match="outside 0 to 100 percent"):
        await PinProcessor().run(host.ctx("fan", 125))

    assert host.gpio.duties == [(18, 25.0)]


async def test_a_serial_backend_may_send_without_a_coroutine(host: Host) -> None:
    await host.add(NodeType.SerialDevice, "uart", port="loop://")
    sent: list[str] = []
    host.resources["serial"] = type("Link", (), {"send": lambda _s, _n, text: sent.append(text)})()

    await SerialDeviceProcessor().run(host.ctx("uart", True))

    assert sent == ["true"]


async def test_a_peer_without_gpio_gives_a_clear_error(host: Host) -> None:
    await host.add(NodeType.Pin, "relay", pin=17, mode="output")
    del host.resources["gpio"]

    with pytest.raises(ProcessorError, match="no 'gpio' resource"):
        await PinProcessor().run(host.ctx("relay", True))


async def test_a_serial_device_sends_the_input_as_a_line_of_text(host: Host) -> None:
    await host.add(NodeType.SerialDevice, "uart", port="loop://")

    outcome = await SerialDeviceProcessor().run(host.ctx("uart", inputs={"calc": 42.0}))

    assert host.serial.sent == [("uart", "42")]
    assert outcome == Outcome(proceed=True, value="42")


async def test_an_mqtt_bridge_publishes_the_value_as_json(host: Host) -> None:
    await host.add(NodeType.MqttBridge, "bridge", topic="home/temp", qos=2)

    await MqttBridgeProcessor().run(host.ctx("bridge", inputs={"temp": 21.5}))

    assert host.mqtt.published == [("home/temp", b"21.5", 2)]


async def test_an_mqtt_bridge_cannot_publish_to_a_wildcard_topic(host: Host) -> None:
    await host.add(NodeType.MqttBridge, "bridge", topic="home/+/temp")

    with pytest.raises(ProcessorError, match="wildcard topic"):
        await MqttBridgeProcessor().run(host.ctx("bridge", 1.0))


# Structure and the registry.


@pytest.mark.parametrize(
    "type_", [NodeType.Server, NodeType.Project, NodeType.Deadband, NodeType.Debounce]
)
async def test_structural_nodes_and_filters_proceed_without_writing(
    host: Host, type_: NodeType
) -> None:
    node = host.get(HOST)
    if type_ is NodeType.Project:
        node = await host.add(NodeType.Project, "proj")
    elif type_ is not NodeType.Server:
        await host.add(NodeType.DataPoint, "dp")
        meta = {"band": 1.0} if type_ is NodeType.Deadband else {}
        node = await host.add(type_, "flt", parent="dp", **meta)
    before = host.store.doc(HOST).nodes.to_py()

    outcome = await REGISTRY[type_].run(Context(node, host, {}, 5.0))

    assert outcome.proceed
    assert host.store.doc(HOST).nodes.to_py() == before


def test_server_status_reports_version_uptime_and_last_seen() -> None:
    status = server_status(started_at=100.0, now=160.0, last_seen=161.0, version="9.9")

    assert (status.version, status.uptime_s, status.last_seen, status.seen_ago_s) == (
        "9.9", 60.0, 161.0, 0.0
    )  # fmt: skip


def test_the_registry_has_one_processor_for_every_node_type() -> None:
    fresh = make_registry()

    assert set(REGISTRY) == set(NodeType) == set(fresh)
    assert all(processor.type is node_type for node_type, processor in REGISTRY.items())
    assert fresh[NodeType.HighThreshold] is not REGISTRY[NodeType.HighThreshold]
