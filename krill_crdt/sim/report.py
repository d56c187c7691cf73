"""The report of one run: the contract fields of ``krill sim --json`` and a few more."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .checks import Invariant

__all__ = ["Report"]

#: Decimals kept for times and ratios: enough for millisecond figures, and a fixed rounding
#: keeps the JSON identical whatever float noise a platform adds.
DECIMALS = 3


@dataclass(slots=True)
class Report:
    """What one run found.

    Attributes:
        scenario, seed, peers: what ran.
        converged: every running peer holds the same content of every host doc at the end.
        convergence_ms: virtual milliseconds from the last write or fault until every peer
            matched the final state for good (sampled, so rounded up to the sample interval);
            None if the swarm did not converge.
        updates: workload writes made (each one transaction on one peer).
        frames_sent: frames handed to a transport, of every kind; a broadcast counts once.
        delta_frames: copies of delta frames (update, sync step 1 and 2) addressed to a
            peer: a unicast counts one, a broadcast one per peer it can reach.
        handshake_frames: delta frames of link handshakes (SYNC_STEP1 on link up and what
            answers it): a cost per link, not per write, so counted apart.
        frames_per_update: ``delta_frames / updates``.
        delta_frames_per_receiver: ``frames_per_update / (peers - 1)``: below 1 means
            coalescing made each peer receive fewer frames than writes were made.
        lost_writes: acknowledged writes missing from the final state (see ``checks``).
        quiescent: no delta frame was sent in the quiet window at the end.
        invariants: each checked property with pass/fail and detail.
        series: time series for plots (not written to JSON unless asked).
    """

    scenario: str
    seed: int
    peers: int
    hosts: int
    converged: bool
    convergence_ms: float | None
    updates: int
    frames_sent: int
    delta_frames: int
    handshake_frames: int
    frames_per_update: float
    delta_frames_per_receiver: float
    lost_writes: int
    quiescent: bool
    invariants: dict[str, Invariant]
    virtual_seconds: float
    frames_by_kind: dict[str, int]
    frames_dropped: int
    skipped_writes: int
    writes_lost_in_crash: int
    faults: list[str]
    lag_ms: dict[str, float | None]
    series: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every invariant held."""
        return all(inv.passed for inv in self.invariants.values())

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (no plot series)."""

        def r(value: float | None) -> float | None:
            return None if value is None else round(value, DECIMALS)

        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "peers": self.peers,
            "hosts": self.hosts,
            "converged": self.converged,
            "convergence_ms": r(self.convergence_ms),
            "updates": self.updates,
            "frames_sent": self.frames_sent,
            "delta_frames": self.delta_frames,
            "handshake_frames": self.handshake_frames,
            "frames_per_update": r(self.frames_per_update),
            "delta_frames_per_receiver": r(self.delta_frames_per_receiver),
            "lost_writes": self.lost_writes,
            "quiescent": self.quiescent,
            "invariants": {k: v.to_json() for k, v in sorted(self.invariants.items())},
            "passed": self.passed,
            "virtual_seconds": r(self.virtual_seconds),
            "frames_by_kind": dict(sorted(self.frames_by_kind.items())),
            "frames_dropped": self.frames_dropped,
            "skipped_writes": self.skipped_writes,
            "writes_lost_in_crash": self.writes_lost_in_crash,
            "faults": list(self.faults),
            "lag_ms": {k: r(v) for k, v in sorted(self.lag_ms.items())},
        }

    def to_json(self) -> str:
        """The report as JSON text: keys sorted, so equal runs give equal bytes."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
