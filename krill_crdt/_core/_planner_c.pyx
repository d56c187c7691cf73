# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, embedsignature=True
"""Chain planner, compiled. Twin of ``_planner_py.py``: same behaviour, documented there.

Representation: one flat C array (the *arena*) holds every node's successors; node ``u`` owns
the slice ``arena[start : start + cap]`` of which the first ``deg`` entries are in use. A bulk
build lays the slices out back to back, exactly like compressed sparse rows, so a plan walks
nearly contiguous memory. A single edge change touches one slice: adding into a full slice
moves it to the end of the arena with twice the room (amortized O(1), leaving a hole), and
when holes make up half the arena it is compacted in one O(n + edges) pass. This keeps CSR's
planning speed without CSR's full rebuild on every edit, and without a pending overlay that
every plan would have to merge.

A plan needs per-node state (a mark, a predecessor count, a wave). It lives on the graph and
is reused: marks carry a plan number (epoch) instead of being cleared, so a plan costs
O(reachable nodes + their edges), not O(n), except for one sequential scan when the chain
covers a large share of the graph (cheaper there than sorting).

Where the time goes on large graphs: node indices are chosen by the caller, so successors sit
at random places and every edge followed is a likely cache miss. Hence everything a plan
reads about a node (where its row is, its degree, its plan state) is packed in one 16-byte
record and the rarely read slice capacity lives apart, and the int objects of the result come
from a shared cache instead of being allocated for every plan.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from libc.limits cimport INT_MAX
from libc.stdlib cimport qsort
from libc.string cimport memcpy, memset

from array import array

from krill_crdt.errors import ChainCycleError, ChainDepthError, ChainFanOutError

__all__ = ["MAX_CHAIN_DEPTH", "MAX_FAN_OUT", "MAX_NODES", "ChainGraph"]

# The reasons for these values are given in ``_planner_py.py``; both modules must agree.
MAX_CHAIN_DEPTH = 1000
MAX_FAN_OUT = 4096
MAX_NODES = INT_MAX

cdef extern from "Python.h":
    ctypedef struct PyListObject:
        PyObject **ob_item
    object PyList_New(Py_ssize_t size)
    void _list_set_stolen "PyList_SET_ITEM" (object lst, Py_ssize_t i, PyObject *item)
    void _incref "Py_INCREF" (PyObject *obj)

cdef enum:
    UNSEEN = 0
    ON_PATH = 1
    DONE = 2
    # Smallest slice a growing node gets: most chain nodes have a handful of successors.
    MIN_SLICE = 4
    # Holes below this many entries are not worth a compaction pass.
    COMPACT_MIN_HOLES = 4096
    # Sort waves by one scan over all nodes when the chain reaches at least 1/SCAN_SHARE of
    # the graph; below that, sorting each wave costs less than touching every node.
    SCAN_SHARE = 32

ctypedef struct Record:
    # Everything a plan reads about one node, in one 16-byte record (never across two cache
    # lines). Successors: arena[start : start + deg].
    int start
    int deg
    # Plan state, valid only while ``mark`` equals the graph's current plan number. ``pending``
    # counts predecessors in the chain that have not run yet; once the node is placed it holds
    # ``-1 - wave`` instead, so a negative value means "placed, in that wave".
    unsigned int mark
    int pending


cdef inline int _wave(const Record *rec) noexcept nogil:
    return -1 - rec.pending


# The int object of every node index planned so far, shared by all graphs: handing these out
# instead of boxing each index anew made large plans about 10% faster (measured at 100k and 1M
# nodes).
# NOTE: it holds 36 bytes per index up to the largest graph ever planned in this process and
# never shrinks; that matters only when a short-lived huge graph is planned in a long-lived
# process.
cdef list _boxed = []


cdef int _box_upto(Py_ssize_t n) except -1:
    cdef Py_ssize_t have = len(_boxed)
    if have < n:
        _boxed.extend(range(have, n))
    return 0


cdef list _boxed_list(const int *nodes, Py_ssize_t size):
    """Return a new list of the int objects of ``nodes[0:size]`` (all below len(_boxed))."""
    cdef object out = PyList_New(size)
    cdef PyObject **boxes = (<PyListObject *> _boxed).ob_item
    cdef PyObject *item
    cdef Py_ssize_t k
    for k in range(size):
        item = boxes[nodes[k]]
        _incref(item)
        _list_set_stolen(out, k, item)
    return <list> out


cdef int _cmp_int(const void *a, const void *b) noexcept nogil:
    cdef int x = (<const int *> a)[0]
    cdef int y = (<const int *> b)[0]
    return (x > y) - (x < y)


cdef void *_resize(void *block, size_t size) except NULL:
    """Grow a PyMem block (keeping it on failure, which the owner's later free releases)."""
    cdef void *grown = PyMem_Realloc(block, size if size > 0 else 1)
    if grown == NULL:
        raise MemoryError()
    return grown


cdef object _as_ints(object values, str name, int low, Py_ssize_t n):
    """Return ``values`` as a C int buffer, or raise the twin's ValueError for a bad index."""
    if isinstance(values, array) and values.typecode == "i":
        return values
    try:
        return array("i", values)
    except OverflowError:
        # Some value does not fit a C int, so it is out of range: name the first bad one.
        for k, value in enumerate(values):
            if not low <= value < n:
                raise ValueError(f"{name}[{k}] = {value} is outside {low}..{n - 1}") from None
        raise


cdef int _check_range(const int[::1] values, str name, int low, Py_ssize_t n) except -1:
    cdef Py_ssize_t k
    for k in range(values.shape[0]):
        if values[k] < low or values[k] >= n:
            raise ValueError(f"{name}[{k}] = {values[k]} is outside {low}..{n - 1}")
    return 0


cdef class ChainGraph:
    """Successor edges between nodes ``0..n-1``, updated in place and planned from any node.

    Node indices are stable: a deleted node keeps its index with its edges removed (the caller
    recycles indices if it wants to). A graph is used by one thread at a time, like the host
    doc it mirrors. See ``_planner_py.ChainGraph`` for every method's contract.
    """

    cdef int n
    cdef int node_cap
    cdef Record *recs
    cdef int *cap  # slice capacity per node; only edits read it
    cdef int *arena
    cdef Py_ssize_t arena_len
    cdef Py_ssize_t arena_cap
    cdef Py_ssize_t holes
    cdef Py_ssize_t edges
    cdef unsigned int epoch
    cdef int *queue  # plan queue, sized to queue_cap nodes
    cdef int queue_cap

    def __cinit__(self, *args, **kwargs):
        self.n = 0
        self.node_cap = 0
        self.recs = NULL
        self.cap = NULL
        self.arena = NULL
        self.arena_len = 0
        self.arena_cap = 0
        self.holes = 0
        self.edges = 0
        self.epoch = 0
        self.queue = NULL
        self.queue_cap = 0

    def __init__(self, Py_ssize_t n=0):
        if not 0 <= n <= MAX_NODES:
            raise ValueError(f"node count {n} is outside 0..{MAX_NODES}")
        self._grow_nodes(n)

    def __dealloc__(self):
        PyMem_Free(self.recs)
        PyMem_Free(self.cap)
        PyMem_Free(self.arena)
        PyMem_Free(self.queue)

    # -- storage ------------------------------------------------------------------------------

    cdef int _grow_nodes(self, Py_ssize_t count) except -1:
        """Append ``count`` empty nodes, doubling the node records when they are full."""
        cdef Py_ssize_t total = self.n + count
        cdef Py_ssize_t new_cap, i
        if count < 0 or total > MAX_NODES:
            raise ValueError(f"cannot add {count} nodes to {self.n}: the limit is {MAX_NODES}")
        if total > self.node_cap:
            new_cap = max(total, 2 * <Py_ssize_t> self.node_cap, 16)
            if new_cap > MAX_NODES:
                new_cap = MAX_NODES
            self.recs = <Record *> _resize(self.recs, new_cap * sizeof(Record))
            self.cap = <int *> _resize(self.cap, new_cap * sizeof(int))
            self.node_cap = <int> new_cap
        for i in range(self.n, total):
            self.recs[i].start = <int> self.arena_len
            self.recs[i].deg = 0
            self.recs[i].mark = 0
            self.recs[i].pending = 0
            self.cap[i] = 0
        self.n = <int> total
        return 0

    cdef int _reserve_arena(self, Py_ssize_t needed) except -1:
        cdef Py_ssize_t new_cap
        if needed > INT_MAX:
            # NOTE: row offsets are C ints to keep node records at 16 bytes; 2**31 successor
            # slots (8 GiB of arena) is far beyond any host graph.
            raise MemoryError(f"a chain graph holds at most {INT_MAX} successor slots")
        if needed > self.arena_cap:
            new_cap = min(max(needed, 2 * self.arena_cap, 64), INT_MAX)
            self.arena = <int *> _resize(self.arena, new_cap * sizeof(int))
            self.arena_cap = new_cap
        return 0

    cdef int _make_room(self, int u) except -1:
        """Give node ``u`` room for one more successor."""
        cdef Record *rec = &self.recs[u]
        cdef int old = self.cap[u]
        cdef int grown = MIN_SLICE if old < MIN_SLICE // 2 else 2 * old
        cdef Py_ssize_t at = rec.start
        if at + old == self.arena_len:
            # Step 1a: the slice is the last one in the arena, so it grows where it is.
            self._reserve_arena(self.arena_len + grown - old)
            self.arena_len += grown - old
        else:
            # Step 1b: move the slice to the end with twice the room; its old place is a hole.
            self._reserve_arena(self.arena_len + grown)
            memcpy(&self.arena[self.arena_len], &self.arena[at], rec.deg * sizeof(int))
            rec.start = <int> self.arena_len
            self.arena_len += grown
            self.holes += old
        self.cap[u] = grown

        # Step 2: once holes are half the arena, squeeze them out (capacities are kept, so a
        # node that just grew does not have to move again).
        if self.holes >= COMPACT_MIN_HOLES and 2 * self.holes >= self.arena_len:
            self._compact()
        return 0

    cdef int _compact(self) except -1:
        cdef Py_ssize_t size = self.arena_len - self.holes
        cdef int *packed = <int *> PyMem_Malloc(max(size, 1) * sizeof(int))
        cdef Py_ssize_t at = 0
        cdef int u
        if packed == NULL:
            raise MemoryError()
        for u in range(self.n):
            memcpy(&packed[at], &self.arena[self.recs[u].start], self.recs[u].deg * sizeof(int))
            self.recs[u].start = <int> at
            at += self.cap[u]
        PyMem_Free(self.arena)
        self.arena = packed
        self.arena_cap = max(size, 1)
        self.arena_len = at
        self.holes = 0
        return 0

    cdef int _find(self, int u, int v) noexcept:
        """Return the position of ``v`` among ``u``'s successors, or -1."""
        cdef int *row = &self.arena[self.recs[u].start]
        cdef int k
        for k in range(self.recs[u].deg):
            if row[k] == v:
                return k
        return -1

    cdef int _check_node(self, str name, Py_ssize_t index) except -1:
        if not 0 <= index < self.n:
            raise ValueError(f"{name} {index} is outside 0..{self.n - 1}")
        return 0

    # -- building and editing -----------------------------------------------------------------

    @classmethod
    def from_edges(cls, Py_ssize_t n, src, dst, parents=None):
        """Build a graph of ``n`` nodes from target edges and an optional parent array."""
        if len(src) != len(dst):
            raise ValueError(f"src has {len(src)} entries but dst has {len(dst)}")
        if parents is not None and len(parents) != n:
            raise ValueError(f"parents has {len(parents)} entries for {n} nodes")
        cdef ChainGraph graph = cls(n)

        # Step 1: check every index before touching the graph (same order as the twin).
        cdef const int[::1] s = _as_ints(src, "src", 0, n)
        _check_range(s, "src", 0, n)
        cdef const int[::1] d = _as_ints(dst, "dst", 0, n)
        _check_range(d, "dst", 0, n)
        cdef const int[::1] p
        cdef bint with_parents = parents is not None
        if with_parents:
            p = _as_ints(parents, "parents", -1, n)
            _check_range(p, "parents", -1, n)

        # Step 2: count each node's successors, lay the slices out back to back, fill them
        # (target edges first, then child edges, as the twin appends them).
        cdef Record *recs = graph.recs
        cdef int *cap = graph.cap
        cdef Py_ssize_t m = s.shape[0]
        cdef Py_ssize_t k, total
        cdef int u, v
        for k in range(m):
            cap[s[k]] += 1
        if with_parents:
            for k in range(n):
                if p[k] >= 0:
                    cap[p[k]] += 1
        total = 0
        for u in range(n):
            recs[u].start = <int> total
            total += cap[u]
            if total > INT_MAX:
                graph._reserve_arena(total)  # raises the size error
        graph._reserve_arena(total)
        graph.arena_len = total
        cdef int *arena = graph.arena
        for k in range(m):
            u = s[k]
            arena[recs[u].start + recs[u].deg] = d[k]
            recs[u].deg += 1
        if with_parents:
            for k in range(n):
                u = p[k]
                if u >= 0:
                    arena[recs[u].start + recs[u].deg] = <int> k
                    recs[u].deg += 1

        # Step 3: drop repeated edges, keeping the first copy; seen[v] == u + 1 marks v as a
        # successor of u already kept. Slots freed here stay as room to grow.
        cdef int *seen = <int *> PyMem_Malloc(max(n, 1) * sizeof(int))
        cdef int *row
        cdef int kept, j
        if seen == NULL:
            raise MemoryError()
        memset(seen, 0, max(n, 1) * sizeof(int))
        total = 0
        for u in range(n):
            row = &arena[recs[u].start]
            kept = 0
            for j in range(recs[u].deg):
                v = row[j]
                if seen[v] != u + 1:
                    seen[v] = u + 1
                    row[kept] = v
                    kept += 1
            recs[u].deg = kept
            total += kept
        PyMem_Free(seen)
        graph.edges = total
        return graph

    def __len__(self):
        return self.n

    def __repr__(self):
        return f"ChainGraph(nodes={self.n}, edges={self.edges})"

    @property
    def edge_count(self):
        """Number of distinct successor edges."""
        return self.edges

    def add_node(self):
        """Add one node without edges and return its index."""
        return self.add_nodes(1)

    def add_nodes(self, Py_ssize_t count):
        """Add ``count`` nodes without edges and return the index of the first one."""
        cdef Py_ssize_t first = self.n
        self._grow_nodes(count)
        return first

    def add_edge(self, Py_ssize_t src, Py_ssize_t dst):
        """Add the successor edge ``src -> dst``; return False if it was already there."""
        self._check_node("src", src)
        self._check_node("dst", dst)
        cdef int u = <int> src
        if self._find(u, <int> dst) >= 0:
            return False
        if self.recs[u].deg == self.cap[u]:
            self._make_room(u)
        self.arena[self.recs[u].start + self.recs[u].deg] = <int> dst
        self.recs[u].deg += 1
        self.edges += 1
        return True

    def remove_edge(self, Py_ssize_t src, Py_ssize_t dst):
        """Remove the successor edge ``src -> dst``; return False if there was none."""
        self._check_node("src", src)
        self._check_node("dst", dst)
        cdef int u = <int> src
        cdef int slot = self._find(u, <int> dst)
        if slot < 0:
            return False
        # Swap-remove, as the twin does: successor order carries no meaning.
        cdef int *row = &self.arena[self.recs[u].start]
        self.recs[u].deg -= 1
        row[slot] = row[self.recs[u].deg]
        self.edges -= 1
        return True

    def has_edge(self, Py_ssize_t src, Py_ssize_t dst):
        """Tell whether the edge ``src -> dst`` exists."""
        self._check_node("src", src)
        self._check_node("dst", dst)
        return self._find(<int> src, <int> dst) >= 0

    def successors(self, Py_ssize_t node):
        """Return the successors of ``node`` in increasing index order."""
        self._check_node("node", node)
        return self._sorted_row(<int> node)

    def out_degree(self, Py_ssize_t node):
        """Return how many successors ``node`` has."""
        self._check_node("node", node)
        return self.recs[node].deg

    cdef list _sorted_row(self, int u):
        cdef int *row = &self.arena[self.recs[u].start]
        cdef int k
        cdef list out = [row[k] for k in range(self.recs[u].deg)]
        out.sort()
        return out

    # -- planning -----------------------------------------------------------------------------

    def plan(self, Py_ssize_t start, Py_ssize_t max_depth=MAX_CHAIN_DEPTH,
             Py_ssize_t max_fan_out=MAX_FAN_OUT):
        """Return the execution plan of the chain started at ``start``, as sorted waves."""
        self._check_node("start", start)
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, got {max_depth}")
        if max_fan_out < 0:
            raise ValueError(f"max_fan_out must be at least 0, got {max_fan_out}")
        self._begin_plan()
        cdef Py_ssize_t reached = self._reach(<int> start, max_fan_out)
        cdef Py_ssize_t placed = self._layer(<int> start)
        cdef Record *recs = self.recs
        cdef int *queue = self.queue
        cdef Py_ssize_t k
        cdef int waves, beyond

        # Step 3: nodes left unplaced sit on or behind a cycle; then the depth limit.
        if placed < reached:
            cycle = self._find_cycle()
            raise ChainCycleError(
                cycle, f"chain from node {start} cannot be planned: nodes {cycle} form a cycle"
            )
        waves = _wave(&recs[queue[reached - 1]]) + 1
        if waves > max_depth:
            beyond = INT_MAX
            for k in range(reached):
                if _wave(&recs[queue[k]]) == max_depth and queue[k] < beyond:
                    beyond = queue[k]
            raise ChainDepthError(
                f"chain from node {start} is {waves} waves deep, more than the depth limit "
                f"of {max_depth}; node {beyond} is the first beyond it"
            )
        return self._sorted_waves(reached, waves)

    cdef int _begin_plan(self) except -1:
        """Size the queue to the node count and start a new plan number."""
        cdef int u
        if self.n > self.queue_cap:
            self.queue = <int *> _resize(self.queue, self.n * sizeof(int))
            self.queue_cap = self.n
        self.epoch += 1
        if self.epoch == 0:
            # The plan number wrapped: clear the marks once so no stale mark matches.
            for u in range(self.n):
                self.recs[u].mark = 0
            self.epoch = 1
        return 0

    cdef Py_ssize_t _reach(self, int start, Py_ssize_t max_fan_out) except -1:
        """Step 1 of a plan: mark the reachable set breadth first into the queue, counting
        each node's predecessors in it; return its size.

        Raises ChainFanOutError naming the smallest reachable node over the cap.
        """
        cdef unsigned int epoch = self.epoch
        cdef Record *recs = self.recs
        cdef int *queue = self.queue
        cdef int *arena = self.arena
        cdef Py_ssize_t head = 0
        cdef Py_ssize_t tail = 1
        cdef int too_wide = -1
        cdef int u, v, k, deg
        cdef int *row
        cdef Record *rec

        recs[start].mark = epoch
        recs[start].pending = 0
        queue[0] = start
        while head < tail:
            u = queue[head]
            head += 1
            deg = recs[u].deg
            if deg > max_fan_out and (too_wide < 0 or u < too_wide):
                too_wide = u
            row = &arena[recs[u].start]
            for k in range(deg):
                v = row[k]
                rec = &recs[v]
                if rec.mark != epoch:
                    rec.mark = epoch
                    rec.pending = 1
                    queue[tail] = v
                    tail += 1
                else:
                    rec.pending += 1
        if too_wide >= 0:
            raise ChainFanOutError(
                f"node {too_wide} has {recs[too_wide].deg} successors, "
                f"more than the fan-out cap of {max_fan_out}"
            )
        return tail

    cdef Py_ssize_t _layer(self, int start) noexcept:
        """Step 2 of a plan: peel waves off (Kahn) into the queue, which the reachable list no
        longer needs; return how many nodes were placed.

        A node joins when its last predecessor has run, so the queue comes out ordered by
        wave and each placed node's wave is its longest distance from the start.
        """
        cdef Record *recs = self.recs
        cdef int *queue = self.queue
        cdef int *arena = self.arena
        cdef Py_ssize_t head = 0
        cdef Py_ssize_t tail = 1
        cdef int u, v, k, deg, placed_next
        cdef int *row
        cdef Record *rec

        if recs[start].pending != 0:
            return 0
        recs[start].pending = -1  # placed, wave 0
        queue[0] = start
        while head < tail:
            u = queue[head]
            head += 1
            placed_next = recs[u].pending - 1  # -1 - (wave of u + 1)
            deg = recs[u].deg
            row = &arena[recs[u].start]
            for k in range(deg):
                v = row[k]
                rec = &recs[v]
                rec.pending -= 1
                if rec.pending == 0:
                    rec.pending = placed_next
                    queue[tail] = v
                    tail += 1
        return tail

    cdef list _sorted_waves(self, Py_ssize_t reached, int waves):
        """Step 4 of a plan: turn the wave-ordered queue into lists sorted by node index."""
        cdef int *queue = self.queue
        cdef Record *recs = self.recs
        cdef unsigned int epoch = self.epoch
        cdef Py_ssize_t *bound = <Py_ssize_t *> PyMem_Malloc((waves + 1) * sizeof(Py_ssize_t))
        cdef int *flat = NULL
        cdef Py_ssize_t k
        cdef int w, i
        cdef list result = []
        if bound == NULL:
            raise MemoryError()
        try:
            # Step 4a: wave boundaries in the queue (it is ordered by wave, one step at a time).
            w = 0
            bound[0] = 0
            for k in range(reached):
                while _wave(&recs[queue[k]]) > w:
                    w += 1
                    bound[w] = k
            bound[waves] = reached

            # Step 4b: sort. A chain covering much of the graph is bucketed by one sequential
            # scan of all nodes in index order (a counting sort); a small chain sorts each
            # wave in place.
            if reached * SCAN_SHARE >= self.n:
                flat = <int *> PyMem_Malloc(reached * sizeof(int))
                if flat == NULL:
                    raise MemoryError()
                for i in range(self.n):
                    if recs[i].mark == epoch:
                        w = _wave(&recs[i])
                        flat[bound[w]] = i
                        bound[w] += 1
                # Each bound now points at the end of its wave: shift them back by one wave.
                for w in range(waves, 0, -1):
                    bound[w] = bound[w - 1]
                bound[0] = 0
            else:
                for w in range(waves):
                    if bound[w + 1] - bound[w] > 1:
                        qsort(&queue[bound[w]], bound[w + 1] - bound[w], sizeof(int), _cmp_int)

            # Step 4c: build the lists from the shared int objects.
            _box_upto(self.n)
            for w in range(waves):
                result.append(
                    _boxed_list((flat if flat != NULL else queue) + bound[w],
                                bound[w + 1] - bound[w])
                )
            return result
        finally:
            PyMem_Free(bound)
            PyMem_Free(flat)

    cdef list _find_cycle(self):
        """Return one cycle among the reachable nodes the layering left unplaced.

        Same search as the twin's ``_find_cycle``: roots and successors in increasing index
        order, so the answer depends on the edge set only. Runs only when a plan fails.
        """
        cdef unsigned int epoch = self.epoch
        cdef bytearray state_buf = bytearray(self.n)
        cdef unsigned char[::1] state = state_buf
        cdef list path, branches, cursors, ring
        cdef Py_ssize_t top, cursor, low
        cdef int root, nxt, i
        # Unplaced members of this plan's reachable set (pending still counts), in index order.
        cdef list roots = [
            i for i in range(self.n)
            if self.recs[i].mark == epoch and self.recs[i].pending > 0
        ]
        for root in roots:
            if state[root] != UNSEEN:
                continue
            state[root] = ON_PATH
            path = [root]
            branches = [self._sorted_row(root)]
            cursors = [0]
            while path:
                top = len(path) - 1
                cursor = cursors[top]
                if cursor == len(<list> branches[top]):
                    state[<int> path[top]] = DONE
                    path.pop()
                    branches.pop()
                    cursors.pop()
                    continue
                cursors[top] = cursor + 1
                nxt = (<list> branches[top])[cursor]
                if state[nxt] == ON_PATH:
                    ring = path[path.index(nxt):]
                    low = ring.index(min(ring))
                    return ring[low:] + ring[:low]
                if state[nxt] == UNSEEN:
                    state[nxt] = ON_PATH
                    path.append(nxt)
                    branches.append(self._sorted_row(nxt))
                    cursors.append(0)
        # NOTE: unreachable while the layering is right (an unplaced set always loops).
        raise AssertionError("no cycle among unplaced nodes")
