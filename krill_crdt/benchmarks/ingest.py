"""Ingest cases: remote updates through our whole receive path against raw pycrdt.

The input is what a peer receives from one busy remote host: 1000 Yjs updates made on a
writer host doc, the first creating 100 Project nodes, the other 999 each changing one field
(name, state or meta) of one of them, as ``Peer.update`` calls produce them. Both variants
apply the same updates to a fresh, empty document in every batch (a fresh host doc id for
ours), so every batch does the same work.

``ingest`` ("compiled" column, ours): each update arrives as one UPDATE frame, built and MAC'd
beforehand with ``encode_frame``, and goes through ``SyncEngine.receive`` inside a running
event loop: decode and MAC check, swarm check, replay window, access check, apply into the
host doc of a :class:`~krill_crdt.store.Store` in a temporary directory through ``StoreDocs``
(orphan and cycle rules included), the update listener that appends it to the SQLite log, the
node observer that feeds a change stream (drained at the end of the batch), and the relay
decision. The batch ends when the log has committed everything (``Store.flush``, one fsync).
The "python" column is raw pycrdt: ``Doc.apply_update`` of the same updates, one by one.

``ingest_batched``: the same 1000 updates, merged by the sender into frames of 100 (10 frames
a batch) with ``merge_updates``; the baseline applies the same 10 merged updates to a bare
``Doc``. Both count 1000 updates a batch.
"""

from __future__ import annotations

import itertools
import random
import time
from functools import lru_cache
from typing import Any

from pycrdt import Doc, merge_updates

from krill_crdt.benchmarks import Batch, Case, Variant
from krill_crdt.benchmarks._rig import LoopRig
from krill_crdt.model import Node, NodeState, NodeType
from krill_crdt.store import Create, HostDoc, LogOptions, Store
from krill_crdt.store.changes import ChangeStream

__all__ = ["CASES", "MERGE", "UPDATES", "remote_updates"]

#: Updates per batch.
UPDATES = 1000
#: Nodes the first update creates; the others change one field of one of them.
NODES = 100
#: Updates per merged frame in ``ingest_batched``.
MERGE = 100
#: Fixed seed and Yjs client id: every run measures the same updates.
SEED = 20_260_102
WRITER_CLIENT_ID = 0x4B52
#: Host docs whose frames are built when a variant is set up. A batch takes a fresh one; a
#: run that uses them all builds more inside a batch (a slower round, which the median
#: ignores). 64 covers the default budget with room to spare.
PREBUILT_DOCS = 64

KEY = bytes(range(32))
SWARM = 0x6B72696C
ORIGIN = bytes.fromhex("6b72696c6c2d696e67657374000000aa")


@lru_cache(maxsize=1)
def remote_updates() -> tuple[bytes, ...]:
    """Return the 1000 updates of the remote writer (made once, shared by every variant)."""
    rng = random.Random(SEED)
    writer = HostDoc("remote", clock=lambda: 1_767_225_600.0, client_id=WRITER_CLIENT_ID)
    captured: list[bytes] = []
    writer.on_update(lambda update, origin: captured.append(update))
    ids = [f"node-{i:03d}" for i in range(NODES)]
    writer.create(Node.new(NodeType.Server, host="remote", id="remote", name="remote"))
    captured.clear()
    writer.batch(
        [
            Create(Node.new(NodeType.Project, host="remote", parent="remote", id=i, name=i))
            for i in ids
        ]
    )
    # The server node and the creations travel together, as a first delta would.
    first = writer.diff()
    captured.clear()
    states = list(NodeState)
    for step in range(UPDATES - 1):
        node_id = ids[rng.randrange(NODES)]
        roll = rng.random()
        if roll < 0.5:
            writer.update(node_id, {"name": f"{node_id} #{step}"})
        elif roll < 0.8:
            writer.update(node_id, {"state": states[rng.randrange(len(states))]})
        else:
            writer.update(node_id, {"meta": {"description": f"step {step}"}})
    writer.close()
    return (first, *captured)


def _merged(updates: tuple[bytes, ...]) -> tuple[bytes, ...]:
    return tuple(
        merge_updates(*updates[start : start + MERGE]) for start in range(0, len(updates), MERGE)
    )


class _Frames:
    """Frames of the remote updates, one fresh host doc id per batch."""

    def __init__(self, payloads: tuple[bytes, ...]) -> None:
        from krill_crdt._core.codec import Kind, encode_frame

        self._encode = encode_frame
        self._kind = Kind.UPDATE
        self._payloads = payloads
        self._seq = itertools.count(1)
        self._docs = itertools.count(1)
        self._ready: list[tuple[str, list[bytes]]] = [self._build() for _ in range(PREBUILT_DOCS)]
        self._ready.reverse()

    def _build(self) -> tuple[str, list[bytes]]:
        doc = f"ingest-{next(self._docs):05d}"
        ts = 1_767_225_600_000
        frames = [
            self._encode(self._kind, ORIGIN, SWARM, next(self._seq), ts, doc, payload, KEY)
            for payload in self._payloads
        ]
        return doc, frames

    def take(self) -> tuple[str, list[bytes]]:
        return self._ready.pop() if self._ready else self._build()


def _ours(payloads_of: str) -> Variant:
    def factory() -> Batch:
        from krill_crdt.sync.docs import StoreDocs
        from krill_crdt.sync.engine import SyncEngine
        from krill_crdt.sync.link import Link

        payloads = remote_updates() if payloads_of == "single" else _merged(remote_updates())
        frames = _Frames(payloads)
        rig = LoopRig()
        store = Store(rig.workdir / "store", options=LogOptions(fsync="batch"))
        rig.run(store.open())
        rig.on_close(store.close)
        streams: list[ChangeStream] = []
        store.on_new_doc(lambda doc: streams.append(doc.changes()))
        engine = SyncEngine(
            bytes(16),
            key=KEY,
            swarm=SWARM,
            docs=StoreDocs(store),
            now=time.time(),
            transports={"ws": False},
        )
        link = Link("ws", ORIGIN)

        async def ingest() -> int:
            _doc, batch = frames.take()
            receive = engine.receive
            now = time.time()
            for data in batch:
                receive(data, link, now)
            engine.drain()
            await store.flush()
            for stream in streams:
                await _drain(stream)
            streams.clear()
            return UPDATES

        return rig.batch(ingest)

    return factory


async def _drain(stream: ChangeStream) -> int:
    # What a consumer does: read every queued event (closing first ends the iteration there).
    stream.close()
    count = 0
    async for _change in stream:
        count += 1
    return count


def _raw(payloads_of: str) -> Variant:
    def factory() -> Batch:
        payloads = remote_updates() if payloads_of == "single" else _merged(remote_updates())

        def apply_all() -> int:
            doc: Doc[Any] = Doc()
            apply = doc.apply_update
            for update in payloads:
                apply(update)
            return UPDATES

        return apply_all

    return factory


CASES: list[Case] = [
    Case(
        "ingest",
        "updates/s",
        compiled=_ours("single"),
        python=_raw("single"),
        note=(
            "1000 remote updates, one frame each: decode+MAC, dedup, apply to a host doc, SQLite "
            "log (batch fsync), change stream; vs raw pycrdt apply_update one by one"
        ),
    ),
    Case(
        "ingest_batched",
        "updates/s",
        compiled=_ours("merged"),
        python=_raw("merged"),
        note=(
            "the same 1000 updates merged by the sender into frames of 100, through the same "
            "path; vs raw pycrdt applying the same 10 merged updates"
        ),
    ),
]
