"""Invocation throughput: the chain executor against recursive closure building.

Both run the same trivial processor over the same 10,000-node chain (a tree of Button nodes,
fan-out 3, wired by targets), in one event loop each. On a tree every node lies on exactly one
path, so the recursive baseline runs each node once too: the figure compares the cost of the
two ways of walking a chain, not the exponential blow-up of recursion on shared nodes (the
``closure_lattice`` case shows that). Unit: nodes run per second.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from ..model import ChainMeta, Node, NodeType
from ..runtime.executor import ChainExecutor
from ..runtime.processors.base import Context, Outcome
from ..store.hostdoc import Create, HostDoc
from . import Batch, Case

__all__ = ["CASES", "chain_tree"]

HOST = "bench-host"
NODES = 10_000
FAN_OUT = 3


class _Trivial:
    """Does what a Button does: proceeds at once (and says so, as the Button processor does)."""

    type: ClassVar[NodeType] = NodeType.Button
    inline: ClassVar[bool] = True

    async def run(self, ctx: Context) -> Outcome:
        return Outcome(True, None)


class _NoHost:
    def get(self, node_id: str) -> Node:
        raise KeyError(node_id)

    async def update(self, node_id: str, changes: Any) -> Node:
        raise KeyError(node_id)

    def now(self) -> float:
        return 0.0

    def resource(self, name: str) -> Any:
        raise KeyError(name)


def chain_tree(count: int = NODES, fan_out: int = FAN_OUT) -> HostDoc:
    """A host doc of ``count`` Button nodes wired as a tree by targets, rooted at ``n0``."""
    doc = HostDoc(HOST)
    nodes = [Node.new(NodeType.Server, host=HOST, id=HOST)]
    for i in range(count):
        first = i * fan_out + 1
        targets = tuple(f"n{j}" for j in range(first, min(first + fan_out, count)))
        nodes.append(
            Node.new(NodeType.Button, host=HOST, parent=HOST, id=f"n{i}", meta={"targets": targets})
        )
    doc.batch([Create(n) for n in nodes])
    return doc


def _executor() -> Batch:
    doc = chain_tree()
    loop = asyncio.new_event_loop()
    run = ChainExecutor(doc, _NoHost(), dict.fromkeys(NodeType, _Trivial()))

    def batch() -> int:
        return len(loop.run_until_complete(run.invoke("n0")).ran)

    return batch


def _recursive() -> Batch:
    doc = chain_tree()
    loop = asyncio.new_event_loop()
    processor = _Trivial()
    host = _NoHost()
    nodes = {n.id: n for n in doc.list_nodes()}

    async def walk(node_id: str) -> int:
        node = nodes[node_id]
        await processor.run(Context(node, host))
        meta = node.meta
        done = 1
        if isinstance(meta, ChainMeta):
            for target in meta.targets:
                done += await walk(target)
        return done

    def batch() -> int:
        return loop.run_until_complete(walk("n0"))

    return batch


CASES = [
    Case(
        name="invoke_10k",
        unit="nodes/s",
        compiled=_executor,
        python=_recursive,
        note="chain executor (plan, waves, timeouts, gating) vs recursive closure, 10k-node tree;"
        " python column: recursive baseline",
    )
]
