"""Engine variants with one safeguard switched off, to prove the invariants catch them.

A simulator that never fails proves nothing. Each fault here removes one of the engine's
safeguards by subclassing it, never by editing it, so the test suite can show that the
matching invariant fails:

* ``dedup``: the replay window accepts every frame, so duplicates are applied and relayed
  again (traffic explodes; frames per update and quiescence fail);
* ``origin``: deltas are relayed to every link, the one they came from included, instead
  of along the origin's spanning tree (frames per update fails);
* ``anti-entropy``: a digest mismatch no longer triggers a SYNC_STEP1, so a delta lost on
  the way is never recovered (convergence fails under loss).
"""

from __future__ import annotations

from collections.abc import Iterable

from .._core.codec import Frame, Kind
from ..sync.engine import SyncEngine
from ..sync.link import Link

__all__ = ["FAULTS", "engine_class"]

#: The safeguards that can be switched off, with what switching each off breaks.
FAULTS = {
    "dedup": "replay window accepts everything: duplicates are applied and relayed again",
    "origin": "relay ignores the origin tree: deltas go back to where they came from",
    "anti-entropy": "no SYNC_STEP1 on a digest mismatch: lost deltas are never recovered",
}


class _AcceptAll:
    """A replay window that has forgotten how to say no."""

    def check_and_mark(self, origin: bytes, seq: int) -> bool:
        return True


class _NoDedupEngine(SyncEngine):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._window = _AcceptAll()  # type: ignore[assignment]


class _NoOriginEngine(SyncEngine):
    def _relay(self, frame: Frame, came_from: Link, now: float) -> None:
        for link in sorted(self._links, key=str):
            self._emit(link, frame, Kind.UPDATE, relayed=True)
            self.stats["relayed"] += 1


class _NoAntiEntropyEngine(SyncEngine):
    def _ask(
        self, peer: bytes, doc: str, now: float, *, link: Link | None = None, force: bool = False
    ) -> None:
        # The handshake of a new link still runs (it is forced); only the repair is gone.
        if force:
            super()._ask(peer, doc, now, link=link, force=force)


_VARIANTS: dict[str, type[SyncEngine]] = {
    "dedup": _NoDedupEngine,
    "origin": _NoOriginEngine,
    "anti-entropy": _NoAntiEntropyEngine,
}


def engine_class(faults: Iterable[str]) -> type[SyncEngine]:
    """Return an engine class with the given safeguards switched off.

    Raises:
        ValueError: a fault name is not one of :data:`FAULTS`.
    """
    chosen = sorted(set(faults))
    unknown = [name for name in chosen if name not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    if not chosen:
        return SyncEngine
    bases = tuple(_VARIANTS[name] for name in chosen)
    if len(bases) == 1:
        return bases[0]
    return type("FaultyEngine", bases, {})
