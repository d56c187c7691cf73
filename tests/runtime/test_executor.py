"""Chain execution: each node once per invocation, waves in order, cycles refused, timeouts."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from krill_crdt.errors import ChainCycleError, NodeNotFoundError
from krill_crdt.metrics import Metrics
from krill_crdt.model import Node, NodeState, NodeType
from krill_crdt.runtime.executor import ChainExecutor, ExecutorOptions
from krill_crdt.runtime.processors.base import Context, Outcome, ProcessorError
from krill_crdt.store import Create, HostDoc

HOST = "exec-host"


class Recorder:
    """A processor for every node type that counts runs; some nodes misbehave on purpose."""

    type: ClassVar[NodeType] = NodeType.Button

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.order: list[str] = []
        self.hang: set[str] = set()
        self.fail: set[str] = set()
        self.stop: set[str] = set()

    async def run(self, ctx: Context) -> Outcome:
        node_id = ctx.node.id
        self.runs[node_id] += 1
        self.order.append(node_id)
        if node_id in self.hang:
            await asyncio.sleep(3600)
        if node_id in self.fail:
            raise ProcessorError(f"{node_id} is broken")
        await asyncio.sleep(0)
        return Outcome(proceed=node_id not in self.stop, value=len(ctx.inputs))


class Host:
    def get(self, node_id: str) -> Node:
        raise NotImplementedError

    async def update(self, node_id: str, changes: Mapping[str, Any]) -> Node:
        raise NotImplementedError

    def now(self) -> float:
        return 0.0

    def resource(self, name: str) -> Any:
        raise KeyError(name)


def button(node_id: str, targets: tuple[str, ...] = ()) -> Node:
    return Node.new(NodeType.Button, host=HOST, parent=HOST, id=node_id, meta={"targets": targets})


def build(nodes: list[Node]) -> HostDoc:
    doc = HostDoc(HOST)
    doc.batch([Create(Node.new(NodeType.Server, host=HOST, id=HOST)), *(Create(n) for n in nodes)])
    return doc


def executor(doc: HostDoc, recorder: Recorder, **options: float) -> ChainExecutor:
    registry = dict.fromkeys(NodeType, recorder)
    return ChainExecutor(
        doc, Host(), registry, metrics=Metrics(), options=ExecutorOptions(**options)
    )


def tree(depth: int, fan_out: int) -> list[Node]:
    nodes: list[Node] = []
    level = ["t"]
    for _ in range(depth):
        below = [f"{parent}.{k}" for parent in level for k in range(fan_out)]
        for parent in level:
            nodes.append(button(parent, tuple(f"{parent}.{k}" for k in range(fan_out))))
        level = below
    nodes.extend(button(leaf) for leaf in level)
    return nodes


def lattice(depth: int) -> list[Node]:
    """Two nodes per layer, each wired to both of the next: 2**depth paths to the bottom."""
    nodes = []
    for layer in range(depth):
        nxt = (f"l{layer + 1}a", f"l{layer + 1}b")
        nodes += [button(f"l{layer}a", nxt), button(f"l{layer}b", nxt)]
    nodes += [button(f"l{depth}a"), button(f"l{depth}b")]
    nodes.append(button("top", ("l0a", "l0b")))
    return nodes


async def test_every_node_of_a_tree_runs_exactly_once() -> None:
    nodes = tree(depth=6, fan_out=3)
    recorder = Recorder()
    run = executor(build(nodes), recorder)

    result = await run.invoke("t")

    assert len(result.ran) == len(nodes) == sum(3**k for k in range(7))
    assert set(recorder.runs.values()) == {1}
    executions = run.metrics.value("krill_node_executions_total", type="Button")
    assert executions == len(nodes)


@pytest.mark.slow
async def test_every_node_of_a_depth_10_fan_out_3_tree_runs_exactly_once() -> None:
    nodes = tree(depth=10, fan_out=3)
    recorder = Recorder()
    run = executor(build(nodes), recorder, chain_timeout=300)
    result = await run.invoke("t")
    assert len(result.ran) == len(nodes) == sum(3**k for k in range(11))
    assert set(recorder.runs.values()) == {1}


async def test_a_diamond_lattice_runs_each_node_once_not_once_per_path() -> None:
    recorder = Recorder()
    run = executor(build(lattice(20)), recorder)

    result = await run.invoke("top")

    assert len(result.ran) == 1 + 2 * 21
    assert max(recorder.runs.values()) == 1
    # A node runs only after everything before it in the chain.
    position = {node_id: i for i, node_id in enumerate(recorder.order)}
    for layer in range(20):
        for a in "ab":
            for b in "ab":
                assert position[f"l{layer}{a}"] < position[f"l{layer + 1}{b}"]


async def test_a_cycle_is_reported_with_its_nodes_and_nothing_runs() -> None:
    nodes = [button("start", ("x",)), button("x", ("y",)), button("y", ("x",))]
    doc = build(nodes)
    recorder = Recorder()

    with pytest.raises(ChainCycleError) as caught:
        await executor(doc, recorder).invoke("start")

    assert "x -> y -> x" in str(caught.value)
    assert recorder.runs == Counter()
    assert doc.get("x").state is NodeState.ERROR
    assert "cycle" in doc.errors["y"]


async def test_a_hanging_processor_is_cut_off_and_other_branches_go_on() -> None:
    nodes = [
        button("root", ("stuck", "fine")),
        button("stuck", ("after",)),
        button("fine"),
        button("after"),
    ]
    doc = build(nodes)
    recorder = Recorder()
    recorder.hang.add("stuck")

    result = await executor(doc, recorder, node_timeout=0.2).invoke("root")

    assert "timed out" in result.errors["stuck"]
    assert recorder.runs["fine"] == 1
    assert recorder.runs["after"] == 0
    assert doc.get("stuck").state is NodeState.ERROR
    assert "timed out" in doc.errors["stuck"]


async def test_a_failure_is_cleared_by_the_next_success() -> None:
    doc = build([button("flaky")])
    recorder = Recorder()
    run = executor(doc, recorder)
    recorder.fail.add("flaky")
    await run.invoke("flaky")
    assert doc.get("flaky").state is NodeState.ERROR

    recorder.fail.clear()
    await run.invoke("flaky")
    assert doc.get("flaky").state is NodeState.NONE
    assert "flaky" not in doc.errors
    assert run.metrics.value("krill_processor_errors_total", type="Button") == 1


async def test_a_node_that_does_not_proceed_stops_only_its_own_branch() -> None:
    nodes = [
        button("root", ("gate", "other")),
        button("gate", ("behind",)),
        button("other"),
        button("behind"),
    ]
    recorder = Recorder()
    recorder.stop.add("gate")

    result = await executor(build(nodes), recorder).invoke("root")

    assert recorder.runs["other"] == 1
    assert recorder.runs["behind"] == 0
    assert result.skipped == ["behind"]


async def test_a_node_fed_by_two_branches_sees_both_inputs() -> None:
    nodes = [
        button("root", ("left", "right")),
        button("left", ("join",)),
        button("right", ("join",)),
        button("join"),
    ]
    result = await executor(build(nodes), Recorder()).invoke("root")
    assert result.outcomes["join"] == 2


async def test_invoking_a_node_of_another_host_is_refused_here() -> None:
    with pytest.raises(NodeNotFoundError):
        await executor(build([]), Recorder()).invoke("elsewhere")
