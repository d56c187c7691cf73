"""Beacon pacing: often while state changes, backing off while idle, never too often.

The same shape as mDNS announcements (RFC 6762) and Zenoh scouting: a change makes the
next beacon come soon, so peers learn of it quickly; a quiet swarm backs off so that idle
peers cost almost nothing; a hard floor keeps a burst of writes from becoming a beacon storm.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BeaconPacer", "PacingOptions"]


@dataclass(frozen=True, slots=True)
class PacingOptions:
    """Beacon intervals, in seconds.

    Attributes:
        floor: at most one beacon per this interval, whatever happens (250 ms: four a second
            bounds the beacon traffic of even a busy swarm).
        active: the interval while state changes (1 s: a peer that missed a delta learns of
            it within a second).
        idle: the ceiling the interval backs off to, doubling per quiet beacon (8 s: a quiet
            swarm of 50 peers sends about six datagrams a second in all).
    """

    floor: float = 0.25
    active: float = 1.0
    idle: float = 8.0

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.active <= self.idle:
            raise ValueError(
                f"beacon intervals must satisfy 0 < floor <= active <= idle, got "
                f"{self.floor}, {self.active}, {self.idle}"
            )


class BeaconPacer:
    """Decides when the next beacon is due. Time is passed in; nothing here reads a clock."""

    __slots__ = ("_interval", "_last", "_next", "_options")

    def __init__(self, options: PacingOptions, now: float) -> None:
        self._options = options
        self._interval = options.active
        self._last: float | None = None
        # The first beacon goes out at once: a peer that just started announces itself.
        self._next = now

    @property
    def next_due(self) -> float:
        """When the next beacon is due."""
        return self._next

    @property
    def interval(self) -> float:
        """The current interval between beacons."""
        return self._interval

    def changed(self, now: float) -> None:
        """State changed: beacon as soon as the floor allows, then at the active rate."""
        self._interval = self._options.active
        earliest = now if self._last is None else self._last + self._options.floor
        self._next = min(self._next, max(now, earliest))

    def answer(self, now: float) -> None:
        """A newcomer appeared: beacon soon, so it learns of us, but at most once per active
        interval however many appear (a swarm booting at once would otherwise make every
        peer beacon at the floor rate for as long as peers keep appearing)."""
        earliest = now if self._last is None else self._last + self._options.active
        self._next = min(self._next, max(now, earliest))

    def due(self, now: float) -> bool:
        """True when a beacon should go out now."""
        return now >= self._next

    def sent(self, now: float) -> None:
        """A beacon went out: schedule the next one and back off toward the idle interval."""
        self._last = now
        self._next = now + self._interval
        self._interval = min(self._interval * 2, self._options.idle)
