"""``krill bench``: the table, the JSON entries and the argument checks."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from krill_crdt.benchmarks import Case
from krill_crdt.benchmarks.runner import compiled_unavailable, discover_cases, run_case
from krill_crdt.cli import SUBCOMMANDS, bench

CONTRACT_FIELDS = {"name", "compiled_ops_s", "python_ops_s", "ratio", "unit"}


def run_bench(*argv: str) -> int:
    """Run the bench subcommand exactly as ``krill`` dispatches it."""
    parser = argparse.ArgumentParser(prog="krill")
    bench.register(parser.add_subparsers())
    args = parser.parse_args(["bench", *argv])
    return int(args.func(args))


def test_json_entries_carry_the_contract_fields(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert run_bench("--only", "plan_100k", "--budget", "0.2", "--json", str(out)) == 0
    entries: list[dict[str, Any]] = json.loads(out.read_text())
    assert [entry["name"] for entry in entries] == ["plan_100k"]
    entry = entries[0]
    assert set(entry) >= CONTRACT_FIELDS
    assert entry["unit"] == "plans/s"
    assert entry["python_ops_s"] > 0
    if compiled_unavailable():
        # Twins only: the compiled column is empty, with the reason, never the twin again.
        assert entry["compiled_ops_s"] is None and entry["ratio"] is None
        assert entry["compiled_skipped"] == compiled_unavailable()
    else:
        assert entry["compiled_ops_s"] > 0
        assert entry["ratio"] == pytest.approx(entry["compiled_ops_s"] / entry["python_ops_s"])


def test_the_krill_entry_point_runs_bench(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in SUBCOMMANDS:
        # Every listed subcommand must import for the top-level parser to build.
        pytest.importorskip(f"krill_crdt.cli.{name}")
    from krill_crdt.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--only", "closure_lattice", "--budget", "0.05", "--json", str(out)]) == 0
    assert "closure_lattice" in capsys.readouterr().out
    entry = json.loads(out.read_text())[0]
    assert entry["python_ops_s"] > 0
    assert compiled_unavailable() or entry["ratio"] > 1


def test_an_unknown_case_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_bench("--only", "no_such_case") == 2
    assert "no_such_case" in capsys.readouterr().err


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(SystemExit):
        run_bench("--budget", "0")


def test_the_planner_cases_are_discovered() -> None:
    cases, _problems = discover_cases()
    names = {case.name for case in cases}
    assert {"plan_100k", "plan_1m", "closure_lattice"} <= names


def test_a_variant_that_is_not_built_is_marked_not_timed() -> None:
    def missing() -> Any:
        importlib.import_module("krill_crdt._core._no_such_module_c")

    def present() -> Any:
        return lambda: 1

    result = run_case(Case("probe", "ops/s", compiled=missing, python=present), budget_s=0.01)
    assert result.compiled.ops_s is None
    assert result.compiled.skipped.startswith("not built")
    assert result.python.ops_s is not None and result.python.ops_s > 0
    entry = result.to_json()
    assert entry["compiled_ops_s"] is None and entry["ratio"] is None


def test_compiled_variants_are_skipped_with_the_reason_given() -> None:
    def present() -> Any:
        return lambda: 1

    case = Case("probe", "ops/s", compiled=present, python=present)
    result = run_case(case, budget_s=0.01, skip_compiled="not built (test)")
    assert result.compiled.ops_s is None
    assert result.to_json()["compiled_skipped"] == "not built (test)"
