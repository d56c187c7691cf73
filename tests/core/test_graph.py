"""Graph walks over the node tree: compiled module and twin behave identically."""

from __future__ import annotations

from array import array
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import hot_module

# Parent arrays with arbitrary links (cycles included): each entry -1..n-1.
parent_arrays = st.integers(min_value=1, max_value=60).flatmap(
    lambda n: st.lists(st.integers(min_value=-1, max_value=n - 1), min_size=n, max_size=n)
)


def reference_subtree(parents: list[int], root: int) -> set[int]:
    found = {root}
    grew = True
    while grew:
        grew = False
        for child, parent in enumerate(parents):
            if parent in found and child not in found:
                found.add(child)
                grew = True
    return found


def test_subtree_lists_root_then_descendants_breadth_first(graph_impl: ModuleType) -> None:
    parents = [-1, 0, 0, 1, 1, 3, -1]
    assert graph_impl.subtree(parents, 0) == [0, 1, 2, 3, 4, 5]
    assert graph_impl.subtree(parents, 3) == [3, 5]
    assert graph_impl.subtree(parents, 6) == [6]


def test_subtree_accepts_an_int_array(graph_impl: ModuleType) -> None:
    assert graph_impl.subtree(array("i", [-1, 0, 1]), 1) == [1, 2]


def test_subtree_terminates_on_a_parent_cycle(graph_impl: ModuleType) -> None:
    parents = [1, 2, 0, 2]  # 0 -> 1 -> 2 -> 0, and 3 hangs below 2
    assert sorted(graph_impl.subtree(parents, 0)) == [0, 1, 2, 3]


def test_parent_cycles_reports_each_ring_from_its_smallest_node(graph_impl: ModuleType) -> None:
    parents = [-1, 3, 1, 2, 4, 6, 5, 0]
    assert graph_impl.parent_cycles(parents) == [[1, 3, 2], [4], [5, 6]]


def test_parent_cycles_of_a_forest_is_empty(graph_impl: ModuleType) -> None:
    assert graph_impl.parent_cycles([-1, 0, 0, -1, 3]) == []


def test_would_cycle_detects_a_move_below_oneself(graph_impl: ModuleType) -> None:
    parents = [-1, 0, 1, 2]
    assert graph_impl.would_cycle(parents, 1, 3)
    assert graph_impl.would_cycle(parents, 1, 1)
    assert not graph_impl.would_cycle(parents, 3, 0)
    assert not graph_impl.would_cycle(parents, 2, -1)


def test_would_cycle_stops_on_an_unrelated_cycle(graph_impl: ModuleType) -> None:
    parents = [-1, 2, 1]  # 1 and 2 loop; node 0 is elsewhere
    assert not graph_impl.would_cycle(parents, 0, 1)


@pytest.mark.parametrize(
    ("parents", "root"),
    [([-1, 5], 0), ([-1, -2], 0), ([-1], 1), ([-1], -1)],
    ids=["parent-too-large", "parent-below-minus-one", "root-too-large", "root-negative"],
)
def test_out_of_range_indexes_raise_value_error(
    graph_impl: ModuleType, parents: list[int], root: int
) -> None:
    with pytest.raises(ValueError, match="outside"):
        graph_impl.subtree(parents, root)


@settings(max_examples=300, deadline=None)
@given(parents=parent_arrays, data=st.data())
def test_compiled_and_twin_agree_on_random_parent_arrays(
    parents: list[int], data: st.DataObject
) -> None:
    compiled = hot_module("graph", "c")
    twin = hot_module("graph", "py")
    root = data.draw(st.integers(min_value=0, max_value=len(parents) - 1))
    node = data.draw(st.integers(min_value=0, max_value=len(parents) - 1))
    new_parent = data.draw(st.integers(min_value=-1, max_value=len(parents) - 1))

    walked = twin.subtree(parents, root)
    assert compiled.subtree(parents, root) == walked
    assert set(walked) == reference_subtree(parents, root)
    assert len(walked) == len(set(walked))
    assert compiled.parent_cycles(parents) == twin.parent_cycles(parents)
    assert compiled.would_cycle(parents, node, new_parent) == twin.would_cycle(
        parents, node, new_parent
    )


@settings(max_examples=200, deadline=None)
@given(parents=parent_arrays)
def test_every_reported_cycle_is_a_real_ring(parents: list[int]) -> None:
    cycles = hot_module("graph", "py").parent_cycles(parents)
    on_cycles = [node for ring in cycles for node in ring]
    assert len(on_cycles) == len(set(on_cycles))
    for ring in cycles:
        assert ring[0] == min(ring)
        for i, node in enumerate(ring):
            assert parents[node] == ring[(i + 1) % len(ring)]
