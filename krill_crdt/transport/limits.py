"""Per-source rate limits: token buckets, one per sender, in a bounded table.

A :class:`TokenBucket` allows ``burst`` events at once and ``rate`` per second after that.
A :class:`SourceLimits` keeps one bucket per source (an address, a connection) and forgets the
least recently seen source when it holds ``max_sources``, so a flood of spoofed source
addresses costs a bounded amount of memory; a forgotten source starts again with a full
bucket, which is the worst a spoofer gains.

Datagram transports drop what is over the limit (and count it); stream transports wait for
the next token instead (:meth:`TokenBucket.delay`), which pushes back on the sender through
TCP flow control and loses nothing.

asyncio limiters such as ``aiolimiter`` are awaitable only; the decisions here are made
inside protocol callbacks that must not wait, so the bucket is kept synchronous.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from ..errors import ValidationError

__all__ = ["RateLimit", "SourceLimits", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` events per second on average, ``burst`` at once.

    Raises:
        ValidationError: a value is not positive.
    """

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValidationError("rate", "must be above 0", self.rate)
        if not self.burst >= 1:
            raise ValidationError("burst", "must be at least 1", self.burst)


class TokenBucket:
    """One sender's allowance: refills at ``rate`` per second up to ``burst`` tokens."""

    __slots__ = ("_limit", "_stamp", "_tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self._limit = limit
        self._tokens = limit.burst
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(
                self._limit.burst, self._tokens + (now - self._stamp) * self._limit.rate
            )
            self._stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; return whether it was allowed."""
        self._refill(now)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def delay(self, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens, going into debt if needed; return the seconds to wait.

        A stream reader sleeps that long before it reads on, so a sender over its rate is
        slowed to it rather than cut off.
        """
        self._refill(now)
        self._tokens -= cost
        return 0.0 if self._tokens >= 0 else -self._tokens / self._limit.rate


class SourceLimits:
    """One :class:`TokenBucket` per source, for at most ``max_sources`` sources at once."""

    __slots__ = ("_buckets", "_clock", "_limit", "_max")

    def __init__(
        self,
        limit: RateLimit,
        *,
        max_sources: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sources < 1:
            raise ValidationError("max_sources", "must be at least 1", max_sources)
        self._limit = limit
        self._max = max_sources
        self._clock = clock
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def allow(self, source: Hashable, cost: float = 1.0) -> bool:
        """Whether ``source`` may send one more event now (spends a token if so)."""
        now = self._clock()
        return self._bucket(source, now).take(now, cost)

    def delay(self, source: Hashable, cost: float = 1.0) -> float:
        """Seconds ``source`` must wait before its next event (see :meth:`TokenBucket.delay`)."""
        now = self._clock()
        return self._bucket(source, now).delay(now, cost)

    def forget(self, source: Hashable) -> None:
        """Drop a source's bucket (its connection closed)."""
        self._buckets.pop(source, None)

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, source: Hashable, now: float) -> TokenBucket:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._buckets.popitem(last=False)
            bucket = self._buckets[source] = TokenBucket(self._limit, now)
        else:
            self._buckets.move_to_end(source)
        return bucket
