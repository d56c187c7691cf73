"""Duplicate and replay filters for incoming frames: pure-Python twin of ``_dedup_c.pyx``.

Frames reach a peer over several transports at once (multicast, MQTT, peer links), relayed
by several peers, and an attacker on the LAN can record and resend them. CRDT merges make a
duplicate harmless; these filters make it cheap, answering in O(1) before any Yjs work.

* :class:`ReplayWindow` keeps, per origin peer, the highest sequence number seen and a
  bitmap of the ``window`` numbers behind it: the anti-replay window of IPsec (RFC 4303,
  section 3.4.3), stored as a ring of 64-bit words as RFC 6479 describes, so moving the
  window forward clears words instead of shifting bits.
* :class:`SeenCache` remembers keys (such as a MAC or digest of a frame without a usable
  sequence number) for a time to live, in a ring of fixed capacity.

Both are bounded: memory does not grow with traffic. Neither reads a clock; ``now`` is
passed in. Mark a frame only after its MAC holds, or a forger could burn sequence numbers.
"""

from __future__ import annotations

from collections import OrderedDict

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

#: Sequence numbers are unsigned 64-bit, as in the frame header.
MAX_SEQ = 2**64 - 1
#: Numbers behind the highest seen that are still told apart. Multicast, MQTT and peer
#: links deliver one origin's frames with different delays; 1024 frames of reordering is
#: far beyond what a LAN produces (RFC 6479 sizes windows for 10G links the same way).
DEFAULT_WINDOW = 1024
#: Largest window allowed: 64 Ki numbers keep one origin's ring at 16 KiB or less.
MAX_WINDOW = 65536
#: Origins tracked at once. Only frames with a valid MAC are marked, so origins are peers
#: of the swarm (tens on a LAN, more with restarts that pick new ids); past this the least
#: recently seen origin is forgotten. About 280 KiB at the default window.
DEFAULT_MAX_ORIGINS = 1024
#: Keys a SeenCache holds: a minute of frames at the beacon rate cap (4/s) from 16 peers.
DEFAULT_SEEN_CAPACITY = 4096
#: Seconds a SeenCache remembers a key; longer than any relay path on a LAN delays a frame.
DEFAULT_SEEN_TTL = 60.0


def _check_origin(origin: bytes) -> None:
    if not isinstance(origin, bytes):
        raise TypeError("origin must be bytes")


def _check_seq(seq: int) -> None:
    if not isinstance(seq, int):
        raise TypeError("seq must be an int")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"seq must be 0..{MAX_SEQ}, got {seq}")


class ReplayWindow:
    """Per-origin sliding window over sequence numbers.

    A number is accepted when it is above every number seen from that origin, or within
    ``window`` of the highest and not seen before. The first number from an unknown origin
    is always accepted (the window starts there).

    Memory: at most ``max_origins`` origins; a new origin beyond that evicts the least
    recently seen one (the one whose last :meth:`check_and_mark` is oldest). Each origin
    costs its bitmap (``window`` bits rounded up to a power-of-two number of 64-bit words
    in the compiled module: 256 bytes at the default) plus a dict entry.

    Attributes:
        accepted: numbers accepted by :meth:`check_and_mark`.
        duplicates: numbers refused because they were seen before.
        too_old: numbers refused because they fell behind the window.
        evictions: origins forgotten to make room.
    """

    __slots__ = (
        "_accepted",
        "_duplicates",
        "_evictions",
        "_mask",
        "_max_origins",
        "_origins",
        "_too_old",
        "_window",
    )

    def __init__(
        self, max_origins: int = DEFAULT_MAX_ORIGINS, window: int = DEFAULT_WINDOW
    ) -> None:
        """Create an empty window.

        Raises:
            ValueError: ``max_origins`` is below 1, or ``window`` is not a multiple of 64
                in 64..``MAX_WINDOW``.
        """
        if not isinstance(max_origins, int) or not isinstance(window, int):
            raise TypeError("max_origins and window must be ints")
        if max_origins < 1:
            raise ValueError(f"max_origins must be at least 1, got {max_origins}")
        if not 64 <= window <= MAX_WINDOW or window % 64:
            raise ValueError(f"window must be a multiple of 64 in 64..{MAX_WINDOW}, got {window}")
        self._max_origins = max_origins
        self._window = window
        # Bit i of an origin's bitmap stands for number (highest - i).
        self._mask = (1 << window) - 1
        # origin -> [highest, bitmap], least recently seen first.
        self._origins: OrderedDict[bytes, list[int]] = OrderedDict()
        self._accepted = 0
        self._duplicates = 0
        self._too_old = 0
        self._evictions = 0

    @property
    def max_origins(self) -> int:
        return self._max_origins

    @property
    def window(self) -> int:
        return self._window

    @property
    def accepted(self) -> int:
        return self._accepted

    @property
    def duplicates(self) -> int:
        return self._duplicates

    @property
    def too_old(self) -> int:
        return self._too_old

    @property
    def evictions(self) -> int:
        return self._evictions

    def __len__(self) -> int:
        return len(self._origins)

    def __contains__(self, origin: object) -> bool:
        return origin in self._origins

    def highest(self, origin: bytes) -> int | None:
        """Return the highest number accepted from ``origin``, or None if it is unknown."""
        _check_origin(origin)
        state = self._origins.get(origin)
        return None if state is None else state[0]

    def forget(self, origin: bytes) -> bool:
        """Drop ``origin``'s window; return whether it was known."""
        _check_origin(origin)
        return self._origins.pop(origin, None) is not None

    def check(self, origin: bytes, seq: int) -> bool:
        """Tell whether ``check_and_mark(origin, seq)`` would accept, changing nothing.

        Raises:
            TypeError: ``origin`` is not bytes or ``seq`` not an int.
            ValueError: ``seq`` is outside 0..2**64-1.
        """
        _check_origin(origin)
        _check_seq(seq)
        state = self._origins.get(origin)
        if state is None:
            return True
        highest, bits = state
        if seq > highest:
            return True
        behind = highest - seq
        return behind < self._window and not (bits >> behind) & 1

    def check_and_mark(self, origin: bytes, seq: int) -> bool:
        """Accept and remember ``seq`` from ``origin`` if it is new; True when accepted.

        False means a duplicate, a replay, or a number too far behind the window; the
        window is left as it was, except that ``origin`` becomes the most recently seen.

        Raises:
            TypeError: ``origin`` is not bytes or ``seq`` not an int.
            ValueError: ``seq`` is outside 0..2**64-1.
        """
        _check_origin(origin)
        _check_seq(seq)
        origins = self._origins
        state = origins.get(origin)

        # Step 1: an unknown origin starts a window at this number.
        # NOTE: an evicted origin comes back with no history, so its old frames are accepted
        # NOTE: once more. Merging them is harmless (CRDT updates are idempotent), only work
        # NOTE: is wasted; it matters only with more live origins than max_origins.
        if state is None:
            if len(origins) >= self._max_origins:
                origins.popitem(last=False)
                self._evictions += 1
            origins[origin] = [seq, 1]
            self._accepted += 1
            return True
        origins.move_to_end(origin)

        # Step 2: a number ahead of the window moves it forward.
        highest, bits = state
        if seq > highest:
            ahead = seq - highest
            state[0] = seq
            state[1] = ((bits << ahead) | 1) & self._mask if ahead < self._window else 1
            self._accepted += 1
            return True

        # Step 3: a number inside the window is new once.
        behind = highest - seq
        if behind >= self._window:
            self._too_old += 1
            return False
        bit = 1 << behind
        if bits & bit:
            self._duplicates += 1
            return False
        state[1] = bits | bit
        self._accepted += 1
        return True


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes):
        raise TypeError("key must be bytes")


def _as_time(now: float) -> float:
    if not isinstance(now, (int, float)):
        raise TypeError("now must be a number")
    return float(now)


class SeenCache:
    """Keys seen within the last ``ttl`` seconds, at most ``capacity`` of them.

    For frames without a usable sequence number: key them by something that tells copies
    apart (their MAC, or a digest of their bytes). Keys live in a ring of ``capacity``
    slots; each newly marked key takes the next slot, overwriting the oldest mark. A key
    whose time ran out counts as new again. ``now`` is any clock in seconds that the caller
    keeps (the sync engine never reads one itself); it should not go backwards, and if it
    does, keys are merely kept longer.

    Attributes:
        accepted: keys accepted by :meth:`check_and_mark`.
        duplicates: keys refused because they were seen within ``ttl``.
        evictions: live keys overwritten before their time ran out, for lack of room.
    """

    __slots__ = (
        "_accepted",
        "_capacity",
        "_duplicates",
        "_evictions",
        "_expiry",
        "_keys",
        "_next",
        "_slot_of",
        "_ttl",
    )

    def __init__(
        self, capacity: int = DEFAULT_SEEN_CAPACITY, ttl: float = DEFAULT_SEEN_TTL
    ) -> None:
        """Create an empty cache.

        Raises:
            ValueError: ``capacity`` is below 1 or ``ttl`` is not a positive finite number.
        """
        if not isinstance(capacity, int):
            raise TypeError("capacity must be an int")
        if not isinstance(ttl, (int, float)):
            raise TypeError("ttl must be a number")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if not 0.0 < ttl < float("inf"):
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl}")
        self._capacity = capacity
        self._ttl = float(ttl)
        self._keys: list[bytes | None] = [None] * capacity
        self._expiry = [0.0] * capacity
        self._slot_of: dict[bytes, int] = {}
        self._next = 0
        self._accepted = 0
        self._duplicates = 0
        self._evictions = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def accepted(self) -> int:
        return self._accepted

    @property
    def duplicates(self) -> int:
        return self._duplicates

    @property
    def evictions(self) -> int:
        return self._evictions

    def __len__(self) -> int:
        """Keys held, including ones whose time ran out but whose slot is not reused yet."""
        return len(self._slot_of)

    def check(self, key: bytes, now: float) -> bool:
        """Tell whether ``check_and_mark(key, now)`` would accept, changing nothing.

        Raises:
            TypeError: ``key`` is not bytes or ``now`` not a number.
        """
        _check_key(key)
        now = _as_time(now)
        slot = self._slot_of.get(key)
        return slot is None or self._expiry[slot] <= now

    def check_and_mark(self, key: bytes, now: float) -> bool:
        """Accept and remember ``key`` until ``now + ttl`` unless it is live; True if accepted.

        A refused key keeps its first expiry: copies arriving later do not extend it.

        Raises:
            TypeError: ``key`` is not bytes or ``now`` not a number.
        """
        _check_key(key)
        now = _as_time(now)
        slot_of = self._slot_of
        slot = slot_of.get(key)
        if slot is not None and self._expiry[slot] > now:
            self._duplicates += 1
            return False

        # The next slot holds the oldest mark. Its key is dropped unless it was marked again
        # since (then a later slot owns it).
        slot = self._next
        old = self._keys[slot]
        if old is not None and slot_of.get(old) == slot:
            del slot_of[old]
            if self._expiry[slot] > now:
                self._evictions += 1
        self._keys[slot] = key
        self._expiry[slot] = now + self._ttl
        slot_of[key] = slot
        self._next = slot + 1 if slot + 1 < self._capacity else 0
        self._accepted += 1
        return True
