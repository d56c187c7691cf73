"""Store figures: acknowledged writes per second per fsync policy, load time and resident
memory of a 10k-node host doc next to raw pycrdt holding the same fields, and the log file
size before and after a squash.

Run: .venv/bin/python bench/store_figures.py [--nodes 10000] [--writers 32] [--seconds 3]

Each memory/load figure is measured in a fresh child process, so one does not inherit the
other's heap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from krill_crdt.model import Node, NodeType
from krill_crdt.store import Create, LogOptions, Origin, Store

HOST = "bench-host"


def nodes(count: int) -> list[Node]:
    server = Node.new(NodeType.Server, host=HOST, id="srv", name="server")
    projects = [
        Node.new(NodeType.Project, host=HOST, parent="srv", id=f"n{i:06d}", name=f"node {i}")
        for i in range(count - 1)
    ]
    return [server, *projects]


async def fill(data_dir: Path, count: int) -> None:
    async with Store(data_dir) as store:
        batch = nodes(count)
        for start in range(0, len(batch), 1000):
            await store.batch(HOST, [Create(n) for n in batch[start : start + 1000]])
        await store.squash(HOST)


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def child_load_ours(data_dir: str) -> dict[str, float]:
    async def run() -> dict[str, float]:
        before = rss()
        started = time.perf_counter()
        store = await Store(data_dir).open()
        loaded = time.perf_counter() - started
        count = len(store.doc(HOST))
        after = rss()
        await store.close()
        return {"load_s": loaded, "rss_bytes": after - before, "nodes": count}

    return asyncio.run(run())


def raw_update(count: int) -> bytes:
    """The same nodes, the same fields, as one update of a plain pycrdt doc."""
    from pycrdt import Doc, Map

    source: Doc[Any] = Doc()
    root = source.get("nodes", type=Map)
    with source.transaction():
        for node in nodes(count):
            root[node.id] = Map(node.to_fields())
    return source.get_update()


def child_load_raw(update_file: str) -> dict[str, float]:
    from pycrdt import Doc, Map

    # The update was built by the parent process: building it here would leave freed heap
    # behind that the load then reuses, hiding most of its real cost.
    update = Path(update_file).read_bytes()
    before = rss()
    started = time.perf_counter()
    doc: Doc[Any] = Doc()
    doc.get("nodes", type=Map)
    doc.apply_update(update)
    loaded = time.perf_counter() - started
    after = rss()
    return {
        "load_s": loaded,
        "rss_bytes": after - before,
        "nodes": len(doc.get("nodes", type=Map)),
        "encoded_bytes": len(update),
    }


def in_child(function: str, argument: str) -> dict[str, float]:
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import store_figures as f; "
        f"print(json.dumps(f.{function}({argument!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


async def ack_rate(data_dir: Path, fsync: str, writers: int, seconds: float) -> float:
    options = LogOptions(fsync=fsync)  # type: ignore[arg-type]
    async with Store(data_dir, options=options) as store:
        await store.batch(HOST, [Create(n) for n in nodes(writers + 1)])
        done = 0
        stop = time.perf_counter() + seconds

        async def writer(index: int) -> None:
            nonlocal done
            step = 0
            while time.perf_counter() < stop:
                await store.update(f"n{index:06d}", {"name": f"step {step}"})
                step += 1
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(writer(i) for i in range(writers)))
        return done / (time.perf_counter() - started)


async def squash_sizes(data_dir: Path, node_count: int, updates: int) -> tuple[int, int, int]:
    options = LogOptions(squash_count=10**9, squash_bytes=1 << 40, squash_age_s=1e9)
    async with Store(data_dir / "grow", options=options) as store:
        doc = store.doc(HOST, create=True)
        doc.batch([Create(n) for n in nodes(node_count)])
        for i in range(updates):
            doc.update(f"n{i % (node_count - 1):06d}", {"name": f"v{i}"})
        await store.flush()
        before = store.log.file_bytes()
        await store.squash(HOST)
        await store.flush()
        after = store.log.file_bytes()
        state = doc.diff()
    async with Store(data_dir / "fresh") as fresh:
        fresh.apply(HOST, state, origin=Origin("seed", "bench"))
        await fresh.flush()
        fresh_size = fresh.log.file_bytes()
    return before, after, fresh_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for fsync in ("always", "batch"):
            rate = asyncio.run(ack_rate(base / f"ack-{fsync}", fsync, args.writers, args.seconds))
            print(f"acknowledged writes/s, fsync={fsync}, {args.writers} writers: {rate:,.0f}")

        asyncio.run(fill(base / "load", args.nodes))
        ours = in_child("child_load_ours", str(base / "load"))
        update_file = base / "raw.update"
        update_file.write_bytes(raw_update(args.nodes))
        raw = in_child("child_load_raw", str(update_file))
        for label, fig in (("krill Store", ours), ("raw pycrdt", raw)):
            print(
                f"{label:12s}: {fig['nodes']:.0f} nodes, load {fig['load_s'] * 1000:.0f} ms, "
                f"RSS +{fig['rss_bytes'] / 2**20:.1f} MiB "
                f"({fig['rss_bytes'] / fig['nodes']:.0f} B/node)"
            )

        before, after, fresh = asyncio.run(squash_sizes(base, 1000, 100_000))
        print(
            f"log of 100k updates on 1k nodes: {before / 2**20:.2f} MiB before squash, "
            f"{after / 2**20:.2f} MiB after; a fresh store of the same state: "
            f"{fresh / 2**20:.2f} MiB (ratio {after / fresh:.2f})"
        )


if __name__ == "__main__":
    main()
