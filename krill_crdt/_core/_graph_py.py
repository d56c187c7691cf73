"""Graph walks over the node tree: pure-Python twin of ``_graph_c.pyx``.

A tree is given as a parent array: ``parents[i]`` is the index of node ``i``'s parent, or -1
for a node with no parent (or a parent that is not in this host doc). Replicated edits can
make parent links loop (two peers re-parent two nodes under each other while apart), so every
walk here terminates on cycles instead of trusting the tree to be a tree.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["parent_cycles", "subtree", "would_cycle"]

_UNSEEN = 0
_ON_PATH = 1
_DONE = 2


def _check_parents(parents: Sequence[int]) -> int:
    n = len(parents)
    for i in range(n):
        p = parents[i]
        if p < -1 or p >= n:
            raise ValueError(f"parents[{i}] = {p} is outside -1..{n - 1}")
    return n


def subtree(parents: Sequence[int], root: int) -> list[int]:
    """Return ``root`` and every node below it, breadth first.

    Each node appears once, even when parent links form a cycle through ``root``.

    Raises:
        ValueError: ``root`` or an entry of ``parents`` is out of range.
    """
    n = _check_parents(parents)
    if not 0 <= root < n:
        raise ValueError(f"root {root} is outside 0..{n - 1}")

    # Step 1: children lists in compressed form (offsets into one flat array).
    counts = [0] * (n + 1)
    for p in parents:
        if p >= 0:
            counts[p + 1] += 1
    for i in range(n):
        counts[i + 1] += counts[i]
    fill = counts[:n]
    flat = [0] * counts[n]
    for child in range(n):
        p = parents[child]
        if p >= 0:
            flat[fill[p]] = child
            fill[p] += 1

    # Step 2: breadth-first walk from the root; the visited mark stops cycles.
    seen = bytearray(n)
    seen[root] = 1
    order = [root]
    head = 0
    while head < len(order):
        node = order[head]
        head += 1
        for k in range(counts[node], counts[node + 1]):
            child = flat[k]
            if not seen[child]:
                seen[child] = 1
                order.append(child)
    return order


def parent_cycles(parents: Sequence[int]) -> list[list[int]]:
    """Return every cycle of parent links, each as the list of its nodes.

    Each cycle starts at its smallest index and follows parent links from there; cycles are
    sorted by their first node. An acyclic forest gives an empty list.

    Raises:
        ValueError: an entry of ``parents`` is out of range.
    """
    n = _check_parents(parents)
    state = bytearray(n)
    cycles: list[list[int]] = []
    for start in range(n):
        if state[start] != _UNSEEN:
            continue
        # Follow parent links, marking the path, until a finished node, a root or the path.
        path = []
        node = start
        while node >= 0 and state[node] == _UNSEEN:
            state[node] = _ON_PATH
            path.append(node)
            node = parents[node]
        if node >= 0 and state[node] == _ON_PATH:
            ring = path[path.index(node) :]
            first = ring.index(min(ring))
            cycles.append(ring[first:] + ring[:first])
        for visited in path:
            state[visited] = _DONE
    cycles.sort(key=lambda ring: ring[0])
    return cycles


def would_cycle(parents: Sequence[int], node: int, new_parent: int) -> bool:
    """Tell whether making ``new_parent`` the parent of ``node`` would close a cycle.

    True when ``new_parent`` is ``node`` itself or lies below it. A walk that meets an
    existing cycle not involving ``node`` stops and answers False.

    Raises:
        ValueError: ``node`` or ``new_parent`` is out of range (``new_parent`` may be -1).
    """
    n = len(parents)
    if not 0 <= node < n:
        raise ValueError(f"node {node} is outside 0..{n - 1}")
    if not -1 <= new_parent < n:
        raise ValueError(f"new_parent {new_parent} is outside -1..{n - 1}")
    steps = 0
    current = new_parent
    while current >= 0 and steps <= n:
        if current == node:
            return True
        current = parents[current]
        if not -1 <= current < n:
            raise ValueError(f"a parent index {current} is outside -1..{n - 1}")
        steps += 1
    return False
