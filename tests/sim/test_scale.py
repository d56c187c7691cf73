"""The simulator at a size beyond CI's default: 200 peers split in two and heal."""

from __future__ import annotations

from dataclasses import replace

import pytest

from krill_crdt.sim import SCENARIOS, Scenario, run

#: Peers in the large partition-heal: a swarm ten times the built-in scenario's default
#: halves, on a sparse ring of links with multicast beside it.
LARGE_SWARM = 200

#: Writes per second across the whole swarm, as in ``bench/sim_1000.py``: the built-in
#: scenario's rate is per peer, so its work grows with the square of the swarm (every peer
#: applies every write); a fixed swarm-wide rate measures the size of the swarm alone.
SWARM_WRITE_RATE = 10.0


def large_partition_heal(*, swarm_rate: float | None) -> Scenario:
    scenario = SCENARIOS["partition-heal"].sized(LARGE_SWARM)
    if swarm_rate is None:
        return scenario
    writers = tuple(replace(w, rate=swarm_rate / LARGE_SWARM) for w in scenario.writers)
    return replace(scenario, writers=writers)


def test_two_hundred_peers_at_a_swarm_wide_write_rate_hold_every_invariant() -> None:
    report = run(large_partition_heal(swarm_rate=SWARM_WRITE_RATE), seed=1)

    failed = {k: v.detail for k, v in report.invariants.items() if not v.passed}
    assert not failed
    assert report.converged and report.lost_writes == 0 and report.quiescent
    assert report.delta_frames_per_receiver < 1.0


@pytest.mark.slow
def test_two_hundred_peers_each_writing_at_the_scenarios_rate_hold_every_invariant() -> None:
    report = run(large_partition_heal(swarm_rate=None), seed=1)

    failed = {k: v.detail for k, v in report.invariants.items() if not v.passed}
    assert not failed
    assert report.converged and report.lost_writes == 0 and report.quiescent
    # Multicast reaches each peer once and links add no second copy: a peer receives fewer
    # delta frames than writes were made, as deltas of one flush travel merged.
    assert report.delta_frames_per_receiver < 1.0
