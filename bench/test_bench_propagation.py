"""Propagation between two real peers against the baselines: ``pytest
bench/test_bench_propagation.py --benchmark-enable``.

The same set-ups as ``krill bench`` (``krill_crdt.benchmarks.propagation``). A latency round is
one write, made and awaited on its own, so the round statistics are one-hop latencies in
seconds; a burst round is 10,000 writes until the last has arrived. Each test starts and stops
its own peers, relay process or broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from krill_crdt.benchmarks._rig import LoopRig
from krill_crdt.benchmarks.propagation import (
    BURST_WRITES,
    WARMUP_WRITES,
    Side,
    SideStarter,
    _base_mqtt,
    _base_ws,
    _open,
    _ours_mqtt,
    _ours_ws,
)

STARTERS: dict[str, SideStarter] = {
    "ws-ours": _ours_ws,
    "ws-pycrdt-websocket": _base_ws,
    "mqtt-ours": _ours_mqtt,
    "mqtt-aiomqtt": _base_mqtt,
}


@pytest.fixture(params=sorted(STARTERS))
def side(request: pytest.FixtureRequest) -> Iterator[tuple[str, LoopRig, Side]]:
    name = str(request.param)
    try:
        rig, started = _open(STARTERS[name])
    except ImportError as exc:
        pytest.skip(f"{name}: {exc}")
    try:
        yield name, rig, started
    finally:
        rig.close()


def test_one_hop_latency(benchmark: Any, side: tuple[str, LoopRig, Side]) -> None:
    name, rig, started = side
    values = iter(range(1, 10**9))

    def hop() -> float:
        return rig.run(started.hop(str(next(values))))

    for _ in range(WARMUP_WRITES):
        hop()
    benchmark.group = f"one-hop latency ({name.split('-')[0]})"
    benchmark.pedantic(hop, rounds=300, iterations=1)


def test_burst_of_writes(benchmark: Any, side: tuple[str, LoopRig, Side]) -> None:
    name, rig, started = side
    tags = iter(range(1, 10**9))

    def burst() -> None:
        rig.run(started.burst(BURST_WRITES, f"burst{next(tags)}"))

    benchmark.group = f"burst of {BURST_WRITES} writes ({name.split('-')[0]})"
    benchmark.extra_info["writes_per_round"] = BURST_WRITES
    benchmark.pedantic(burst, rounds=3, iterations=1, warmup_rounds=1)
