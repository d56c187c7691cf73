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

Running a wave: a node runs only if the chain started at it or at least one of its
predecessors in the chain ran and decided to proceed (a threshold that did not cross stops its
branch, not the chain). A failing node is put in ERROR with its message recorded in the host
doc's ``errors`` map; its branch stops, unrelated branches go on. Only the host of a node
executes it: the executor only ever plans nodes of the host doc it was given.

Most processors finish without waiting on anything but the host's own writes, and paying for
a task, a semaphore and a timer per node would cost more than their work. A processor that
says so (``inline = True``) is stepped in place: its coroutine runs up to its first real
suspension, and one that returns by then never needs a task or a timeout, since it cannot
hang. A coroutine that does suspend is handed to a task from where it stopped and from then on
is treated like every other processor: it runs in a task, at most
:attr:`ExecutorOptions.concurrency` at once, each cut off at its own deadline (its
processor's :meth:`timeout`, else the executor's), all watched by one ``asyncio.wait`` per
wake-up rather than a timer per node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._core.planner import ChainGraph
from ..errors import ChainCycleError, KrillError, NodeNotFoundError, PlanError
from ..metrics import Metrics
from ..model import CATALOG, Category, ChainMeta, ExecutorMeta, Node, NodeState, NodeType
from ..store.hostdoc import HostDoc
from ..store.origin import Origin
from .processors.base import Context, Outcome, Processor, ProcessorError, ProcessorHost

__all__ = ["ChainExecutor", "ChainResult", "ExecutorOptions"]

log = logging.getLogger("krill.runtime")

_CHAIN_CATEGORIES = frozenset({Category.TRIGGER, Category.EXECUTOR})


@dataclass(frozen=True, slots=True)
class ExecutorOptions:
    """Limits of chain execution.

    Attributes:
        node_timeout: seconds one processor may run unless its processor declares its own
            (see :meth:`~krill_crdt.runtime.processors.base.Processor.timeout`; an outgoing
            webhook declares its worst case of attempts and pauses). 10 s: far shorter than
            a person waits for a button, long enough for a serial device or a broker to answer.
        chain_timeout: seconds a whole chain may run (60 s). It bounds every node too.
        concurrency: processors of one wave waiting at once (16: enough to overlap network
            waits, few enough not to swamp a Pi's event loop). Processors stepped in place
            finish before the next one starts and do not count.
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
        ran: ids of the nodes whose processor ran, in the order they started.
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

    __slots__ = ("edges", "graph", "ids", "index", "predecessors")

    def __init__(self, nodes: list[Node]) -> None:
        self.ids = [n.id for n in nodes]
        self.index = {node_id: i for i, node_id in enumerate(self.ids)}
        self.edges = _successor_edges(nodes, self.index)
        self.graph = ChainGraph.from_edges(
            len(self.ids), [s for s, _ in self.edges], [d for _, d in self.edges]
        )
        before: list[list[int]] = [[] for _ in self.ids]
        for src, dst in self.edges:
            before[dst].append(src)
        self.predecessors = [tuple(p) for p in before]


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


class _Resume:
    """Continues a coroutine that was stepped in place and suspended, inside a task.

    The coroutine already yielded ``pending`` (the future it waits for, or None for a bare
    yield); this hands that to the task as if the task had run the first step itself, then
    drives the coroutine on, passing in whatever the task throws (a cancellation).
    """

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Outcome], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, None, Outcome]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                yield pending
            except BaseException as exc:  # what the task throws in goes to the coroutine
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                continue
            try:
                pending = coro.send(None)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


async def _resumed(coro: Coroutine[Any, Any, Outcome], pending: Any) -> Outcome:
    return await _Resume(coro, pending)


@dataclass(slots=True)
class _Waiting:
    """A processor running in a task: whose it is and when it is cut off."""

    index: int
    node: Node
    timeout: float
    deadline: float
    timed_out: bool = False


@dataclass(slots=True)
class _Invocation:
    """The state of one invocation that its waves share."""

    graph: _Graph
    result: ChainResult
    value: Any
    #: Planned node index -> the value it passed on, for the nodes that proceeded.
    proceeded: dict[int, Any] = field(default_factory=dict)
    #: The current wave's processors running in tasks.
    waiting: dict[asyncio.Task[Outcome], _Waiting] = field(default_factory=dict)


class _Kind:
    """What the executor needs to know about one node type, looked up once."""

    __slots__ = ("errors", "executions", "inline", "processor", "timeout")

    def __init__(self, processor: Processor, metrics: Metrics, type_: NodeType) -> None:
        self.processor = processor
        self.inline = bool(getattr(processor, "inline", False))
        self.timeout: Callable[[Node], float | None] | None = getattr(processor, "timeout", None)
        self.executions = metrics.node_executions.labels(type_.value)
        self.errors = metrics.processor_errors.labels(type_.value)


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
        # Any write to the doc may have changed an edge; until one happens the graph of the
        # last plan is known to be current and is not checked again.
        self._graph_current = False
        self._kinds: dict[NodeType, _Kind | None] = {}
        doc.on_update(self._on_doc_update)

    async def invoke(self, node_id: str, value: Any = None) -> ChainResult:
        """Run the chain that starts at ``node_id``.

        Returns:
            What ran, what each node passed on, what failed.

        Raises:
            NodeNotFoundError: the node is not in this host doc (route the invoke to its host).
            PlanError: the chain cannot be planned (a cycle: its nodes are put in ERROR).
            TimeoutError: the whole chain took longer than the chain timeout; what was still
                running is cancelled.
        """
        if node_id not in self.doc:
            raise NodeNotFoundError(f"no node {node_id!r} in host doc {self.doc.host!r}")
        plan, graph = self._plan(node_id)
        run = _Invocation(graph, ChainResult(start=node_id), value)
        async with asyncio.timeout(self.options.chain_timeout):
            for depth, wave in enumerate(plan):
                await self._run_wave(run, wave, start=depth == 0)
        return run.result

    def _on_doc_update(self, update: bytes, origin: Origin) -> None:
        self._graph_current = False

    def _plan(self, start: str) -> tuple[list[list[int]], _Graph]:
        graph = self._graph
        if graph is None or not self._graph_current:
            nodes = self.doc.list_nodes()
            if (
                graph is None
                or graph.ids != [n.id for n in nodes]
                or graph.edges != _successor_edges(nodes, graph.index)
            ):
                graph = self._graph = _Graph(nodes)
            self._graph_current = True
        try:
            return graph.graph.plan(graph.index[start]), graph
        except ChainCycleError as exc:
            ring = [graph.ids[i] for i in exc.cycle]
            message = f"chain dependencies form a cycle: {' -> '.join(ring + ring[:1])}"
            log.warning("host doc %s: %s", self.doc.host, message)
            for node_id in ring:
                self._mark(node_id, NodeState.ERROR, message)
            raise ChainCycleError(exc.cycle, message) from None

    async def _run_wave(self, run: _Invocation, wave: list[int], *, start: bool) -> None:
        """Run one wave: processors stepped in place run one after the other, the others
        (and those that suspended) in tasks; return when every one of them is done."""
        ids, predecessors, proceeded = run.graph.ids, run.graph.predecessors, run.proceeded
        waiting = run.waiting
        # Executions are counted once per wave and type: a counter's lock per node would cost
        # as much as a trivial processor's whole run.
        started: dict[_Kind, int] = {}
        try:
            for index in wave:
                # Step 1: does this node run at all, and with what?
                node_id = ids[index]
                inputs = {ids[p]: proceeded[p] for p in predecessors[index] if p in proceeded}
                if not start and not inputs:
                    run.result.skipped.append(node_id)
                    continue
                ready = self._ready(node_id, run.result)
                if ready is None:
                    continue
                node, kind = ready
                if len(waiting) >= self.options.concurrency:
                    await self._reap(run, self.options.concurrency - 1)
                started[kind] = started.get(kind, 0) + 1
                run.result.ran.append(node_id)
                ctx = Context(node, self.host, inputs, run.value if start else None)

                # Step 2: step it in place if it says it may be, else give it a task.
                # NOTE: a processor stepped in place runs in the chain's context, not a copy:
                # NOTE: a context variable it sets is seen by the processors after it. None of
                # NOTE: ours sets one; a custom inline processor that does must reset it.
                if kind.inline:
                    coro = kind.processor.run(ctx)
                    try:
                        pending = coro.send(None)
                    except StopIteration as stop:
                        self._succeeded(run, index, node, stop.value)
                        continue
                    except Exception as exc:
                        self._failed(run, node, kind, self._message(node, exc))
                        continue
                    task = asyncio.ensure_future(_resumed(coro, pending))
                else:
                    task = asyncio.ensure_future(kind.processor.run(ctx))
                timeout = self._timeout_of(node, kind)
                deadline = asyncio.get_running_loop().time() + timeout
                waiting[task] = _Waiting(index, node, timeout, deadline)

            # Step 3: wait for what still runs.
            await self._reap(run, 0)
        finally:
            for kind, count in started.items():
                kind.executions.inc(count)
            # Only a cancellation (the chain's timeout, the caller) leaves tasks behind.
            for task in waiting:
                task.cancel()
                task.add_done_callback(_consume)
            waiting.clear()

    async def _reap(self, run: _Invocation, room: int) -> None:
        """Wait until at most ``room`` tasks run, settling each that ends and cancelling each
        that passes its deadline."""
        loop = asyncio.get_running_loop()
        waiting = run.waiting
        while len(waiting) > room:
            deadlines = [w.deadline for w in waiting.values() if not w.timed_out]
            wait = max(0.0, min(deadlines) - loop.time()) if deadlines else None
            done, _ = await asyncio.wait(waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self._settle(run, task, waiting.pop(task))
            now = loop.time()
            for task, entry in waiting.items():
                if not entry.timed_out and entry.deadline <= now:
                    entry.timed_out = True
                    task.cancel()

    def _settle(self, run: _Invocation, task: asyncio.Task[Outcome], entry: _Waiting) -> None:
        node = entry.node
        kind = self._kinds[node.type]
        assert kind is not None
        if task.cancelled():
            timed_out = f"timed out after {entry.timeout:g} s"
            self._failed(run, node, kind, timed_out if entry.timed_out else "cancelled")
            return
        error = task.exception()
        if error is not None:
            self._failed(run, node, kind, self._message(node, error))
            return
        self._succeeded(run, entry.index, node, task.result())

    def _ready(self, node_id: str, result: ChainResult) -> tuple[Node, _Kind] | None:
        """The node as it is now and its processor; None (with the error recorded) if either
        is missing."""
        try:
            node = self.doc.get(node_id)
        except KrillError as exc:
            result.errors[node_id] = str(exc)
            return None
        try:
            kind = self._kinds[node.type]
        except KeyError:
            processor = self.processors.get(node.type)
            kind = None if processor is None else _Kind(processor, self.metrics, node.type)
            self._kinds[node.type] = kind
        if kind is None:
            result.errors[node_id] = f"no processor for node type {node.type.value}"
            return None
        return node, kind

    def _timeout_of(self, node: Node, kind: _Kind) -> float:
        if kind.timeout is not None:
            try:
                declared = kind.timeout(node)
            except Exception:  # a broken declaration must not stop the chain
                log.exception("host doc %s: timeout of node %s unreadable", self.doc.host, node.id)
                declared = None
            if declared is not None and declared > 0:
                return declared
        return self.options.node_timeout

    def _succeeded(self, run: _Invocation, index: int, node: Node, outcome: Outcome) -> None:
        # Clear a failure this node recorded before (its state says so: no map lookup).
        if node.state is NodeState.ERROR:
            self._mark(node.id, NodeState.NONE, None)
        if outcome is not None and outcome.proceed:
            run.proceeded[index] = outcome.value
            run.result.outcomes[node.id] = outcome.value

    def _message(self, node: Node, error: BaseException) -> str:
        """The error text a processor's exception leaves on its node.

        Raises:
            BaseException: ``error`` itself when it is not an :class:`Exception`
                (KeyboardInterrupt and the like are not the processor's to swallow).
        """
        if isinstance(error, ProcessorError):
            return str(error)
        if isinstance(error, TimeoutError):
            return str(error) or "timed out"
        if not isinstance(error, Exception):
            raise error
        # A processor bug must not take the chain down; its traceback goes to the log.
        log.error(
            "host doc %s: processor of node %s failed", self.doc.host, node.id, exc_info=error
        )
        return f"{type(error).__name__}: {error}"

    def _failed(self, run: _Invocation, node: Node, kind: _Kind, message: str) -> None:
        kind.errors.inc()
        run.result.errors[node.id] = message
        log.warning("host doc %s: node %s failed: %s", self.doc.host, node.id, message)
        self._mark(node.id, NodeState.ERROR, message)

    def _mark(self, node_id: str, state: NodeState, message: str | None) -> None:
        """Record a node's error state and message in the host doc (one transaction)."""
        try:
            self.doc.set_error(node_id, state, message)
        except (KrillError, PlanError) as exc:
            log.debug("host doc %s: could not mark node %s: %s", self.doc.host, node_id, exc)


def _consume(task: asyncio.Future[Any]) -> None:
    # A task cancelled with its chain ends unobserved; fetch its end so asyncio does not log
    # it as a lost exception.
    if not task.cancelled():
        task.exception()
