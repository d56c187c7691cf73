"""The simulator at a size beyond CI's default: 200 peers split in two and heal."""

from __future__ import annotations

import pytest

from krill_crdt.sim import SCENARIOS, run

#: Peers in the large partition-heal: a swarm ten times the built-in scenario's default
#: halves, on a sparse ring of links with multicast beside it.
LARGE_SWARM = 200


@pytest.mark.slow
def test_a_partition_heal_of_two_hundred_peers_holds_every_invariant() -> None:
    report = run(SCENARIOS["partition-heal"].sized(LARGE_SWARM), seed=1)

    failed = {k: v.detail for k, v in report.invariants.items() if not v.passed}
    assert not failed
    assert report.converged and report.lost_writes == 0 and report.quiescent
    # Multicast reaches each peer once and links add no second copy: a peer receives fewer
    # delta frames than writes were made, as deltas of one flush travel merged.
    assert report.delta_frames_per_receiver < 1.0
