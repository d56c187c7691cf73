# cython: language_level=3
"""Graph walks over the node tree, compiled. Twin of ``_graph_py.py``: same behaviour."""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memset

from array import array

__all__ = ["parent_cycles", "subtree", "would_cycle"]

cdef enum:
    UNSEEN = 0
    ON_PATH = 1
    DONE = 2


cdef int[::1] _as_ints(object parents):
    if isinstance(parents, array) and parents.typecode == "i":
        return parents
    return array("i", parents)


cdef Py_ssize_t _check_parents(const int[::1] parents) except -1:
    cdef Py_ssize_t n = parents.shape[0]
    cdef Py_ssize_t i
    for i in range(n):
        if parents[i] < -1 or parents[i] >= n:
            raise ValueError(f"parents[{i}] = {parents[i]} is outside -1..{n - 1}")
    return n


def subtree(parents, Py_ssize_t root):
    cdef const int[::1] par = _as_ints(parents)
    cdef Py_ssize_t n = _check_parents(par)
    if not 0 <= root < n:
        raise ValueError(f"root {root} is outside 0..{n - 1}")

    cdef int *counts = <int *> PyMem_Malloc((n + 1) * sizeof(int))
    cdef int *flat = <int *> PyMem_Malloc((n + 1) * sizeof(int))
    cdef int *queue = <int *> PyMem_Malloc((n + 1) * sizeof(int))
    cdef unsigned char *seen = <unsigned char *> PyMem_Malloc(n + 1)
    cdef Py_ssize_t i, k, head, tail
    cdef int p, node, child
    if counts == NULL or flat == NULL or queue == NULL or seen == NULL:
        PyMem_Free(counts)
        PyMem_Free(flat)
        PyMem_Free(queue)
        PyMem_Free(seen)
        raise MemoryError()
    try:
        # Step 1: children lists in compressed form; counts[] turns into start offsets and
        # is then advanced as the fill cursor, so counts[p] ends at the end of p's children.
        memset(counts, 0, (n + 1) * sizeof(int))
        memset(seen, 0, n + 1)
        for i in range(n):
            p = par[i]
            if p >= 0:
                counts[p + 1] += 1
        for i in range(n):
            counts[i + 1] += counts[i]
        for i in range(n):
            p = par[i]
            if p >= 0:
                flat[counts[p]] = <int> i
                counts[p] += 1
        # After filling, p's children are flat[start(p) .. counts[p]) with start(p) = the end
        # of p - 1, that is counts[p - 1] (0 for p = 0).

        # Step 2: breadth-first walk from the root; the visited mark stops cycles.
        seen[root] = 1
        queue[0] = <int> root
        head = 0
        tail = 1
        while head < tail:
            node = queue[head]
            head += 1
            k = counts[node - 1] if node > 0 else 0
            while k < counts[node]:
                child = flat[k]
                if not seen[child]:
                    seen[child] = 1
                    queue[tail] = child
                    tail += 1
                k += 1
        return [queue[i] for i in range(tail)]
    finally:
        PyMem_Free(counts)
        PyMem_Free(flat)
        PyMem_Free(queue)
        PyMem_Free(seen)


def parent_cycles(parents):
    cdef const int[::1] par = _as_ints(parents)
    cdef Py_ssize_t n = _check_parents(par)
    cdef bytearray state_buf = bytearray(n)
    cdef unsigned char[::1] state = state_buf
    cdef list cycles = []
    cdef list path, ring
    cdef Py_ssize_t start, first
    cdef int node
    for start in range(n):
        if state[start] != UNSEEN:
            continue
        path = []
        node = <int> start
        while node >= 0 and state[node] == UNSEEN:
            state[node] = ON_PATH
            path.append(node)
            node = par[node]
        if node >= 0 and state[node] == ON_PATH:
            ring = path[path.index(node):]
            first = ring.index(min(ring))
            cycles.append(ring[first:] + ring[:first])
        for visited in path:
            state[<int> visited] = DONE
    cycles.sort(key=_first)
    return cycles


def _first(ring):
    return ring[0]


def would_cycle(parents, Py_ssize_t node, Py_ssize_t new_parent):
    cdef const int[::1] par = _as_ints(parents)
    cdef Py_ssize_t n = par.shape[0]
    if not 0 <= node < n:
        raise ValueError(f"node {node} is outside 0..{n - 1}")
    if not -1 <= new_parent < n:
        raise ValueError(f"new_parent {new_parent} is outside -1..{n - 1}")
    cdef Py_ssize_t steps = 0
    cdef Py_ssize_t current = new_parent
    while current >= 0 and steps <= n:
        if current == node:
            return True
        current = par[current]
        if not -1 <= current < n:
            raise ValueError(f"a parent index {current} is outside -1..{n - 1}")
        steps += 1
    return False
