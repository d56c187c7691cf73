"""A deterministic discrete-event swarm simulator that drives the real sync engine.

    from krill_crdt.sim import SCENARIOS, run

    report = run(SCENARIOS["partition-heal"].sized(40), seed=7)
    assert report.passed, report.invariants

See ``docs/sim.md`` for the model, the invariants and how to write scenarios.
"""

from __future__ import annotations

from .builtin import SCENARIOS
from .checks import Invariant, WriteRecord
from .faults import FAULTS
from .report import Report
from .scenario import (
    BrokerOutage,
    Crash,
    LinkProfile,
    LinkRule,
    Partition,
    Scenario,
    Writer,
    load_scenarios,
    select,
)
from .simulator import Simulation, run

__all__ = [
    "FAULTS",
    "SCENARIOS",
    "BrokerOutage",
    "Crash",
    "Invariant",
    "LinkProfile",
    "LinkRule",
    "Partition",
    "Report",
    "Scenario",
    "Simulation",
    "WriteRecord",
    "Writer",
    "load_scenarios",
    "run",
    "select",
]
