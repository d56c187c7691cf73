"""A Debounce filter on a running peer: values held back on the host, released after quiet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pytest

from krill_crdt.model import DataPointMeta, Node, NodeType
from krill_crdt.runtime.config import DiscoveryConfig, PeerConfig
from krill_crdt.runtime.peer import Peer
from krill_crdt.runtime.processors import Context, Outcome
from tests.runtime.test_swarm import Swarm, wait_for

pytestmark = pytest.mark.timeout(60)

#: Short enough to keep the tests fast, long enough that a burst of invokes fits in it.
WINDOW_MS = 150


class Target:
    """Stands in for the Button a data point targets: records what each run was passed."""

    type: ClassVar[NodeType] = NodeType.Button
    inline: ClassVar[bool] = True

    def __init__(self) -> None:
        self.inputs: list[dict[str, Any]] = []

    async def run(self, ctx: Context) -> Outcome:
        self.inputs.append(dict(ctx.inputs))
        return Outcome()


@pytest.fixture
def target() -> Target:
    return Target()


@pytest.fixture
async def peer(tmp_path: Path, target: Target) -> AsyncIterator[Peer]:
    running = await Peer(config(tmp_path), processors={NodeType.Button: target}).start()
    try:
        await add(running, NodeType.Button, "bell", running.host)
        await add(running, NodeType.DataPoint, "door", running.host, targets=("bell",))
        await add(running, NodeType.Debounce, "bounce", "door", window_ms=WINDOW_MS)
        yield running
    finally:
        await running.stop()


def config(root: Path) -> PeerConfig:
    """A lone peer: no multicast, nobody to find."""
    base = Swarm(root).config("pi")
    return replace(base, discovery=DiscoveryConfig(multicast=False))


async def add(peer: Peer, type_: NodeType, node_id: str, parent: str, **meta: Any) -> Node:
    node = Node.new(type_, host=peer.host, parent=parent, id=node_id, meta=meta)
    return await peer.create(node)


def series(peer: Peer) -> list[tuple[float, Any]]:
    return peer.store.series.range("door")


def has_more(peer: Peer, recorded: int) -> bool:
    return len(series(peer)) > recorded


def snapshot(peer: Peer) -> tuple[Any, float | None]:
    meta = peer.get("door").meta
    assert isinstance(meta, DataPointMeta)
    return meta.snapshot_value, meta.snapshot_time


async def quiet() -> None:
    """Wait out a window and then some, long enough for a wrongly released value to show."""
    await asyncio.sleep(2 * WINDOW_MS / 1000)


async def test_a_burst_within_the_window_is_accepted_once_with_its_last_value(
    peer: Peer,
) -> None:
    for value in (1, 0, 1, 0):
        result = await peer.invoke("door", value)
        assert result is not None
        assert "door" not in result.outcomes

    await wait_for(lambda: len(series(peer)) == 1, timeout=5)
    await quiet()

    assert [value for _ts, value in series(peer)] == [0.0]
    assert snapshot(peer)[0] == 0.0


async def test_a_value_followed_by_silence_is_accepted_after_the_window(peer: Peer) -> None:
    before = time.time()
    await peer.invoke("door", 21.5)
    arrived_by = time.time()
    assert series(peer) == []

    waited = await wait_for(lambda: len(series(peer)) == 1, timeout=5)

    assert waited >= 0.8 * WINDOW_MS / 1000
    value, at = snapshot(peer)
    assert value == 21.5
    assert at is not None
    assert before <= at <= arrived_by
    assert series(peer) == [(at, 21.5)]


async def test_values_spaced_wider_than_the_window_are_all_accepted(peer: Peer) -> None:
    for value in (1.0, 0.0, 1.0):
        # Each waits until the one before is in: they are spaced by at least the window.
        recorded = len(series(peer))
        await peer.invoke("door", value)
        await wait_for(partial(has_more, peer, recorded), timeout=5)

    assert [value for _ts, value in series(peer)] == [1.0, 0.0, 1.0]


async def test_the_accepted_value_reaches_the_series_and_runs_the_targets_once(
    peer: Peer, target: Target
) -> None:
    await peer.invoke("door", 3)
    await peer.invoke("door", 4)

    await wait_for(lambda: len(target.inputs) == 1, timeout=5)
    await quiet()

    assert target.inputs == [{"door": 4.0}]
    assert [value for _ts, value in series(peer)] == [4.0]


async def test_a_stop_with_a_value_held_writes_nothing_afterwards(
    peer: Peer, target: Target
) -> None:
    await peer.update("bounce", {"meta": {"window_ms": 400}})
    await peer.invoke("door", 1)
    held_at = time.monotonic()

    # Started again at once, so the held value would be due while the peer runs.
    await peer.stop()
    await peer.start()
    assert time.monotonic() - held_at < 0.4
    await asyncio.sleep(0.6)

    assert snapshot(peer) == (None, None)
    assert series(peer) == []
    assert target.inputs == []
