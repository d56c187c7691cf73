"""``krill demo``: write a small project into a durable host doc, reopen it, print the graph."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.tree import Tree

from krill_crdt.errors import KrillError
from krill_crdt.model import DataPointMeta, Node, NodeType
from krill_crdt.store import Create, HostDoc, Store, Update

__all__ = ["register", "run_demo"]

#: The host id of the demo; fixed so that running the demo twice updates the same doc.
DEMO_HOST = "demo-host"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="write a demo project into the store, reopen it and print the graph",
        description=(
            "Open the durable store, write a small automation project into this host's doc "
            "(created on the first run, its sensor reading bumped on later runs), close the "
            "store, reopen it from disk and print the node graph."
        ),
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".krill"), help="store directory (./.krill)"
    )
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    console = Console()
    try:
        asyncio.run(run_demo(args.data_dir, console))
    except KrillError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    return 0


def demo_nodes() -> list[Node]:
    """The demo project: a sensor feeding a data point, a threshold, a gate and a pin."""
    host = DEMO_HOST

    def node(kind: NodeType, node_id: str, parent: str | None, name: str, **meta: Any) -> Node:
        return Node.new(kind, host=host, parent=parent, id=node_id, name=name, meta=meta)

    return [
        node(NodeType.Server, "demo-server", None, "demo host", address="127.0.0.1", port=8442),
        node(NodeType.Project, "demo-greenhouse", "demo-server", "greenhouse"),
        node(
            NodeType.SerialDevice,
            "demo-sensor",
            "demo-server",
            "temperature sensor",
            port="loop://",
            baudrate=9600,
        ),
        node(
            NodeType.DataPoint,
            "demo-temperature",
            "demo-sensor",
            "temperature",
            unit="°C",
            data_type="number",
            targets=("demo-too-hot",),
        ),
        node(
            NodeType.HighThreshold,
            "demo-too-hot",
            "demo-temperature",
            "too hot",
            level=30.0,
            hysteresis=0.5,
            targets=("demo-fan-gate",),
        ),
        node(
            NodeType.LogicGate,
            "demo-fan-gate",
            "demo-too-hot",
            "fan on when hot",
            operation="OR",
            sources=("demo-too-hot",),
            targets=("demo-fan",),
        ),
        node(NodeType.Pin, "demo-fan", "demo-server", "fan relay", pin=17, mode="output"),
    ]


async def run_demo(data_dir: Path, console: Console) -> None:
    """Write the demo project (or bump its sensor reading), reopen the store, print it."""
    # Step 1: write, durably.
    async with Store(data_dir) as store:
        doc = store.doc(DEMO_HOST, create=True)
        if "demo-server" not in doc:
            await store.batch(DEMO_HOST, [Create(n) for n in demo_nodes()])
            console.print(f"created the demo project in {data_dir}")
        now = time.time()
        reading = round(20.0 + (now % 15.0), 2)
        meta = doc.get("demo-temperature").meta.to_dict()
        meta.update(snapshot_value=reading, snapshot_time=now)
        await store.batch(DEMO_HOST, [Update("demo-temperature", {"meta": meta})])
        store.series.append("demo-temperature", now, reading)
        console.print(f"wrote a sensor reading of {reading:.2f} °C")

    # Step 2: reopen from disk and show what survived.
    async with Store(data_dir) as store:
        doc = store.doc(DEMO_HOST)
        console.print(_tree(doc))
        samples = store.series.range("demo-temperature")
        console.print(
            f"{len(doc)} nodes in host doc {DEMO_HOST!r}; "
            f"{len(samples)} temperature sample(s) kept; "
            f"store files: {store.log.file_bytes()} bytes"
        )


def _tree(doc: HostDoc) -> Tree:
    root = Tree(f"[bold]host doc {doc.host}[/bold]")
    nodes = {n.id: n for n in doc.list_nodes()}
    branches: dict[str | None, Tree] = {None: root}
    pending = sorted(nodes.values(), key=lambda n: n.id)
    # Parents first: repeat until every node with a shown parent is placed.
    while pending:
        rest = []
        for node in pending:
            parent_branch = branches.get(node.parent)
            if parent_branch is None:
                rest.append(node)
                continue
            label = f"{node.name} [dim]({node.type.value}, {node.state.value}, {node.id})[/dim]"
            if isinstance(node.meta, DataPointMeta) and node.meta.snapshot_value is not None:
                label += f" = [bold]{node.meta.snapshot_value}[/bold] {node.meta.unit}"
            branches[node.id] = parent_branch.add(label)
        if len(rest) == len(pending):
            break
        pending = rest
    return root
