"""Chain planner: plans in waves, limits and cycle reports; compiled module and twin agree."""

from __future__ import annotations

import random
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from krill_crdt.errors import ChainCycleError, ChainDepthError, ChainFanOutError, PlanError
from tests.conftest import hot_module

Edge = tuple[int, int]

# Hypothesis graphs stay small: the properties hold at any size, and small graphs shrink well.
MAX_TEST_NODES = 24


@pytest.fixture
def planner(impl_kind: str) -> ModuleType:
    return hot_module("planner", impl_kind)


@pytest.fixture(scope="module")
def both() -> tuple[ModuleType, ModuleType]:
    """The compiled module and the twin, for differential tests (module-scoped: stateless)."""
    return hot_module("planner", "c"), hot_module("planner", "py")


# -- reference model ---------------------------------------------------------------------------


def successor_map(n: int, edges: set[Edge]) -> list[list[int]]:
    succ: list[list[int]] = [[] for _ in range(n)]
    for u, v in sorted(edges):
        succ[u].append(v)
    return succ


def reachable(succ: list[list[int]], start: int) -> set[int]:
    seen = {start}
    stack = [start]
    while stack:
        for v in succ[stack.pop()]:
            if v not in seen:
                seen.add(v)
                stack.append(v)
    return seen


def longest_distances(succ: list[list[int]], start: int) -> dict[int, int]:
    """Longest path length from start to each reachable node (the graph must be acyclic)."""
    found = reachable(succ, start)
    order: list[int] = []
    done: set[int] = set()

    def visit(u: int) -> None:
        done.add(u)
        for v in succ[u]:
            if v not in done:
                visit(v)
        order.append(u)

    visit(start)
    dist = {u: -1 for u in found}
    dist[start] = 0
    for u in reversed(order):
        for v in succ[u]:
            dist[v] = max(dist[v], dist[u] + 1)
    return dist


def outcome(plan: Callable[..., list[list[int]]], *args: int, **kwargs: int) -> Any:
    """The plan ``plan(*args, **kwargs)`` returns, or its error as comparable data."""
    try:
        return plan(*args, **kwargs)
    except PlanError as err:
        return (type(err), str(err), getattr(err, "cycle", None))


# -- strategies --------------------------------------------------------------------------------


@st.composite
def graphs(draw: st.DrawFn, acyclic: bool = False) -> tuple[int, set[Edge], int]:
    """A node count, a set of successor edges and a start node."""
    n = draw(st.integers(min_value=1, max_value=MAX_TEST_NODES))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n, unique=True
        )
    )
    if acyclic:
        # Edges go from lower to higher rank; a shuffled rank keeps indices unordered.
        rank = draw(st.permutations(range(n)))
        pairs = [(rank[min(u, v)], rank[max(u, v)]) for u, v in pairs if u != v]
    start = draw(st.integers(0, n - 1))
    return n, set(pairs), start


def build(module: ModuleType, n: int, edges: set[Edge]) -> Any:
    ordered = sorted(edges)
    return module.ChainGraph.from_edges(n, [u for u, _ in ordered], [v for _, v in ordered])


# -- plans -------------------------------------------------------------------------------------


def test_a_node_without_successors_plans_as_itself(planner: ModuleType) -> None:
    graph = planner.ChainGraph(3)
    assert graph.plan(1) == [[1]]


def test_a_node_on_two_paths_runs_once_after_both(planner: ModuleType) -> None:
    # 0 -> 1 -> 3 and 0 -> 2 -> 4 -> 3: node 3 waits for the longer branch.
    graph = planner.ChainGraph.from_edges(5, [0, 0, 1, 2, 4], [1, 2, 3, 4, 3])
    assert graph.plan(0) == [[0], [1, 2], [4], [3]]


def test_nodes_not_reachable_from_the_start_are_left_out(planner: ModuleType) -> None:
    graph = planner.ChainGraph.from_edges(5, [0, 3, 4], [1, 0, 2])
    assert graph.plan(0) == [[0], [1]]


def test_a_chain_follows_child_edges_from_the_parent_array(planner: ModuleType) -> None:
    # Node 0 has children 1 and 2; node 1 targets node 3, itself a child of 2.
    graph = planner.ChainGraph.from_edges(4, [1], [3], parents=[-1, 0, 0, 2])
    assert graph.plan(0) == [[0], [1, 2], [3]]
    assert graph.successors(2) == [3]


def test_repeated_edges_count_once(planner: ModuleType) -> None:
    graph = planner.ChainGraph.from_edges(3, [0, 0, 0, 1], [1, 1, 2, 2], parents=[-1, 0, -1])
    assert graph.edge_count == 3
    assert graph.successors(0) == [1, 2]
    assert graph.plan(0) == [[0], [1], [2]]


def test_waves_are_sorted_whatever_order_edges_came_in(planner: ModuleType) -> None:
    graph = planner.ChainGraph(6)
    for target in (5, 3, 1, 4, 2):
        graph.add_edge(0, target)
    assert graph.plan(0) == [[0], [1, 2, 3, 4, 5]]
    assert graph.successors(0) == [1, 2, 3, 4, 5]


def test_a_small_chain_in_a_large_graph_is_planned_like_a_fresh_build(
    both: tuple[ModuleType, ModuleType],
) -> None:
    # A chain far smaller than the graph takes the per-wave sort, not the full scan.
    rng = random.Random(7)
    n = 5000
    edges = {(rng.randrange(4000, n), rng.randrange(4000, n)) for _ in range(300)}
    edges = {(min(u, v), max(u, v)) for u, v in edges if u != v}
    compiled, twin = both
    plans = [build(module, n, edges).plan(4000) for module in both]
    assert plans[0] == plans[1]
    succ = successor_map(n, edges)
    assert sorted(x for wave in plans[0] for x in wave) == sorted(reachable(succ, 4000))
    assert compiled.ChainGraph(n).plan(4999) == twin.ChainGraph(n).plan(4999) == [[4999]]


def test_planning_leaves_the_graph_unchanged(planner: ModuleType) -> None:
    graph = planner.ChainGraph.from_edges(4, [0, 1, 2], [1, 2, 3])
    first = graph.plan(0)
    assert graph.plan(0) == first
    assert graph.plan(2) == [[2], [3]]
    assert graph.edge_count == 3


# -- editing -----------------------------------------------------------------------------------


def test_add_edge_tells_whether_the_edge_is_new(planner: ModuleType) -> None:
    graph = planner.ChainGraph(2)
    assert graph.add_edge(0, 1) is True
    assert graph.add_edge(0, 1) is False
    assert graph.has_edge(0, 1)
    assert graph.edge_count == 1


def test_remove_edge_tells_whether_there_was_one(planner: ModuleType) -> None:
    graph = planner.ChainGraph.from_edges(3, [0, 0], [1, 2])
    assert graph.remove_edge(0, 1) is True
    assert graph.remove_edge(0, 1) is False
    assert not graph.has_edge(0, 1)
    assert graph.successors(0) == [2]
    assert graph.plan(0) == [[0], [2]]


def test_add_node_returns_the_next_index(planner: ModuleType) -> None:
    graph = planner.ChainGraph()
    assert graph.add_node() == 0
    assert graph.add_nodes(3) == 1
    assert len(graph) == 4
    graph.add_edge(0, 3)
    assert graph.plan(0) == [[0], [3]]


def test_heavy_editing_matches_a_fresh_build(both: tuple[ModuleType, ModuleType]) -> None:
    # Enough growth to move slices around and compact the compiled arena several times.
    rng = random.Random(11)
    n = 3000
    graphs_ = [module.ChainGraph(n) for module in both]
    edges: set[Edge] = set()
    live: list[Edge] = []
    for _ in range(40_000):
        if live and rng.random() < 0.3:
            k = rng.randrange(len(live))
            u, v = live[k]
            live[k] = live[-1]
            live.pop()
            assert [g.remove_edge(u, v) for g in graphs_] == [True, True]
            edges.discard((u, v))
        else:
            u = rng.randrange(n - 1)
            v = rng.randrange(u + 1, n)
            new = (u, v) not in edges
            assert [g.add_edge(u, v) for g in graphs_] == [new, new]
            if new:
                edges.add((u, v))
                live.append((u, v))
    fresh = build(both[1], n, edges)
    for graph in graphs_:
        assert graph.edge_count == len(edges)
        for start in (0, 17, 1500):
            assert graph.plan(start, max_depth=n) == fresh.plan(start, max_depth=n)
        assert all(graph.successors(u) == fresh.successors(u) for u in range(0, n, 97))


def test_indices_out_of_range_are_refused(planner: ModuleType) -> None:
    graph = planner.ChainGraph(2)
    calls: list[Callable[[], object]] = [
        lambda: graph.add_edge(0, 2),
        lambda: graph.remove_edge(-1, 0),
        lambda: graph.successors(2),
        lambda: graph.plan(5),
        lambda: graph.plan(0, max_depth=0),
        lambda: graph.plan(0, max_fan_out=-1),
        lambda: planner.ChainGraph(-1),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert graph.edge_count == 0


def test_bulk_build_names_the_first_bad_index(both: tuple[ModuleType, ModuleType]) -> None:
    cases: list[tuple[list[int], list[int], list[int] | None]] = [
        ([0, 1], [1], None),
        ([0, 3], [1, 1], None),
        ([0, 1], [1, 2**40], None),
        ([0], [1], [-1, 0, -2]),
        ([0], [1], [-1]),
    ]
    for src, dst, parents in cases:
        messages = set()
        for module in both:
            with pytest.raises(ValueError) as caught:
                module.ChainGraph.from_edges(3, src, dst, parents=parents)
            messages.add(str(caught.value))
        assert len(messages) == 1, messages


def test_defaults_agree_between_implementations(both: tuple[ModuleType, ModuleType]) -> None:
    compiled, twin = both
    for name in ("MAX_CHAIN_DEPTH", "MAX_FAN_OUT", "MAX_NODES"):
        assert getattr(compiled, name) == getattr(twin, name)
    assert repr(build(compiled, 3, {(0, 1)})) == repr(build(twin, 3, {(0, 1)}))


# -- errors ------------------------------------------------------------------------------------


def test_a_self_edge_is_a_cycle_of_one(planner: ModuleType) -> None:
    graph = planner.ChainGraph.from_edges(2, [0, 1], [1, 1])
    with pytest.raises(ChainCycleError) as caught:
        graph.plan(0)
    assert caught.value.cycle == [1]


def test_a_cycle_is_reported_from_its_smallest_node_in_order(planner: ModuleType) -> None:
    # 0 -> 4 -> 2 -> 3 -> 4 loops through 4, 2, 3.
    graph = planner.ChainGraph.from_edges(5, [0, 4, 2, 3], [4, 2, 3, 4])
    with pytest.raises(ChainCycleError) as caught:
        graph.plan(0)
    assert caught.value.cycle == [2, 3, 4]
    assert "node 0" in str(caught.value)


def test_a_cycle_outside_the_chain_does_not_matter(planner: ModuleType) -> None:
    graph = planner.ChainGraph.from_edges(4, [0, 2, 3], [1, 3, 2])
    assert graph.plan(0) == [[0], [1]]


def test_removing_an_edge_of_the_cycle_makes_the_chain_plannable(planner: ModuleType) -> None:
    graph = planner.ChainGraph.from_edges(3, [0, 1, 2], [1, 2, 1])
    with pytest.raises(ChainCycleError):
        graph.plan(0)
    graph.remove_edge(2, 1)
    assert graph.plan(0) == [[0], [1], [2]]


def test_depth_limit_names_the_first_node_beyond_it(planner: ModuleType) -> None:
    graph = planner.ChainGraph.from_edges(5, [0, 1, 2, 3], [1, 2, 3, 4])
    assert len(graph.plan(0, max_depth=5)) == 5
    with pytest.raises(ChainDepthError, match=r"5 waves deep.*limit of 3; node 3 is the first"):
        graph.plan(0, max_depth=3)


def test_fan_out_cap_names_the_node_and_the_cap(planner: ModuleType) -> None:
    graph = planner.ChainGraph.from_edges(5, [0, 0, 1, 1, 1], [1, 2, 2, 3, 4])
    assert graph.plan(0, max_fan_out=3)
    with pytest.raises(ChainFanOutError, match=r"node 0 has 2 successors.*cap of 1"):
        graph.plan(0, max_fan_out=1)


def test_fan_out_is_checked_before_cycles_and_cycles_before_depth(planner: ModuleType) -> None:
    graph = planner.ChainGraph.from_edges(4, [0, 0, 1, 2, 3], [1, 2, 2, 3, 2])
    with pytest.raises(ChainFanOutError):
        graph.plan(0, max_depth=1, max_fan_out=1)
    with pytest.raises(ChainCycleError):
        graph.plan(0, max_depth=1)


# -- properties over both implementations ------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(graphs(acyclic=True))
def test_plans_place_every_reachable_node_once_at_its_longest_distance(
    both: tuple[ModuleType, ModuleType], case: tuple[int, set[Edge], int]
) -> None:
    n, edges, start = case
    plans = [build(module, n, edges).plan(start, max_depth=n) for module in both]
    assert plans[0] == plans[1]
    plan = plans[0]
    succ = successor_map(n, edges)
    wave_of = {node: k for k, wave in enumerate(plan) for node in wave}
    assert sum(len(wave) for wave in plan) == len(wave_of)
    assert set(wave_of) == reachable(succ, start)
    assert wave_of == longest_distances(succ, start)
    assert all(wave_of[u] < wave_of[v] for u, v in edges if u in wave_of)
    assert all(wave == sorted(wave) for wave in plan)


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_both_implementations_agree_on_any_graph(
    both: tuple[ModuleType, ModuleType], case: tuple[int, set[Edge], int]
) -> None:
    n, edges, start = case
    results = [outcome(build(module, n, edges).plan, start, max_depth=n) for module in both]
    assert results[0] == results[1]


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_a_reported_cycle_is_a_real_cycle_in_the_chain(
    both: tuple[ModuleType, ModuleType], case: tuple[int, set[Edge], int]
) -> None:
    n, edges, start = case
    for module in both:
        try:
            build(module, n, edges).plan(start, max_depth=n)
        except ChainCycleError as err:
            cycle = err.cycle
            assert cycle and len(set(cycle)) == len(cycle)
            assert cycle[0] == min(cycle)
            assert all((u, v) in edges for u, v in zip(cycle, cycle[1:] + cycle[:1], strict=True))
            assert set(cycle) <= reachable(successor_map(n, edges), start)
        else:
            # No error: then no edge inside the chain closes a loop.
            succ = successor_map(n, edges)
            chain = reachable(succ, start)
            assert not any(u in reachable(succ, v) for u, v in edges if u in chain)


@settings(max_examples=200, deadline=None)
@given(graphs(), st.integers(1, 6), st.integers(0, 4))
def test_limits_agree_and_hold(
    both: tuple[ModuleType, ModuleType], case: tuple[int, set[Edge], int], depth: int, fan_out: int
) -> None:
    n, edges, start = case
    results = [outcome(build(module, n, edges).plan, start, depth, fan_out) for module in both]
    assert results[0] == results[1]
    if isinstance(results[0], list):
        succ = successor_map(n, edges)
        assert len(results[0]) <= depth
        assert all(len(succ[u]) <= fan_out for wave in results[0] for u in wave)


edit_ops = st.lists(
    st.tuples(
        st.booleans(),
        st.integers(0, MAX_TEST_NODES - 1),
        st.integers(0, MAX_TEST_NODES - 1),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, MAX_TEST_NODES), edit_ops, st.data())
def test_incremental_edits_plan_like_a_fresh_build(
    both: tuple[ModuleType, ModuleType],
    n: int,
    ops: list[tuple[bool, int, int]],
    data: st.DataObject,
) -> None:
    graphs_ = [module.ChainGraph(n) for module in both]
    model: set[Edge] = set()
    for add, raw_u, raw_v in ops:
        u, v = raw_u % n, raw_v % n
        if add:
            assert {g.add_edge(u, v) for g in graphs_} == {(u, v) not in model}
            model.add((u, v))
        else:
            assert {g.remove_edge(u, v) for g in graphs_} == {(u, v) in model}
            model.discard((u, v))
    start = data.draw(st.integers(0, n - 1))
    fresh = [build(module, n, model) for module in both]
    expected = outcome(fresh[1].plan, start, max_depth=n)
    for graph in graphs_ + fresh:
        assert graph.edge_count == len(model)
        assert outcome(graph.plan, start, max_depth=n) == expected
        assert all(graph.successors(u) == sorted(v for w, v in model if w == u) for u in range(n))
