"""A 1000-peer partition-heal: how long the simulator takes and how much memory it holds.

    .venv/bin/python bench/sim_1000.py [--peers 1000] [--seed 1] [--json FILE]

Prints wall time, peak resident memory and the run's report figures. The swarm talks over
UDP multicast and the MQTT broker (which stays on the east side while split): at this size
a mesh of peer links is past the 255 neighbours a PRESENCE frame can list, and flooding
PRESENCE over a sparse link graph costs (peers x degree)^2 frames at start.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

from krill_crdt.sim import SCENARIOS, Simulation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    base = SCENARIOS["partition-heal"]
    partition = replace(base.partitions[0], broker="east")
    scenario = replace(
        base.sized(args.peers),
        transports=("udp", "mqtt"),
        topology="none",
        partitions=(partition,),
        # The same total write rate as the CI-sized run (about ten writes a second across
        # the swarm), so that the figure measures the swarm, not a heavier workload.
        writers=tuple(replace(w, rate=10.0 / args.peers) for w in base.writers),
        # Peers take longer to boot than a CI-sized swarm; beacons stay staggered.
        start_spread=2.0,
    )
    started = time.perf_counter()
    # A coarser sampling interval: digests of every doc on every peer, ten times a second,
    # would cost more than the run itself at this size.
    report = Simulation(scenario, args.seed, sample_interval=0.5).run()
    wall = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = report.to_dict()
    summary = {
        "wall_seconds": round(wall, 1),
        "peak_rss_mib": round(peak_mib, 1),
        **{
            k: figures[k]
            for k in (
                "peers",
                "converged",
                "convergence_ms",
                "updates",
                "frames_sent",
                "frames_per_update",
                "lost_writes",
                "quiescent",
                "virtual_seconds",
            )
        },
        "invariants": {k: v["passed"] for k, v in figures["invariants"].items()},
    }
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.write_text(report.to_json())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
