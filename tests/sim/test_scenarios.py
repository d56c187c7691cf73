"""Every built-in scenario holds every invariant at CI size, over a campaign of seeds."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import pytest

from krill_crdt.sim import SCENARIOS, run
from tests.sim.sizes import CAMPAIGN_SEEDS, CI_PEERS


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_built_in_scenario_holds_every_invariant_at_ci_size(name: str) -> None:
    report = run(SCENARIOS[name].sized(CI_PEERS), seed=1)

    failed = {k: v.detail for k, v in report.invariants.items() if not v.passed}
    assert not failed
    assert report.converged and report.lost_writes == 0 and report.quiescent
    assert report.updates > 0


def _failures(job: tuple[str, int]) -> tuple[str, int, dict[str, str], float | None]:
    name, seed = job
    report = run(SCENARIOS[name].sized(CI_PEERS), seed=seed)
    failed = {k: v.detail for k, v in report.invariants.items() if not v.passed}
    return name, seed, failed, report.convergence_ms


def test_a_campaign_of_twenty_seeds_per_scenario_passes_everywhere() -> None:
    jobs = [(name, seed) for name in sorted(SCENARIOS) for seed in range(CAMPAIGN_SEEDS)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_failures, jobs, chunksize=4))

    failures = [(name, seed, failed) for name, seed, failed, _ in results if failed]
    assert not failures
    assert all(ms is not None for *_, ms in results)
