"""Benchmark cases of the chain planner, and the recursive executor it replaces.

``plan_100k`` and ``plan_1m`` plan one chain that covers a whole host graph: a random tree of
nodes (child edges; every node hangs under an earlier one, as nodes are created under existing
ones) plus about 0.75 target edges per node, each from an earlier node to a later one, so the
graph is acyclic, the average out-degree is about 1.75 and the root's chain reaches every node.
Attaching to uniformly random earlier nodes scatters memory accesses, the unkind case for
caches.

``closure_lattice`` shows why the planner exists. On a diamond lattice (a start node, then
layers of two nodes, each linked to both nodes of the next layer) the old executor ran a node
once per path into it: ``2**(depth + 1) - 1`` executions for ``2 * depth + 1`` nodes. Its
"python" figure is that recursive baseline in pure Python, its "compiled" figure the compiled
planner that runs each node once; both count whole chains per second.
"""

from __future__ import annotations

import importlib
import random
from array import array
from collections.abc import Sequence
from functools import lru_cache
from types import ModuleType

from krill_crdt.benchmarks import Batch, Case, Variant

__all__ = [
    "CASES",
    "LATTICE_DEPTH",
    "TARGETS_PER_NODE",
    "chain_forest",
    "diamond_lattice",
    "lattice_executions",
    "recursive_closure",
]

#: Extra target edges per node on top of the tree's child edge: 0.75 puts the average
#: out-degree at 1.75, between a plain tree (1) and a densely wired rule graph (2).
TARGETS_PER_NODE = 0.75

#: Depth of the diamond lattice: 2**20 paths, about 2.1 million executions for the recursive
#: baseline, which takes around a second in CPython; much deeper and the benchmark would not
#: finish in reasonable time.
LATTICE_DEPTH = 20

#: Fixed seed: every run plans the same graphs, so figures are comparable across runs.
SEED = 20_240_611


@lru_cache(maxsize=2)
def chain_forest(n: int, seed: int = SEED) -> tuple[array[int], array[int], array[int]]:
    """Return ``(parents, src, dst)`` of an acyclic host graph whose node 0 reaches every node.

    ``parents[i]`` is a uniformly random earlier node (-1 for node 0); each target edge goes
    from a random earlier node to a later one. Cached, so both variants of a case (and both
    cases in a run) share one graph.
    """
    rng = random.Random(seed)
    draw = rng.random
    parents = array("i", [-1])
    parents.extend(int(draw() * i) for i in range(1, n))
    src = array("i")
    dst = array("i")
    if n > 1:
        for _ in range(int(n * TARGETS_PER_NODE)):
            later = 1 + int(draw() * (n - 1))
            src.append(int(draw() * later))
            dst.append(later)
    return parents, src, dst


def diamond_lattice(depth: int) -> tuple[int, array[int], array[int]]:
    """Return ``(n, src, dst)``: node 0, then ``depth`` layers of two nodes fully linked."""
    src = array("i", [0, 0])
    dst = array("i", [1, 2])
    for layer in range(1, depth):
        for a in (2 * layer - 1, 2 * layer):
            for b in (2 * layer + 1, 2 * layer + 2):
                src.append(a)
                dst.append(b)
    return 2 * depth + 1, src, dst


def lattice_executions(depth: int) -> int:
    """Executions the recursive baseline does on a diamond lattice of ``depth`` layers."""
    return (1 << (depth + 1)) - 1


def recursive_closure(successors: Sequence[Sequence[int]], start: int, max_depth: int) -> int:
    """Run a chain the way the replaced executor did and return how many executions it did.

    It runs a node, then recurses into each of its targets: once per *path*, with no cycle
    check, so a node reached along many paths runs many times. ``max_depth`` bounds the
    recursion (the original had no bound) so that a benchmark on a lattice or a cycle ends.
    """
    executions = 0

    def run(node: int, depth: int) -> None:
        nonlocal executions
        executions += 1
        if depth < max_depth:
            for target in successors[node]:
                run(target, depth + 1)

    run(start, 0)
    return executions


def _planner(kind: str) -> ModuleType:
    # Imported here, not at the top: a missing compiled module must fail only its variant.
    return importlib.import_module(f"krill_crdt._core._planner_{kind}")


def _plan_forest(kind: str, n: int) -> Variant:
    def factory() -> Batch:
        planner = _planner(kind)
        parents, src, dst = chain_forest(n)
        graph = planner.ChainGraph.from_edges(n, src, dst, parents=parents)

        def batch() -> int:
            graph.plan(0, max_depth=n)
            return 1

        return batch

    return factory


def _plan_lattice() -> Batch:
    planner = _planner("c")
    n, src, dst = diamond_lattice(LATTICE_DEPTH)
    graph = planner.ChainGraph.from_edges(n, src, dst)

    def batch() -> int:
        executions = 0
        for wave in graph.plan(0):
            executions += len(wave)
        if executions != n:
            raise AssertionError(f"planner ran {executions} nodes of {n}")
        return 1

    return batch


def _recurse_lattice() -> Batch:
    n, src, dst = diamond_lattice(LATTICE_DEPTH)
    successors: list[list[int]] = [[] for _ in range(n)]
    for u, v in zip(src, dst, strict=True):
        successors[u].append(v)

    def batch() -> int:
        recursive_closure(successors, 0, LATTICE_DEPTH)
        return 1

    return batch


CASES: list[Case] = [
    Case(
        "plan_100k",
        "plans/s",
        compiled=_plan_forest("c", 100_000),
        python=_plan_forest("py", 100_000),
        note="chain over a 100k-node host graph, out-degree ~1.75, all nodes reached",
    ),
    Case(
        "plan_1m",
        "plans/s",
        compiled=_plan_forest("c", 1_000_000),
        python=_plan_forest("py", 1_000_000),
        note="same shape at 1M nodes; its working set (about 70 MB) no longer fits the CPU caches",
    ),
    Case(
        "closure_lattice",
        "chains/s",
        compiled=_plan_lattice,
        python=_recurse_lattice,
        note=(
            f"depth-{LATTICE_DEPTH} diamond lattice: compiled planner runs "
            f"{2 * LATTICE_DEPTH + 1} nodes once each; python column is the recursive "
            f"baseline, {lattice_executions(LATTICE_DEPTH):,} executions"
        ),
    ),
]
