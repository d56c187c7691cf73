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


@pytest.mark.parametrize(
    "swarm_rate",
    [
        pytest.param(SWARM_WRITE_RATE, id="swarm-wide-rate"),
        # The scenario's own rate per peer: 60 writes a second, each applied by 200 peers.
        pytest.param(None, id="per-peer-rate", marks=pytest.mark.slow),
    ],
)
def test_two_hundred_peers_split_and_healed_hold_every_invariant(swarm_rate: float | None) -> None:
    report = run(large_partition_heal(swarm_rate=swarm_rate), seed=1)

    failed = {k: v.detail for k, v in report.invariants.items() if not v.passed}
    assert not failed
    assert report.converged and report.lost_writes == 0 and report.quiescent
    # Multicast reaches each peer once and links add no second copy: a peer receives fewer
    # delta frames than writes were made, as deltas of one flush travel merged.
    assert report.delta_frames_per_receiver < 1.0
