"""``krill sim`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from krill_crdt.cli import main


def test_partition_heal_at_fifty_peers_exits_zero_and_repeats_byte_for_byte(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"

    first = main(["sim", "partition-heal", "--peers", "50", "--seed", "7", "--json", str(a)])
    second = main(["sim", "partition-heal", "--peers", "50", "--seed", "7", "--json", str(b)])

    assert first == second == 0
    assert a.read_bytes() == b.read_bytes()
    report = json.loads(a.read_text())
    for key in (
        "peers",
        "seed",
        "scenario",
        "converged",
        "convergence_ms",
        "updates",
        "frames_sent",
        "frames_per_update",
        "lost_writes",
        "quiescent",
        "invariants",
    ):
        assert key in report
    assert report["peers"] == 50 and report["seed"] == 7


def test_list_names_every_built_in_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--list"]) == 0

    out = capsys.readouterr().out
    for name in (
        "partition-heal",
        "flaky-lan",
        "beacon-storm",
        "concurrent-edit",
        "delete-vs-create",
        "crash-restart",
        "browser-relay",
        "broker-outage",
        "steady-load",
    ):
        assert name in out


def test_an_unknown_scenario_exits_two() -> None:
    assert main(["sim", "no-such-scenario"]) == 2


def test_a_failing_invariant_exits_one(tmp_path: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text(
        '[[scenario]]\nname = "broken"\npeers = 6\nhosts = 2\nfaults = ["anti-entropy"]\n'
        "profile = { loss = 0.3 }\n"
        '[[scenario.writers]]\npeers = "all"\nrate = 1.0\nstart = 2.0\nstop = 6.0\n'
        'doc = "any"\n'
    )

    assert main(["sim", "broken", "--scenarios", str(toml)]) == 1


def test_a_campaign_summarises_every_seed(tmp_path: Path) -> None:
    out = tmp_path / "campaign.json"

    status = main(["sim", "browser-relay", "--peers", "4", "--campaign", "3", "--json", str(out)])

    assert status == 0
    results = json.loads(out.read_text())
    assert [r["seed"] for r in results["browser-relay"]] == [0, 1, 2]
