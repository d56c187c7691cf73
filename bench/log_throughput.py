"""Acknowledged appends per second of the update log, for each fsync policy.

Each writer appends a host doc update and waits for its acknowledgement (durable: fsynced)
before the next, the way a peer persists edits; with ``--inflight N`` a writer keeps up to N
appends waiting instead, like a peer applying a burst of remote updates. Updates are real
pycrdt updates of about 100-300 bytes, made up front so that only the log is measured.

Run: ``.venv/bin/python bench/log_throughput.py [--seconds 3] [--writers 16] [--inflight 1 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map

from krill_crdt.store.log import LogOptions, UpdateLog


def make_updates(count: int) -> list[bytes]:
    """Updates of a host-doc-like pycrdt doc: nodes of 8 fields written and rewritten."""
    doc: Doc[Any] = Doc()
    nodes = doc.get("nodes", type=Map)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        node_id = f"node-{i % 500:04d}"
        with doc.transaction():
            nodes[node_id] = {
                "id": node_id,
                "parent": "srv-1",
                "host": "host-a",
                "type": "DataPoint",
                "name": f"temperature {i % 500}",
                "state": "running" if i % 2 else "idle",
                "meta": '{"unit": "C", "precision": 2}' + " " * (i % 100),
                "updated": 1_700_000_000.0 + i,
            }
    return updates


async def run(
    path: Path,
    options: LogOptions,
    *,
    writers: int,
    inflight: int,
    seconds: float,
    updates: list[bytes],
) -> dict[str, float]:
    latencies: list[float] = []
    async with UpdateLog(path, options) as log:
        log.load()
        deadline = time.perf_counter() + seconds

        def record(started: float, _: asyncio.Future[int]) -> None:
            latencies.append(time.perf_counter() - started)

        async def writer(k: int) -> None:
            doc = f"host-{k % 4}"
            i = k
            waiting: deque[asyncio.Future[int]] = deque()
            while time.perf_counter() < deadline:
                if len(waiting) >= inflight:
                    await waiting.popleft()
                    continue
                started = time.perf_counter()
                fut = log.append(doc, updates[i % len(updates)])
                fut.add_done_callback(partial(record, started))
                waiting.append(fut)
                i += writers
            await asyncio.gather(*waiting)

        started = time.perf_counter()
        await asyncio.gather(*(writer(k) for k in range(writers)))
        elapsed = time.perf_counter() - started
        stats = log.stats()
    latencies.sort()
    return {
        "acks_s": len(latencies) / elapsed,
        "per_commit": stats.appends / max(stats.commits, 1),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per configuration")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--inflight", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()

    updates = make_updates(5000)
    sizes = sorted(map(len, updates))
    print(f"updates: {len(updates)}, {sizes[0]}-{sizes[-1]} bytes, median {sizes[len(sizes) // 2]}")
    print(
        f"{'policy':<8} {'writers':>7} {'inflight':>8} {'acks/s':>10} {'appends/commit':>15}"
        f" {'p50 ms':>8} {'p99 ms':>8}"
    )
    for policy in ("always", "batch"):
        for writers in args.writers:
            for inflight in args.inflight:
                options = LogOptions(fsync=policy)
                # On the disk of the working directory, not a tmpfs: fsync must cost what it costs.
                with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
                    db = Path(tmp) / "log.sqlite3"
                    r = asyncio.run(
                        run(
                            db,
                            options,
                            writers=writers,
                            inflight=inflight,
                            seconds=args.seconds,
                            updates=updates,
                        )
                    )
                print(
                    f"{policy:<8} {writers:>7} {inflight:>8} {r['acks_s']:>10.0f}"
                    f" {r['per_commit']:>15.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
                )


if __name__ == "__main__":
    main()
