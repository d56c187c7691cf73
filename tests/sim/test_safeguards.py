"""A broken engine is caught: switching off one safeguard fails the matching invariant."""

from __future__ import annotations

from dataclasses import replace

import pytest

from krill_crdt.sim import LinkProfile, Scenario, Writer, run
from krill_crdt.sim.faults import engine_class

_BASE = Scenario(
    name="safeguard",
    peers=8,
    hosts=2,
    writers=(Writer("all", rate=1.0, start=2.0, stop=8.0, doc="any"),),
    settle=15.0,
)
#: Duplicating ws links on a ring: relayed frames meet again around the ring.
DUPLICATING = replace(_BASE, transports=("ws",), profile=LinkProfile(duplicate=0.3))
#: A ws mesh: a relay that ignores the origin tree sends every delta over every link.
MESH = replace(_BASE, transports=("ws",), topology="mesh")
#: 30% loss on every link: only anti-entropy brings back what is lost.
LOSSY = replace(_BASE, profile=LinkProfile(loss=0.3))


@pytest.mark.parametrize("scenario", [DUPLICATING, MESH, LOSSY], ids=["dup", "mesh", "lossy"])
def test_the_real_engine_passes_the_scenarios_the_faults_fail(scenario: Scenario) -> None:
    report = run(scenario, seed=1)

    assert report.passed, {k: v.detail for k, v in report.invariants.items() if not v.passed}


def test_without_dedup_duplicates_are_relayed_until_traffic_explodes() -> None:
    report = run(replace(DUPLICATING, faults=("dedup",)), seed=1)

    assert not report.invariants["bounded-traffic"].passed
    assert not report.invariants["quiescence"].passed


def test_without_origin_tracking_deltas_go_back_and_frames_per_update_fail() -> None:
    report = run(replace(MESH, faults=("origin",)), seed=1)

    assert report.converged
    assert not report.invariants["frames-per-update"].passed
    assert report.frames_per_update > 2 * MESH.peers


def test_without_anti_entropy_lost_deltas_stay_lost_and_convergence_fails() -> None:
    report = run(replace(LOSSY, faults=("anti-entropy",)), seed=1)

    assert not report.invariants["convergence"].passed


def test_an_unknown_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        engine_class(["no-such-safeguard"])
