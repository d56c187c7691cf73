# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Duplicate and replay filters, compiled. Twin of ``_dedup_py.py``: same behaviour.

A ReplayWindow keeps every origin's state in C arrays indexed by a slot number: the highest
sequence number, a ring of 64-bit words for the bitmap and the links of a least-recently-
seen list. The only Python objects are the dict from origin to slot and the origins
themselves, so a check is one dict lookup and a few word operations.
"""

cimport cython
from cpython.dict cimport PyDict_GetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from libc.string cimport memset

from krill_crdt._core._dedup_py import (
    DEFAULT_MAX_ORIGINS,
    DEFAULT_SEEN_CAPACITY,
    DEFAULT_SEEN_TTL,
    DEFAULT_WINDOW,
    MAX_SEQ,
    MAX_WINDOW,
)

__all__ = [
    "DEFAULT_MAX_ORIGINS",
    "DEFAULT_SEEN_CAPACITY",
    "DEFAULT_SEEN_TTL",
    "DEFAULT_WINDOW",
    "MAX_SEQ",
    "MAX_WINDOW",
    "ReplayWindow",
    "SeenCache",
]


cdef extern from "Python.h":
    # Declared without an exception clause: the caller checks PyErr_Occurred itself, so a
    # number out of range raises the twin's ValueError rather than an OverflowError.
    unsigned long long _as_ull "PyLong_AsUnsignedLongLong"(object) noexcept
    bint PyLong_Check(object) noexcept
    Py_ssize_t PyLong_AsSsize_t(object) noexcept
    PyObject *PyErr_Occurred() noexcept
    void PyErr_Clear() noexcept


cdef inline uint64_t _as_seq(object seq) except? 0xFFFFFFFFFFFFFFFF:
    if not PyLong_Check(seq):
        raise TypeError("seq must be an int")
    cdef uint64_t value = _as_ull(seq)
    if value == 0xFFFFFFFFFFFFFFFFULL and PyErr_Occurred() != NULL:
        PyErr_Clear()
        raise ValueError(f"seq must be 0..{MAX_SEQ}, got {seq}")
    return value


cdef inline int _check_origin(object origin) except -1:
    if not isinstance(origin, bytes):
        raise TypeError("origin must be bytes")
    return 0


cdef enum:
    NO_SLOT = -1
    #: Slots allocated up front; the arrays double from there up to max_origins.
    FIRST_SLOTS = 16


@cython.final
cdef class ReplayWindow:
    """Per-origin sliding window over sequence numbers. See the twin for the contract."""

    cdef Py_ssize_t _max_origins
    cdef Py_ssize_t _window
    # Ring words per origin: a power of two above window / 64, so that the words of every
    # number within the window are distinct and the ring index is a mask.
    cdef Py_ssize_t _words
    cdef uint64_t _word_mask
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _used
    cdef uint64_t *_highest
    cdef uint64_t *_rings
    # Least-recently-seen list: _head is the most recent slot, _tail the next to evict.
    cdef Py_ssize_t *_prev
    cdef Py_ssize_t *_next
    cdef Py_ssize_t _head
    cdef Py_ssize_t _tail
    # Slots freed by forget() or eviction, reused before new ones.
    cdef Py_ssize_t *_free
    cdef Py_ssize_t _free_count
    cdef dict _slot_of
    cdef list _origin_of
    cdef readonly uint64_t accepted
    cdef readonly uint64_t duplicates
    cdef readonly uint64_t too_old
    cdef readonly uint64_t evictions

    def __cinit__(self):
        self._highest = NULL
        self._rings = NULL
        self._prev = NULL
        self._next = NULL
        self._free = NULL

    def __init__(self, max_origins=DEFAULT_MAX_ORIGINS, window=DEFAULT_WINDOW):
        if not isinstance(max_origins, int) or not isinstance(window, int):
            raise TypeError("max_origins and window must be ints")
        if max_origins < 1:
            raise ValueError(f"max_origins must be at least 1, got {max_origins}")
        if not 64 <= window <= MAX_WINDOW or window % 64:
            raise ValueError(f"window must be a multiple of 64 in 64..{MAX_WINDOW}, got {window}")
        if self._highest != NULL:
            raise RuntimeError("ReplayWindow is already initialised")
        self._max_origins = max_origins
        self._window = window
        self._words = 1
        while self._words < window // 64 + 1:
            self._words *= 2
        self._word_mask = <uint64_t> (self._words - 1)
        self._slot_of = {}
        self._origin_of = []
        self._head = NO_SLOT
        self._tail = NO_SLOT
        self._capacity = 0
        self._used = 0
        self._free_count = 0
        self._grow(min(<Py_ssize_t> FIRST_SLOTS, self._max_origins))

    def __dealloc__(self):
        PyMem_Free(self._highest)
        PyMem_Free(self._rings)
        PyMem_Free(self._prev)
        PyMem_Free(self._next)
        PyMem_Free(self._free)

    cdef int _grow(self, Py_ssize_t capacity) except -1:
        cdef uint64_t *highest = <uint64_t *> PyMem_Realloc(
            self._highest, capacity * sizeof(uint64_t)
        )
        if highest == NULL:
            raise MemoryError()
        self._highest = highest
        cdef uint64_t *rings = <uint64_t *> PyMem_Realloc(
            self._rings, capacity * self._words * sizeof(uint64_t)
        )
        if rings == NULL:
            raise MemoryError()
        self._rings = rings
        cdef Py_ssize_t *links = <Py_ssize_t *> PyMem_Realloc(
            self._prev, capacity * sizeof(Py_ssize_t)
        )
        if links == NULL:
            raise MemoryError()
        self._prev = links
        links = <Py_ssize_t *> PyMem_Realloc(self._next, capacity * sizeof(Py_ssize_t))
        if links == NULL:
            raise MemoryError()
        self._next = links
        links = <Py_ssize_t *> PyMem_Realloc(self._free, capacity * sizeof(Py_ssize_t))
        if links == NULL:
            raise MemoryError()
        self._free = links
        self._origin_of.extend([None] * (capacity - self._capacity))
        self._capacity = capacity
        return 0

    @property
    def max_origins(self):
        return self._max_origins

    @property
    def window(self):
        return self._window

    def __len__(self):
        return len(self._slot_of)

    def __contains__(self, origin):
        return origin in self._slot_of

    # --- least-recently-seen list --------------------------------------------------------

    cdef inline void _unlink(self, Py_ssize_t slot) noexcept:
        cdef Py_ssize_t before = self._prev[slot]
        cdef Py_ssize_t after = self._next[slot]
        if before != NO_SLOT:
            self._next[before] = after
        else:
            self._head = after
        if after != NO_SLOT:
            self._prev[after] = before
        else:
            self._tail = before

    cdef inline void _push_front(self, Py_ssize_t slot) noexcept:
        self._prev[slot] = NO_SLOT
        self._next[slot] = self._head
        if self._head != NO_SLOT:
            self._prev[self._head] = slot
        else:
            self._tail = slot
        self._head = slot

    cdef inline void _release(self, Py_ssize_t slot):
        self._unlink(slot)
        del self._slot_of[self._origin_of[slot]]
        self._origin_of[slot] = None
        self._free[self._free_count] = slot
        self._free_count += 1

    cdef inline Py_ssize_t _slot(self, object origin):
        cdef PyObject *found = PyDict_GetItem(self._slot_of, origin)
        if found == NULL:
            return NO_SLOT
        return PyLong_AsSsize_t(<object> found)

    # --- queries -------------------------------------------------------------------------

    def highest(self, origin):
        _check_origin(origin)
        cdef Py_ssize_t slot = self._slot(origin)
        return None if slot == NO_SLOT else self._highest[slot]

    def forget(self, origin):
        _check_origin(origin)
        cdef Py_ssize_t slot = self._slot(origin)
        if slot == NO_SLOT:
            return False
        self._release(slot)
        return True

    def check(self, origin, seq):
        _check_origin(origin)
        cdef uint64_t number = _as_seq(seq)
        cdef Py_ssize_t slot = self._slot(origin)
        if slot == NO_SLOT:
            return True
        cdef uint64_t highest = self._highest[slot]
        if number > highest:
            return True
        if highest - number >= <uint64_t> self._window:
            return False
        cdef uint64_t *ring = self._rings + slot * self._words
        return not (ring[(number >> 6) & self._word_mask] >> (number & 63)) & 1

    def check_and_mark(self, origin, seq):
        _check_origin(origin)
        cdef uint64_t number = _as_seq(seq)
        cdef Py_ssize_t slot = self._slot(origin)

        # Step 1: an unknown origin starts a window at this number.
        # NOTE: as in the twin, an evicted origin comes back with no history.
        if slot == NO_SLOT:
            self._start(origin, number)
            return True
        if self._head != slot:
            self._unlink(slot)
            self._push_front(slot)

        cdef uint64_t *ring = self._rings + slot * self._words
        cdef uint64_t highest = self._highest[slot]
        cdef uint64_t word, last
        cdef uint64_t bit = (<uint64_t> 1) << (number & 63)

        # Step 2: a number ahead of the window moves it forward, clearing the ring words it
        # enters (all of them after a jump of a whole ring or more).
        if number > highest:
            word = highest >> 6
            last = number >> 6
            if last - word >= <uint64_t> self._words:
                memset(ring, 0, self._words * sizeof(uint64_t))
            else:
                while word < last:
                    word += 1
                    ring[word & self._word_mask] = 0
            self._highest[slot] = number
            ring[(number >> 6) & self._word_mask] |= bit
            self.accepted += 1
            return True

        # Step 3: a number inside the window is new once.
        if highest - number >= <uint64_t> self._window:
            self.too_old += 1
            return False
        word = (number >> 6) & self._word_mask
        if ring[word] & bit:
            self.duplicates += 1
            return False
        ring[word] |= bit
        self.accepted += 1
        return True

    cdef int _start(self, object origin, uint64_t number) except -1:
        cdef Py_ssize_t slot
        if len(self._slot_of) >= self._max_origins:
            self._release(self._tail)
            self.evictions += 1
        if self._free_count:
            self._free_count -= 1
            slot = self._free[self._free_count]
        else:
            if self._used == self._capacity:
                self._grow(min(2 * self._capacity, self._max_origins))
            slot = self._used
            self._used += 1
        cdef uint64_t *ring = self._rings + slot * self._words
        memset(ring, 0, self._words * sizeof(uint64_t))
        ring[(number >> 6) & self._word_mask] = (<uint64_t> 1) << (number & 63)
        self._highest[slot] = number
        self._origin_of[slot] = origin
        self._slot_of[origin] = slot
        self._push_front(slot)
        self.accepted += 1
        return 0


cdef inline int _check_key(object key) except -1:
    if not isinstance(key, bytes):
        raise TypeError("key must be bytes")
    return 0


cdef inline double _as_time(object now) except? -1.0:
    if not isinstance(now, (int, float)):
        raise TypeError("now must be a number")
    return <double> now


@cython.final
cdef class SeenCache:
    """Keys seen within the last ``ttl`` seconds, at most ``capacity``. See the twin."""

    cdef Py_ssize_t _capacity
    cdef double _ttl
    cdef double *_expiry
    cdef list _keys
    cdef dict _slot_of
    cdef Py_ssize_t _next
    cdef readonly uint64_t accepted
    cdef readonly uint64_t duplicates
    cdef readonly uint64_t evictions

    def __cinit__(self):
        self._expiry = NULL

    def __init__(self, capacity=DEFAULT_SEEN_CAPACITY, ttl=DEFAULT_SEEN_TTL):
        if not isinstance(capacity, int):
            raise TypeError("capacity must be an int")
        if not isinstance(ttl, (int, float)):
            raise TypeError("ttl must be a number")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if not 0.0 < ttl < float("inf"):
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl}")
        if self._expiry != NULL:
            raise RuntimeError("SeenCache is already initialised")
        self._expiry = <double *> PyMem_Malloc(capacity * sizeof(double))
        if self._expiry == NULL:
            raise MemoryError()
        memset(self._expiry, 0, capacity * sizeof(double))
        self._capacity = capacity
        self._ttl = ttl
        self._keys = [None] * capacity
        self._slot_of = {}
        self._next = 0

    def __dealloc__(self):
        PyMem_Free(self._expiry)

    @property
    def capacity(self):
        return self._capacity

    @property
    def ttl(self):
        return self._ttl

    def __len__(self):
        return len(self._slot_of)

    def check(self, key, now):
        _check_key(key)
        cdef double when = _as_time(now)
        cdef PyObject *found = PyDict_GetItem(self._slot_of, key)
        return found == NULL or self._expiry[PyLong_AsSsize_t(<object> found)] <= when

    def check_and_mark(self, key, now):
        _check_key(key)
        cdef double when = _as_time(now)
        cdef PyObject *found = PyDict_GetItem(self._slot_of, key)
        if found != NULL and self._expiry[PyLong_AsSsize_t(<object> found)] > when:
            self.duplicates += 1
            return False

        # The next slot holds the oldest mark. Its key is dropped unless it was marked again
        # since (then a later slot owns it).
        cdef Py_ssize_t slot = self._next
        cdef object old = self._keys[slot]
        if old is not None:
            found = PyDict_GetItem(self._slot_of, old)
            if found != NULL and PyLong_AsSsize_t(<object> found) == slot:
                del self._slot_of[old]
                if self._expiry[slot] > when:
                    self.evictions += 1
        self._keys[slot] = key
        self._expiry[slot] = when + self._ttl
        self._slot_of[key] = slot
        self._next = slot + 1 if slot + 1 < self._capacity else 0
        self.accepted += 1
        return True
