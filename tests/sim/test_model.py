"""Scenario descriptions, selectors, the lost-write rule and the runtime's wiring."""

from __future__ import annotations

from pathlib import Path

import pytest

from krill_crdt.runtime.peer import LOCAL_TRANSPORTS as RUNTIME_LOCAL
from krill_crdt.sim import Scenario, load_scenarios, run, select
from krill_crdt.sim.checks import WriteRecord, lost_writes
from krill_crdt.sim.peer import LOCAL_TRANSPORTS


def test_local_update_origins_are_the_runtimes() -> None:
    assert LOCAL_TRANSPORTS == RUNTIME_LOCAL


def test_selectors_pick_fractions_indices_and_groups() -> None:
    assert select("all", 4) == [0, 1, 2, 3]
    assert select("0:0.5", 10) == [0, 1, 2, 3, 4]
    assert select("0.5:1", 10) == [5, 6, 7, 8, 9]
    assert select("#-1", 10) == [9]
    assert select("east", 4, {"east": "0:0.5"}) == [0, 1]
    with pytest.raises(ValueError):
        select("nonsense", 4)


def test_a_scenario_rejects_a_swarm_of_one() -> None:
    with pytest.raises(ValueError, match="at least 2 peers"):
        Scenario(name="x", peers=1)


def test_scenarios_load_from_toml_and_run(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[[scenario]]\nname = "tiny"\npeers = 4\nhosts = 1\ntransports = ["udp", "ws"]\n'
        '[[scenario.partitions]]\nat = 3.0\nheal = 6.0\ngroups = ["0:0.5"]\n'
        '[[scenario.writers]]\npeers = "all"\nrate = 1.0\nstart = 1.0\nstop = 8.0\n'
    )

    scenarios = load_scenarios(path)

    assert run(scenarios["tiny"], seed=3).passed


def test_an_unknown_toml_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[[scenario]]\nname = "x"\npeerz = 4\n')

    with pytest.raises(ValueError, match="peerz"):
        load_scenarios(path)


def _edit(index: int, client: int, clock: int, value: str, seen: dict[int, int]) -> WriteRecord:
    return WriteRecord(
        index,
        0,
        0.0,
        "h",
        "edit",
        "n",
        value,
        None,
        client,
        clock,
        seen,
        acked=True,
        edit_of="name",
    )


def test_an_edit_overwritten_by_a_concurrent_edit_is_not_lost() -> None:
    a = _edit(0, client=1, clock=1, value="a", seen={})
    b = _edit(1, client=2, clock=1, value="b", seen={})

    lost = lost_writes([a, b], {"h": {1: 1, 2: 1}}, {"h": {"n": {"name": "b"}}})

    assert lost == []


def test_an_edit_whose_value_vanished_without_a_rival_is_lost() -> None:
    a = _edit(0, client=1, clock=1, value="a", seen={})
    older = _edit(1, client=2, clock=1, value="old", seen={})
    a.seen = {2: 1}  # a's writer had seen the older edit: it cannot win over a

    lost = lost_writes([older, a], {"h": {1: 1, 2: 1}}, {"h": {"n": {"name": "old"}}})

    assert [w.value for w, _ in lost] == ["a"]


def test_an_acknowledged_write_that_never_arrived_is_lost() -> None:
    a = _edit(0, client=1, clock=5, value="a", seen={})

    lost = lost_writes([a], {"h": {1: 2}}, {"h": {}})

    assert len(lost) == 1 and "never reached" in lost[0][1]
