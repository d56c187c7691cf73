"""Chain execution on a node's host: plan once, run each node once, wave after wave.

Invoking a node runs its chain: the node, then every node it leads to along *successor
edges*. A node leads to

* each id in its ``meta.targets``;
* each of its children that is a trigger or an executor (a threshold under a data point);
* each executor that lists it in ``meta.sources`` (a gate reads its inputs).

The hot-path planner turns the chain into waves in which every reachable node appears once
and after everything it depends on; a cycle is reported with its nodes and nothing runs.
This replaces recursive closure building, which ran a node once per path (exponentially
often on lattices) and never stopped on cycles.

Running a wave: its nodes run concurrently (bounded), each under a timeout. A node runs only
if the chain started at it or at least one of its predecessors in the chain ran and decided
to proceed (a threshold that did not cross stops its branch, not the chain). A failing node
is put in ERROR with its message recorded in the host doc's ``errors`` map; its branch stops,
unrelated branches go on. Only the host of a node executes it: the executor only ever plans
nodes of the host doc it was given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._core.planner import ChainGraph
from ..errors import ChainCycleError, KrillError, NodeNotFoundError, PlanError
from ..metrics import Metrics
from ..model import CATALOG, Category, ChainMeta, ExecutorMeta, Node, NodeState
from ..store.hostdoc import HostDoc
from .processors.base import Context, Outcome, Processor, ProcessorError, ProcessorHost

__all__ = ["ChainExecutor", "ChainResult", "ExecutorOptions"]

log = logging.getLogger("krill.runtime")

_CHAIN_CATEGORIES = frozenset({Category.TRIGGER, Category.EXECUTOR})


@dataclass(frozen=True, slots=True)
class ExecutorOptions:
    """Limits of chain execution.

    Attributes:
        node_timeout: seconds one processor may run (10 s: longer than an outgoing webhook's
            default timeout with its retries, far shorter than a person waits for a button).
        chain_timeout: seconds a whole chain may run (60 s).
        concurrency: processors of one wave running at once (16: enough to overlap network
            waits, few enough not to swamp a Pi's event loop).
    """

    node_timeout: float = 10.0
    chain_timeout: float = 60.0
    concurrency: int = 16

    def __post_init__(self) -> None:
        if self.node_timeout <= 0 or self.chain_timeout <= 0 or self.concurrency < 1:
            raise ValueError("timeouts must be positive and concurrency at least 1")


@dataclass(slots=True)
class ChainResult:
    """What one invocation did.

    Attributes:
        start: the node invoked.
        ran: ids of the nodes whose processor ran, in the order they finished.
        outcomes: node id -> the value it passed on (for the nodes that proceeded).
        errors: node id -> error message (for the nodes that failed).
        skipped: ids of planned nodes that did not run because no predecessor proceeded.
    """

    start: str
    ran: list[str] = field(default_factory=list)
    outcomes: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


class _Graph:
    """The successor edges of one host doc, as a planner graph, rebuilt only on change."""

    __slots__ = ("edges", "graph", "ids", "index")

    def __init__(self, nodes: list[Node]) -> None:
        self.ids = [n.id for n in nodes]
        self.index = {node_id: i for i, node_id in enumerate(self.ids)}
        self.edges = _successor_edges(nodes, self.index)
        self.graph = ChainGraph.from_edges(
            len(self.ids), [s for s, _ in self.edges], [d for _, d in self.edges]
        )


def _successor_edges(nodes: list[Node], index: Mapping[str, int]) -> list[tuple[int, int]]:
    edges: set[tuple[int, int]] = set()
    for node in nodes:
        me = index[node.id]
        meta = node.meta
        if isinstance(meta, ChainMeta):
            edges.update((me, index[t]) for t in meta.targets if t in index)
        if isinstance(meta, ExecutorMeta):
            edges.update((index[s], me) for s in meta.sources if s in index)
        parent = node.parent
        chained = CATALOG[node.type].category in _CHAIN_CATEGORIES
        if chained and parent is not None and parent in index:
            edges.add((index[parent], me))
    return sorted(edges)


class ChainExecutor:
    """Runs chains of one host doc.

    Args:
        doc: the host doc this peer hosts.
        host: services processors use (the running peer).
        processors: the processor of each node type.
        metrics: where executions and failures are counted.
        options: timeouts and concurrency.
    """

    def __init__(
        self,
        doc: HostDoc,
        host: ProcessorHost,
        processors: Mapping[Any, Processor],
        *,
        metrics: Metrics | None = None,
        options: ExecutorOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.doc = doc
        self.host = host
        self.processors = processors
        self.metrics = metrics or Metrics()
        self.options = options or ExecutorOptions()
        self._clock = clock
        self._graph: _Graph | None = None

    async def invoke(self, node_id: str, value: Any = None) -> ChainResult:
        """Run the chain that starts at ``node_id``.

        Returns:
            What ran, what each node passed on, what failed.

        Raises:
            NodeNotFoundError: the node is not in this host doc (route the invoke to its host).
            PlanError: the chain cannot be planned (a cycle: its nodes are put in ERROR).
            TimeoutError: the whole chain took longer than the chain timeout.
        """
        if node_id not in self.doc:
            raise NodeNotFoundError(f"no node {node_id!r} in host doc {self.doc.host!r}")
        plan, graph = self._plan(node_id)
        result = ChainResult(start=node_id)
        async with asyncio.timeout(self.options.chain_timeout):
            await self._run(plan, graph, result, value)
        return result

    def _plan(self, start: str) -> tuple[list[list[int]], _Graph]:
        nodes = self.doc.list_nodes()
        graph = self._graph
        if (
            graph is None
            or graph.ids != [n.id for n in nodes]
            or graph.edges != _successor_edges(nodes, graph.index)
        ):
            graph = self._graph = _Graph(nodes)
        try:
            return graph.graph.plan(graph.index[start]), graph
        except ChainCycleError as exc:
            ring = [graph.ids[i] for i in exc.cycle]
            message = f"chain dependencies form a cycle: {' -> '.join(ring + ring[:1])}"
            log.warning("host doc %s: %s", self.doc.host, message)
            for node_id in ring:
                self._mark(node_id, NodeState.ERROR, message)
            raise ChainCycleError(exc.cycle, message) from None

    async def _run(
        self, plan: list[list[int]], graph: _Graph, result: ChainResult, value: Any
    ) -> None:
        proceeded: dict[int, Any] = {}
        predecessors: dict[int, list[int]] = {}
        planned = {i for wave in plan for i in wave}
        for src, dst in graph.edges:
            if src in planned and dst in planned:
                predecessors.setdefault(dst, []).append(src)
        gate = asyncio.Semaphore(self.options.concurrency)

        async def run_one(index: int, start: bool) -> None:
            inputs = {
                graph.ids[p]: proceeded[p] for p in predecessors.get(index, []) if p in proceeded
            }
            if not start and not inputs:
                result.skipped.append(graph.ids[index])
                return
            async with gate:
                outcome = await self._execute(
                    graph.ids[index], inputs, value if start else None, result
                )
            if outcome is not None and outcome.proceed:
                proceeded[index] = outcome.value
                result.outcomes[graph.ids[index]] = outcome.value

        for depth, wave in enumerate(plan):
            await asyncio.gather(*(run_one(i, depth == 0) for i in wave))

    async def _execute(
        self, node_id: str, inputs: dict[str, Any], value: Any, result: ChainResult
    ) -> Outcome | None:
        try:
            node = self.doc.get(node_id)
        except KrillError as exc:
            result.errors[node_id] = str(exc)
            return None
        processor = self.processors.get(node.type)
        if processor is None:
            result.errors[node_id] = f"no processor for node type {node.type.value}"
            return None
        self.metrics.node_executions.labels(node.type.value).inc()
        result.ran.append(node_id)
        try:
            async with asyncio.timeout(self.options.node_timeout):
                outcome = await processor.run(Context(node, self.host, inputs, value))
        except TimeoutError:
            message = f"timed out after {self.options.node_timeout:g} s"
        except ProcessorError as exc:
            message = str(exc)
        except Exception as exc:  # a processor bug must not take the chain down
            log.exception("host doc %s: processor of node %s failed", self.doc.host, node_id)
            message = f"{type(exc).__name__}: {exc}"
        else:
            # Clear a failure this node recorded before (its state says so: no map lookup).
            if node.state is NodeState.ERROR:
                self._mark(node_id, NodeState.NONE, None)
            return outcome
        self.metrics.processor_errors.labels(node.type.value).inc()
        result.errors[node_id] = message
        log.warning("host doc %s: node %s failed: %s", self.doc.host, node_id, message)
        self._mark(node_id, NodeState.ERROR, message)
        return None

    def _mark(self, node_id: str, state: NodeState, message: str | None) -> None:
        """Record a node's error state and message in the host doc (one transaction)."""
        try:
            self.doc.set_error(node_id, state, message)
        except (KrillError, PlanError) as exc:
            log.debug("host doc %s: could not mark node %s: %s", self.doc.host, node_id, exc)
