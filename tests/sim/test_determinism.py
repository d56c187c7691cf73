"""One seed gives one run: byte-identical reports, whatever PYTHONHASHSEED is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from krill_crdt.sim import SCENARIOS, run

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = (
    "import sys\n"
    "from krill_crdt.sim import SCENARIOS, run\n"
    "sys.stdout.write(run(SCENARIOS['flaky-lan'].sized(6), seed=11).to_json())\n"
)


def test_the_same_seed_gives_the_same_json_report_twice() -> None:
    scenario = SCENARIOS["crash-restart"].sized(8)

    first = run(scenario, seed=5).to_json()
    second = run(scenario, seed=5).to_json()

    assert first == second


def test_another_seed_gives_another_run() -> None:
    scenario = SCENARIOS["flaky-lan"].sized(6)

    assert run(scenario, seed=1).to_json() != run(scenario, seed=2).to_json()


def test_reports_do_not_depend_on_the_hash_seed() -> None:
    outputs = []
    for hash_seed in ("1", "2", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=True,
        )
        outputs.append(done.stdout)

    assert outputs[0] == outputs[1] == outputs[2]
    assert b'"converged": true' in outputs[0]
