"""A 1000-peer partition-heal: how long the simulator takes and what the swarm costs.

    .venv/bin/python bench/sim_1000.py [--peers 1000] [--seed 1] [--json FILE]

Prints one JSON object: wall time and peak resident memory of the simulator, then the run's
figures (virtual convergence time after the heal, frames per update, delta frames per
receiving peer, and every invariant with its detail). Exit status 0 when every invariant
held.

The swarm talks over UDP multicast and the MQTT broker (which stays on the east side while
split), with no peer links: a full mesh of links at this size is past the 255 neighbours a
PRESENCE frame can list. The write rate is that of the CI-sized run (about ten writes a
second across the swarm), so the figures measure the size of the swarm, not a heavier
workload.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from krill_crdt.sim import SCENARIOS, Report, Scenario, Simulation

#: Writes per second across the whole swarm, whatever its size.
SWARM_WRITE_RATE = 10.0


def scenario(peers: int) -> Scenario:
    """The partition-heal scenario at ``peers`` peers, as this benchmark runs it."""
    base = SCENARIOS["partition-heal"]
    partition = replace(base.partitions[0], broker="east")
    return replace(
        base.sized(peers),
        transports=("udp", "mqtt"),
        topology="none",
        partitions=(partition,),
        writers=tuple(replace(w, rate=SWARM_WRITE_RATE / peers) for w in base.writers),
        # Peers take longer to boot than a CI-sized swarm; beacons stay staggered.
        start_spread=2.0,
    )


def figures(report: Report, wall: float) -> dict[str, Any]:
    """What the benchmark prints: the simulator's cost, then the swarm's."""
    found = report.to_dict()
    return {
        "wall_seconds": round(wall, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **{
            key: found[key]
            for key in (
                "peers",
                "seed",
                "passed",
                "converged",
                "convergence_ms",
                "updates",
                "frames_sent",
                "delta_frames",
                "frames_per_update",
                "delta_frames_per_receiver",
                "lost_writes",
                "quiescent",
                "virtual_seconds",
                "frames_by_kind",
            )
        },
        "invariants": {
            name: f"{'pass' if inv['passed'] else 'FAIL'}: {inv['detail']}"
            for name, inv in found["invariants"].items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the full report here")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    report = Simulation(scenario(args.peers), args.seed).run()
    wall = time.perf_counter() - started

    print(json.dumps(figures(report, wall), indent=2))
    if args.json is not None:
        args.json.write_text(report.to_json())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
