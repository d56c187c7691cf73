"""Chain planner: pure-Python twin of ``_planner_c.pyx``.

A *chain* is what runs when a node is invoked: the node itself, then everything it leads to.
The planner sees the node graph as **successor edges** over node indices ``0..n-1``. Two kinds
of link in the node graph become successor edges, and the planner treats them alike:

* a target edge ``src -> dst``: running ``src`` invokes ``dst`` (a trigger fires its executor,
  a data point feeds a rule);
* a child edge ``parent -> child``: the triggers and executors under an invoked node run after
  it. :meth:`ChainGraph.from_edges` takes these as a parent array for convenience.

The chain of a start node is every node reachable from it along successor edges. Inside the
chain a node *depends on* each of its predecessors that is also in the chain, so a node fed by
two branches of one chain waits for both and still runs once. The plan is a list of *waves*:
wave 0 is ``[start]`` and wave ``k`` holds the nodes whose longest path from the start has
``k`` edges (Kahn's algorithm restricted to the reachable set). Nodes of one wave do not depend
on one another, so a runner may start them together. Each wave is sorted by node index, which
makes the plan a function of the edge set alone, never of the order edges were added in.

A plan fails with a :class:`~krill_crdt.errors.PlanError`. The checks run in this order and
each looks at the whole reachable set, so the error raised also depends on the edge set alone:

1. :class:`~krill_crdt.errors.ChainFanOutError`: a reachable node has more successors than the
   fan-out cap; the smallest such node index is named.
2. :class:`~krill_crdt.errors.ChainCycleError`: the reachable subgraph loops. The cycle reported
   is the first one met by a depth-first search over the nodes the layering could not place,
   taking roots and successors in increasing index order; it is rotated to start at its
   smallest index and lists the nodes in dependency order (each one is a predecessor of the
   next, the last of the first). No edge of a cycle is ever followed twice.
3. :class:`~krill_crdt.errors.ChainDepthError`: the plan has more waves than the depth limit.

Representation (twin): one Python list of successors per node. Edges form a set: adding an
edge that exists does nothing, and removing an edge swaps the last successor into its slot.
Both cost O(out-degree of the source), which the fan-out cap keeps small for chain nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from krill_crdt.errors import ChainCycleError, ChainDepthError, ChainFanOutError

__all__ = ["MAX_CHAIN_DEPTH", "MAX_FAN_OUT", "MAX_NODES", "ChainGraph"]

#: Default depth limit, in waves. The recursive executor this planner replaces hit Python's
#: default recursion limit (1000 frames) near this depth, so every chain that ever worked fits;
#: a deeper chain is almost surely a wiring mistake, and each wave costs at least one scheduling
#: round on the host, so a runaway depth would stall it.
MAX_CHAIN_DEPTH: Final = 1000

#: Default fan-out cap: successors (targets plus children) of one node in a chain. A fully
#: wired Raspberry Pi host has its 40 header pins and a few hundred data points under it, far
#: below this; beyond it a single invoke would queue thousands of processors in one wave, which
#: is what a generated or mis-wired graph looks like.
MAX_FAN_OUT: Final = 4096

#: Node indices are C ints in the compiled module; the twin keeps the same bound so both accept
#: exactly the same graphs.
MAX_NODES: Final = 2**31 - 1

_UNSEEN: Final = 0
_ON_PATH: Final = 1
_DONE: Final = 2


def _check_indices(values: Sequence[int], name: str, low: int, n: int) -> None:
    for k, value in enumerate(values):
        if not low <= value < n:
            raise ValueError(f"{name}[{k}] = {value} is outside {low}..{n - 1}")


class ChainGraph:
    """Successor edges between nodes ``0..n-1``, updated in place and planned from any node.

    Node indices are stable: a deleted node keeps its index with its edges removed (the caller
    recycles indices if it wants to). A graph is used by one thread at a time, like the host
    doc it mirrors.
    """

    __slots__ = ("_edges", "_succ")

    def __init__(self, n: int = 0) -> None:
        """Create ``n`` nodes with no edges.

        Raises:
            ValueError: ``n`` is negative or above :data:`MAX_NODES`.
        """
        if not 0 <= n <= MAX_NODES:
            raise ValueError(f"node count {n} is outside 0..{MAX_NODES}")
        self._succ: list[list[int]] = [[] for _ in range(n)]
        self._edges = 0

    @classmethod
    def from_edges(
        cls,
        n: int,
        src: Sequence[int],
        dst: Sequence[int],
        parents: Sequence[int] | None = None,
    ) -> ChainGraph:
        """Build a graph of ``n`` nodes in one pass.

        Args:
            n: node count.
            src: source of each target edge.
            dst: target of each target edge (same length as ``src``).
            parents: optional parent array (``parents[i]`` is ``i``'s parent or -1); each
                entry other than -1 adds the child edge ``parents[i] -> i``.

        Repeated edges count once. Indices are checked in this order: all of ``src``, all of
        ``dst``, then ``parents``.

        Raises:
            ValueError: the arrays differ in length or hold an index out of range; nothing is
                built.
        """
        if len(src) != len(dst):
            raise ValueError(f"src has {len(src)} entries but dst has {len(dst)}")
        if parents is not None and len(parents) != n:
            raise ValueError(f"parents has {len(parents)} entries for {n} nodes")
        graph = cls(n)

        # Step 1: check every index before touching the graph.
        _check_indices(src, "src", 0, n)
        _check_indices(dst, "dst", 0, n)
        if parents is not None:
            _check_indices(parents, "parents", -1, n)

        # Step 2: append target edges, then child edges, in the order given.
        succ = graph._succ
        for u, v in zip(src, dst, strict=True):
            succ[u].append(v)
        if parents is not None:
            for child, parent in enumerate(parents):
                if parent >= 0:
                    succ[parent].append(child)

        # Step 3: keep the first copy of a repeated edge.
        total = 0
        for i, targets in enumerate(succ):
            if len(targets) > 1:
                unique = list(dict.fromkeys(targets))
                if len(unique) != len(targets):
                    succ[i] = unique
            total += len(succ[i])
        graph._edges = total
        return graph

    def __len__(self) -> int:
        """Return the node count."""
        return len(self._succ)

    def __repr__(self) -> str:
        return f"ChainGraph(nodes={len(self._succ)}, edges={self._edges})"

    @property
    def edge_count(self) -> int:
        """Number of distinct successor edges."""
        return self._edges

    def add_node(self) -> int:
        """Add one node without edges and return its index.

        Raises:
            ValueError: the graph already holds :data:`MAX_NODES` nodes.
        """
        return self.add_nodes(1)

    def add_nodes(self, count: int) -> int:
        """Add ``count`` nodes without edges and return the index of the first one.

        Raises:
            ValueError: ``count`` is negative or the total would exceed :data:`MAX_NODES`.
        """
        first = len(self._succ)
        if count < 0 or count > MAX_NODES - first:
            raise ValueError(f"cannot add {count} nodes to {first}: the limit is {MAX_NODES}")
        self._succ.extend([] for _ in range(count))
        return first

    def _check_node(self, name: str, index: int) -> None:
        n = len(self._succ)
        if not 0 <= index < n:
            raise ValueError(f"{name} {index} is outside 0..{n - 1}")

    def add_edge(self, src: int, dst: int) -> bool:
        """Add the successor edge ``src -> dst``; return False if it was already there.

        A self edge is accepted (replicated edits can produce one); a plan through it fails.

        Raises:
            ValueError: an index is out of range; the graph is unchanged.
        """
        self._check_node("src", src)
        self._check_node("dst", dst)
        targets = self._succ[src]
        if dst in targets:
            return False
        targets.append(dst)
        self._edges += 1
        return True

    def remove_edge(self, src: int, dst: int) -> bool:
        """Remove the successor edge ``src -> dst``; return False if there was none.

        Raises:
            ValueError: an index is out of range; the graph is unchanged.
        """
        self._check_node("src", src)
        self._check_node("dst", dst)
        targets = self._succ[src]
        try:
            slot = targets.index(dst)
        except ValueError:
            return False
        # Swap-remove: successor order carries no meaning, so O(1) after the search.
        last = targets.pop()
        if slot < len(targets):
            targets[slot] = last
        self._edges -= 1
        return True

    def has_edge(self, src: int, dst: int) -> bool:
        """Tell whether the edge ``src -> dst`` exists.

        Raises:
            ValueError: an index is out of range.
        """
        self._check_node("src", src)
        self._check_node("dst", dst)
        return dst in self._succ[src]

    def successors(self, node: int) -> list[int]:
        """Return the successors of ``node`` in increasing index order.

        Raises:
            ValueError: ``node`` is out of range.
        """
        self._check_node("node", node)
        return sorted(self._succ[node])

    def out_degree(self, node: int) -> int:
        """Return how many successors ``node`` has.

        Raises:
            ValueError: ``node`` is out of range.
        """
        self._check_node("node", node)
        return len(self._succ[node])

    def plan(
        self, start: int, max_depth: int = MAX_CHAIN_DEPTH, max_fan_out: int = MAX_FAN_OUT
    ) -> list[list[int]]:
        """Return the execution plan of the chain started at ``start``, as waves.

        Every node reachable from ``start`` appears exactly once, after all of its predecessors
        within the chain; each wave is sorted by index. The graph is not changed.

        Raises:
            ValueError: ``start`` is out of range, ``max_depth`` < 1 or ``max_fan_out`` < 0.
            ChainFanOutError: a reachable node has more than ``max_fan_out`` successors.
            ChainCycleError: the reachable subgraph has a cycle (``err.cycle`` lists it).
            ChainDepthError: the plan would have more than ``max_depth`` waves.
        """
        self._check_node("start", start)
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, got {max_depth}")
        if max_fan_out < 0:
            raise ValueError(f"max_fan_out must be at least 0, got {max_fan_out}")
        succ = self._succ

        # Step 1: find the reachable set breadth first, counting each node's predecessors in
        # it, and note the smallest node over the fan-out cap.
        pending = {start: 0}
        reached = [start]
        too_wide = -1
        for u in reached:
            targets = succ[u]
            if len(targets) > max_fan_out and (too_wide < 0 or u < too_wide):
                too_wide = u
            for v in targets:
                if v in pending:
                    pending[v] += 1
                else:
                    pending[v] = 1
                    reached.append(v)
        if too_wide >= 0:
            raise ChainFanOutError(
                f"node {too_wide} has {len(succ[too_wide])} successors, "
                f"more than the fan-out cap of {max_fan_out}"
            )

        # Step 2: peel waves off (Kahn): a node joins the next wave when its last predecessor
        # has run, which puts it at its longest distance from the start.
        waves: list[list[int]] = []
        placed = 0
        wave = [start] if pending[start] == 0 else []
        while wave:
            waves.append(wave)
            placed += len(wave)
            following = []
            for u in wave:
                for v in succ[u]:
                    left = pending[v] - 1
                    pending[v] = left
                    if left == 0:
                        following.append(v)
            wave = following

        # Step 3: nodes left unplaced sit on or behind a cycle.
        if placed < len(reached):
            cycle = _find_cycle(succ, pending)
            raise ChainCycleError(
                cycle, f"chain from node {start} cannot be planned: nodes {cycle} form a cycle"
            )
        if len(waves) > max_depth:
            first_beyond = min(waves[max_depth])
            raise ChainDepthError(
                f"chain from node {start} is {len(waves)} waves deep, more than the depth limit "
                f"of {max_depth}; node {first_beyond} is the first beyond it"
            )
        for wave in waves:
            wave.sort()
        return waves


def _find_cycle(succ: list[list[int]], pending: dict[int, int]) -> list[int]:
    """Return one cycle among the nodes a layering left unplaced (``pending[v] > 0``).

    Every unplaced node keeps an unplaced predecessor, so the unplaced set holds a cycle, and
    every successor of an unplaced node is unplaced too. Roots and successors are taken in
    increasing index order so the answer depends on the edge set only.
    """
    state = {v: _UNSEEN for v in sorted(v for v, left in pending.items() if left > 0)}
    for root in list(state):
        if state[root] != _UNSEEN:
            continue
        state[root] = _ON_PATH
        path = [root]
        branches = [sorted(succ[root])]
        cursors = [0]
        while path:
            top = len(path) - 1
            cursor = cursors[top]
            if cursor == len(branches[top]):
                state[path[top]] = _DONE
                path.pop()
                branches.pop()
                cursors.pop()
                continue
            cursors[top] = cursor + 1
            nxt = branches[top][cursor]
            seen = state[nxt]
            if seen == _ON_PATH:
                ring = path[path.index(nxt) :]
                low = ring.index(min(ring))
                return ring[low:] + ring[:low]
            if seen == _UNSEEN:
                state[nxt] = _ON_PATH
                path.append(nxt)
                branches.append(sorted(succ[nxt]))
                cursors.append(0)
    # NOTE: unreachable while the caller's layering is right (an unplaced set always loops);
    # raising here rather than returning an empty cycle keeps a planner bug from hiding.
    raise AssertionError("no cycle among unplaced nodes")
