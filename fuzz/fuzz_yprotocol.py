"""Fuzz target: y-protocols messages as a client sends them on ``/ws/{doc}``, and the Yjs
updates in them applied to a host doc.

Properties, for any input:

* ``decode_message``, ``decode_awareness`` and ``decode_state_vector`` return or raise a
  FrameError subclass, nothing else; what decodes, encodes to something that decodes the same;
* a step 1 leaves the host doc as it was, whatever its state vector;
* an update the host doc refuses raises UpdateRejectedError and leaves the doc's encoded
  state and state vector byte-identical;
* after an update it accepts, every node reads back or is reported unreadable with a
  ValidationError, no parent cycle is left and no node hangs under a deleted parent.

The first byte picks what the rest is: 0 a WebSocket message, handled as the ``/ws`` route
handles it; 1 an awareness update; 2 a state vector; 3 a raw Yjs update; 4 choices that
build a well-formed update full of odd node fields (so the fuzzer reaches the node rules
behind the Yjs decoder, which raw bytes rarely get past).
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project and fuzz/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pycrdt import Array, Doc, Map

from fuzz.common import ContractError, Draw, Target, expect
from krill_crdt.errors import (
    FrameError,
    UpdateRejectedError,
    ValidationError,
)
from krill_crdt.model import FIELDS, SCHEMA, Node, NodeState, NodeType
from krill_crdt.store.hostdoc import NODES_ROOT, TOMBSTONES_ROOT, HostDoc
from krill_crdt.store.origin import Origin
from krill_crdt.transport.yprotocol import (
    EMPTY_UPDATE,
    AwarenessUpdate,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    decode_message,
    decode_state_vector,
    encode_awareness,
    encode_message,
)

HOST = "host-a"
CLIENT = Origin("ws-client-1", "ws")
#: Modes, by the first input byte (mod 5).
MESSAGE, AWARENESS, STATE_VECTOR, RAW_UPDATE, BUILT_UPDATE = range(5)


def _clock() -> float:
    return 1_700_000_000.0


def _base() -> tuple[bytes, list[str]]:
    """A host doc with a small tree and one deleted node: the doc every input starts from."""
    doc = HostDoc(HOST, clock=_clock, client_id=11)
    server = doc.create(Node.new(NodeType.Server, host=HOST, id="srv"))
    project = doc.create(Node.new(NodeType.Project, host=HOST, parent=server.id, id="proj"))
    doc.create(Node.new(NodeType.Pin, host=HOST, parent=server.id, meta={"pin": 17}, id="pin17"))
    point = Node.new(NodeType.DataPoint, host=HOST, parent=project.id, id="dp", meta={"unit": "C"})
    doc.create(point)
    doc.create(Node.new(NodeType.Button, host=HOST, parent=project.id, id="gone"))
    doc.delete("gone")
    return doc.doc.get_update(), doc.ids()


BASE, BASE_IDS = _base()


# NOTE: pycrdt keeps a doc alive once anything observes it (a host doc always does), so
# NOTE: each host doc made costs some 30 KB for the life of the process. Inputs reuse one
# NOTE: until an update changes it, and the runner restarts the target now and then.
_spare: list[tuple[HostDoc, bytes]] = []


def _fresh() -> HostDoc:
    """A host doc holding the base state: the spare one if nothing changed it."""
    if _spare and _spare[0][0].doc.get_update() == _spare[0][1]:
        return _spare[0][0]
    doc = HostDoc(HOST, clock=_clock, client_id=12, initial=[BASE])
    _spare[:] = [(doc, doc.doc.get_update())]
    return doc


def _state(doc: HostDoc) -> tuple[bytes, bytes]:
    return doc.doc.get_update(), doc.doc.get_state()


# ------------------------------------------------------------------------------ properties


def _check_reads(doc: HostDoc) -> None:
    """Every node reads back or is reported unreadable; the tree rules hold."""
    doc.list_nodes()
    doc.unreadable()
    for node_id in doc.ids():
        expect(functools.partial(doc.find, node_id), (ValidationError,))
        doc.subtree_ids(node_id)
        doc.children(node_id)

    parents: dict[str, str | None] = {}
    tombstones = set(doc.tombstones.keys())
    for node_id, entry in doc.nodes.items():
        parent = entry.get("parent") if isinstance(entry, Map) else None
        parents[node_id] = parent if isinstance(parent, str) and parent else None
    for node_id, parent in parents.items():
        if parent is not None and parent not in parents and parent in tombstones:
            raise ContractError("a node is left under a deleted parent after repair")
        seen, ancestor = {node_id}, parent
        while ancestor is not None and ancestor in parents:
            if ancestor in seen:
                raise ContractError("a parent cycle is left after repair")
            seen.add(ancestor)
            ancestor = parents[ancestor]


def _apply(doc: HostDoc, update: bytes) -> None:
    before = _state(doc)
    _, error = expect(lambda: doc.apply(update, origin=CLIENT), (UpdateRejectedError,))
    if error is not None:
        if _state(doc) != before:
            raise ContractError("a refused update changed the host doc")
        return
    _check_reads(doc)


def _step1(doc: HostDoc, state_vector: bytes) -> None:
    before = _state(doc)
    expect(lambda: decode_state_vector(state_vector), (FrameError,))
    expect(lambda: doc.diff(state_vector), (UpdateRejectedError,))
    if _state(doc) != before:
        raise ContractError("answering a step 1 changed the host doc")


def _message(data: bytes) -> None:
    message, _ = expect(lambda: decode_message(data), (FrameError,))
    if message is None:
        return
    if decode_message(encode_message(message)) != message:
        raise ContractError("a decoded message does not survive encoding")
    if isinstance(message, SyncStep1):
        _step1(_fresh(), message.state_vector)
    elif isinstance(message, (SyncStep2, SyncUpdate)) and message.update != EMPTY_UPDATE:
        _apply(_fresh(), message.update)
    elif isinstance(message, AwarenessUpdate):
        _awareness(message.update)


def _awareness(update: bytes) -> None:
    entries, _ = expect(lambda: decode_awareness(update), (FrameError,))
    if entries is not None and decode_awareness(encode_awareness(entries)) != entries:
        raise ContractError("decoded awareness entries do not survive encoding")


# ---------------------------------------------------------------------- built updates

_IDS = (*BASE_IDS, "gone", "n1", "n2", "", " ", "a/b", "x" * 200, "\U0001f980", "null")
_STRINGS = (
    *(t.value for t in NodeType),
    *(s.value for s in NodeState),
    SCHEMA,
    "2.0",
    "1.99",
    "x.y",
    HOST,
    "host-b",
    "http://10.0.0.1:8442",
    "",
    "\x00",
    "é" * 40,
)
_NUMBERS = (0, 1, -1, 17, 53, 54, 2**31, 2**53, 1.5, -0.0, 1e308, math.inf, -math.inf, math.nan)
_META_KEYS = ("pin", "mode", "unit", "targets", "sources", "port", "expression", "interval_ms")


def _value(draw: Draw, depth: int = 0) -> Any:
    """A plain value, as any Yjs client can store it."""
    kind = draw.below(8 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return draw.flag()
    if kind == 2:
        return draw.choice(_NUMBERS)
    if kind == 3:
        return draw.choice(_STRINGS)
    if kind == 4:
        return draw.choice(_IDS)
    if kind == 5:
        return draw.text(24, unicode_only=True)
    if kind == 6:
        return [_value(draw, depth + 1) for _ in range(draw.below(4))]
    keys = (*_META_KEYS, draw.text(8, unicode_only=True))
    return {draw.choice(keys): _value(draw, depth + 1) for _ in range(draw.below(4))}


def _shared(draw: Draw) -> Any:
    """A value for a map entry: a plain value, or a nested shared map or array."""
    kind = draw.below(8)
    if kind == 0:
        return Map({draw.choice(_META_KEYS): _value(draw, 1) for _ in range(draw.below(3))})
    if kind == 1:
        return Array([_value(draw, 1) for _ in range(draw.below(3))])
    return _value(draw)


def _fields(draw: Draw) -> tuple[str, dict[str, Any]]:
    """Node fields: mostly the real ones with plausible values, sometimes anything."""
    node_id = draw.choice(_IDS)
    fields: dict[str, Any] = {
        "id": node_id,
        "parent": draw.choice((*_IDS, None)),
        "host": HOST,
        "type": draw.choice([t.value for t in NodeType]),
        "name": "",
        "state": NodeState.NONE.value,
        "meta": {},
        "updated": 1.0,
        "schema": SCHEMA,
    }
    for _ in range(draw.below(4)):
        key = draw.choice((*FIELDS, draw.text(6, unicode_only=True)))
        if draw.below(4) == 0:
            fields.pop(key, None)
        else:
            fields[key] = _shared(draw)
    return node_id, fields


def build_update(draw: Draw) -> bytes:
    """A well-formed update from another client: node writes chosen by ``draw``."""
    doc: Doc[Any] = Doc(client_id=99)
    doc.apply_update(BASE)
    nodes = doc.get(NODES_ROOT, type=Map)
    tombstones = doc.get(TOMBSTONES_ROOT, type=Map)
    before = doc.get_state()
    for _ in range(1 + draw.below(6)):
        op = draw.below(6)
        node_id = draw.choice(_IDS)
        if op == 0:
            new_id, fields = _fields(draw)
            nodes[new_id] = Map(fields)
        elif op == 1 and isinstance(nodes.get(node_id), Map):
            nodes[node_id][draw.choice(FIELDS)] = _shared(draw)
        elif op == 2 and node_id in nodes:
            del nodes[node_id]
        elif op == 3:
            nodes[node_id] = _shared(draw)
        elif op == 4:
            tombstones[node_id] = _shared(draw)
        elif isinstance(nodes.get(node_id), Map):
            # Re-parenting existing nodes is how concurrent moves make cycles.
            nodes[node_id]["parent"] = draw.choice(_IDS)
    return doc.get_update(before)


# ------------------------------------------------------------------------------ the target


def check_one(data: bytes) -> None:
    """Run one input through the ``/ws`` decoders and a host doc; raise on a finding."""
    mode, rest = (data[0] % 5, data[1:]) if data else (MESSAGE, b"")
    if mode == MESSAGE:
        _message(rest)
    elif mode == AWARENESS:
        _awareness(rest)
    elif mode == STATE_VECTOR:
        _step1(_fresh(), rest)
    elif mode == RAW_UPDATE:
        _apply(_fresh(), rest)
    else:
        _apply(_fresh(), build_update(Draw(rest)))


def seeds() -> list[bytes]:
    """Every message type, real updates of the base doc, awareness and state vectors."""
    writer = _fresh()
    before = writer.state_vector()
    writer.create(Node.new(NodeType.Pin, host=HOST, parent="srv", meta={"pin": 4}, id="pin4"))
    created = writer.diff(before)
    before = writer.state_vector()
    writer.update("pin4", {"name": "led", "state": "error"})
    updated = writer.diff(before)
    before = writer.state_vector()
    writer.delete("proj")
    deleted = writer.diff(before)
    awareness = encode_awareness([])
    messages = [
        encode_message(SyncStep1(b"\x00")),
        encode_message(SyncStep1(writer.state_vector())),
        encode_message(SyncStep2(EMPTY_UPDATE)),
        encode_message(SyncStep2(created)),
        encode_message(SyncUpdate(updated)),
        encode_message(SyncUpdate(deleted)),
        encode_message(AwarenessUpdate(awareness)),
        b"\x03",
        b"\x02\x00\x06denied",
    ]
    entries = b'\x02\x01\x05\x0b{"u":"ann"}\x02\x01\x04null'
    return (
        [bytes([MESSAGE]) + m for m in messages]
        + [bytes([AWARENESS]) + entries, bytes([STATE_VECTOR]) + writer.state_vector()]
        + [bytes([RAW_UPDATE]) + u for u in (created, updated, deleted)]
        + [bytes([BUILT_UPDATE]) + bytes(range(i, i + 40)) for i in (0, 40, 80)]
    )


TARGET = Target("yprotocol", check_one, seeds, max_len=4096, per_process=25_000)


if __name__ == "__main__":
    from fuzz.run import main

    sys.exit(main(["yprotocol", *sys.argv[1:]]))
