"""The executor's fast path: processors stepped in place keep every guarantee of the others."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from krill_crdt.model import Node, NodeState, NodeType
from krill_crdt.runtime.executor import ChainExecutor, ExecutorOptions
from krill_crdt.runtime.processors.base import Context, Outcome
from krill_crdt.runtime.processors.executors import OutgoingWebHookProcessor
from tests.runtime.test_executor import Host, Recorder, build, button, executor, tree


class InlineRecorder(Recorder):
    """A Recorder the executor steps in place; ``asyncio.sleep(0)`` makes it suspend once."""

    inline: ClassVar[bool] = True


class Slow:
    """Takes ``seconds`` unless the node says otherwise; declares its own timeout."""

    type: ClassVar[NodeType] = NodeType.Button

    def __init__(self, seconds: float, timeout: float | None) -> None:
        self.seconds = seconds
        self.declared = timeout
        self.running = 0
        self.most = 0

    def timeout(self, node: Node) -> float | None:
        return self.declared

    async def run(self, ctx: Context) -> Outcome:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        return Outcome(proceed=True)


async def test_inline_processors_run_each_node_of_a_tree_once_and_count_it() -> None:
    nodes = tree(depth=5, fan_out=3)
    recorder = InlineRecorder()
    run = executor(build(nodes), recorder)

    result = await run.invoke("t")

    assert len(result.ran) == len(nodes)
    assert set(recorder.runs.values()) == {1}
    assert run.metrics.value("krill_node_executions_total", type="Button") == len(nodes)


async def test_inline_processors_run_wave_after_wave() -> None:
    nodes = [button("root", ("a", "b")), button("a", ("c",)), button("b", ("c",)), button("c")]
    recorder = InlineRecorder()

    result = await executor(build(nodes), recorder).invoke("root")

    assert recorder.order.index("c") > max(recorder.order.index("a"), recorder.order.index("b"))
    assert result.outcomes["c"] == 2  # both branches reached it before it ran


async def test_an_inline_processor_that_hangs_is_cut_off_and_its_branch_alone_stops() -> None:
    nodes = [button("root", ("stuck", "fine")), button("stuck", ("after",)), button("fine")]
    nodes.append(button("after"))
    doc = build(nodes)
    recorder = InlineRecorder()
    recorder.hang.add("stuck")

    result = await executor(doc, recorder, node_timeout=0.2).invoke("root")

    assert result.errors == {"stuck": "timed out after 0.2 s"}
    assert recorder.runs["fine"] == 1
    assert recorder.runs["after"] == 0
    assert doc.get("stuck").state is NodeState.ERROR


async def test_an_inline_processor_that_fails_at_once_stops_only_its_branch() -> None:
    nodes = [button("root", ("bad", "good")), button("bad", ("after",)), button("good")]
    nodes.append(button("after"))
    doc = build(nodes)
    recorder = InlineRecorder()
    recorder.fail.add("bad")

    result = await executor(doc, recorder).invoke("root")

    assert result.errors == {"bad": "bad is broken"}
    assert recorder.runs["good"] == 1
    assert result.skipped == ["after"]
    assert doc.errors["bad"] == "bad is broken"


async def test_a_declared_timeout_replaces_the_executors() -> None:
    doc = build([button("root", ("slow",)), button("slow")])
    slow = Slow(seconds=0.3, timeout=1.0)
    run = ChainExecutor(
        doc, Host(), dict.fromkeys(NodeType, slow), options=ExecutorOptions(node_timeout=0.1)
    )

    result = await run.invoke("root")

    assert result.errors == {}
    assert result.ran == ["root", "slow"]


async def test_waiting_processors_never_exceed_the_concurrency_bound() -> None:
    doc = build([button("root", tuple(f"leaf{i}" for i in range(12))),
                 *(button(f"leaf{i}") for i in range(12))])  # fmt: skip
    slow = Slow(seconds=0.02, timeout=None)
    run = ChainExecutor(
        doc, Host(), dict.fromkeys(NodeType, slow), options=ExecutorOptions(concurrency=3)
    )

    result = await run.invoke("root")

    assert len(result.ran) == 13 and not result.errors
    assert slow.most == 3


async def test_the_chain_timeout_cancels_what_still_runs() -> None:
    doc = build([button("root", ("slow",)), button("slow")])
    slow = Slow(seconds=5.0, timeout=None)
    run = ChainExecutor(
        doc, Host(), dict.fromkeys(NodeType, slow), options=ExecutorOptions(chain_timeout=0.2)
    )
    with pytest.raises(TimeoutError):
        await run.invoke("root")
    await asyncio.sleep(0.01)  # let the cancelled task finish
    assert slow.running == 0


def test_an_outgoing_webhook_declares_its_worst_case_as_its_timeout() -> None:
    node = Node.new(
        NodeType.OutgoingWebHook,
        host="h",
        parent="h",
        id="hook",
        meta={"url": "http://127.0.0.1:9/x", "timeout_ms": 5000, "retries": 2},
    )
    # Three attempts of 5 s, pauses of 0.5 s and 1 s, and a second of margin.
    assert OutgoingWebHookProcessor().timeout(node) == 17.5
    assert OutgoingWebHookProcessor().timeout(node) > ExecutorOptions().node_timeout
