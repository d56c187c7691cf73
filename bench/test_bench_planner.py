"""Chain planner, compiled next to the twin: ``pytest bench/test_bench_planner.py
--benchmark-enable``.

The graphs are the ones ``krill bench`` plans (``krill_crdt.benchmarks.planner``). One round
is one plan. The lattice group adds the recursive executor the planner replaced, which runs a
node once per path: about two million executions on the depth-20 lattice against 41 planned
nodes.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

from krill_crdt.benchmarks.planner import (
    LATTICE_DEPTH,
    chain_forest,
    diamond_lattice,
    lattice_executions,
    recursive_closure,
)

VARIANTS = ["compiled", "twin"]


def planner(variant: str) -> ModuleType:
    kind = "c" if variant == "compiled" else "py"
    try:
        return importlib.import_module(f"krill_crdt._core._planner_{kind}")
    except ImportError:
        pytest.skip("compiled planner is not built")


def _plan_forest(benchmark: Any, variant: str, n: int, rounds: int) -> None:
    module = planner(variant)
    parents, src, dst = chain_forest(n)
    graph = module.ChainGraph.from_edges(n, src, dst, parents=parents)
    benchmark.group = f"plan of a {n:,}-node chain"
    plan = benchmark.pedantic(graph.plan, args=(0,), kwargs={"max_depth": n}, rounds=rounds)
    assert sum(len(wave) for wave in plan) == n


@pytest.mark.parametrize("variant", VARIANTS)
def test_plan_100k(benchmark: Any, variant: str) -> None:
    _plan_forest(benchmark, variant, 100_000, rounds=20 if variant == "compiled" else 3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_plan_1m(benchmark: Any, variant: str) -> None:
    _plan_forest(benchmark, variant, 1_000_000, rounds=10 if variant == "compiled" else 1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_lattice_planned(benchmark: Any, variant: str) -> None:
    module = planner(variant)
    n, src, dst = diamond_lattice(LATTICE_DEPTH)
    graph = module.ChainGraph.from_edges(n, src, dst)
    benchmark.group = f"depth-{LATTICE_DEPTH} diamond lattice, one chain"
    benchmark.extra_info["executions"] = n
    plan = benchmark(graph.plan, 0)
    assert sum(len(wave) for wave in plan) == n


def test_lattice_recursive_baseline(benchmark: Any) -> None:
    n, src, dst = diamond_lattice(LATTICE_DEPTH)
    successors: list[list[int]] = [[] for _ in range(n)]
    for u, v in zip(src, dst, strict=True):
        successors[u].append(v)
    benchmark.group = f"depth-{LATTICE_DEPTH} diamond lattice, one chain"
    benchmark.extra_info["executions"] = lattice_executions(LATTICE_DEPTH)
    # One path per execution: a couple of rounds are plenty to show the gap.
    executions = benchmark.pedantic(
        recursive_closure, args=(successors, 0, LATTICE_DEPTH), rounds=2
    )
    assert executions == lattice_executions(LATTICE_DEPTH)
