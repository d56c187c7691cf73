"""Fuzz target: JSON bodies of ``POST /node/{id}`` and the node model's validation.

The route's steps run here without a server: the body is parsed by the route's own parser,
then turned into a create (``HttpApi._node_to_create``) or an update
(``HttpApi._changes_to_apply``) and written to a host doc, exactly as the handler does.

Properties, for any input:

* a refused body raises the route's HTTP error with a 4xx status, or an error of the krill
  family; a ValidationError names its field, and its message says which;
* a refused body leaves the host doc byte-identical (encoded state and state vector);
* an accepted body's node reads back equal from the doc's encoded state;
* ``Node.from_json`` refuses only with ValidationError, and a node it reads survives its own
  JSON and fields.

The first byte picks what the rest is: 0 a raw body, 1 choices that build a JSON object of
plausible node fields (so the fuzzer reaches the rules behind the JSON parser), 2 raw JSON
for ``Node.from_json``. A second byte picks the node id in the path.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):  # run as a script: make the project and fuzz/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from fuzz.common import ContractError, Draw, Target, expect
from krill_crdt.errors import KrillError, NodeNotFoundError, ValidationError
from krill_crdt.metrics import Metrics
from krill_crdt.model import CATALOG, FIELDS, SCHEMA, Node, NodeState, NodeType
from krill_crdt.store import HostDoc, Store
from krill_crdt.transport.http import HttpApi, PeerInfo, _HttpError, _parse_object

HOST = "host-a"
RAW_BODY, BUILT_BODY, NODE_JSON = range(3)


def _clock() -> float:
    return 1_700_000_000.0


def _base() -> bytes:
    doc = HostDoc(HOST, clock=_clock, client_id=21)
    doc.create(Node.new(NodeType.Server, host=HOST, id="srv"))
    doc.create(Node.new(NodeType.Project, host=HOST, parent="srv", id="proj"))
    doc.create(Node.new(NodeType.Pin, host=HOST, parent="srv", meta={"pin": 17}, id="pin17"))
    doc.create(Node.new(NodeType.DataPoint, host=HOST, parent="proj", id="dp"))
    doc.create(Node.new(NodeType.Button, host=HOST, parent="proj", id="btn", meta={}))
    return doc.doc.get_update()


BASE = _base()
_IDS = ("srv", "proj", "pin17", "dp", "btn", "new-1", "new-2", "", "a b", "x" * 300, "é", "/")


class _Docs:
    """The part of the store the route's checks use, over host docs held in memory."""

    def __init__(self) -> None:
        self.by_host: dict[str, HostDoc] = {}

    def on_new_doc(self, listener: object) -> None:
        pass

    def docs(self) -> dict[str, HostDoc]:
        return dict(self.by_host)

    def host_of(self, node_id: str) -> str:
        for host, doc in self.by_host.items():
            if node_id in doc:
                return host
        raise NodeNotFoundError(f"no node {node_id!r} in any host doc")


_STORE = _Docs()
_API = HttpApi(
    cast(Store, _STORE), lambda: PeerInfo(peer="00", name=HOST), Metrics(), own_host=HOST
)


# NOTE: pycrdt keeps a doc alive once anything observes it (a host doc always does), so
# NOTE: each host doc made costs some 30 KB for the life of the process. Inputs reuse one
# NOTE: until a write changes it, and the runner restarts the target now and then.
_spare: list[tuple[HostDoc, bytes]] = []


def _fresh() -> HostDoc:
    """A host doc holding the base state: the spare one if nothing changed it."""
    if _spare and _spare[0][0].doc.get_update() == _spare[0][1]:
        return _spare[0][0]
    doc = HostDoc(HOST, clock=_clock, client_id=22, initial=[BASE])
    _spare[:] = [(doc, doc.doc.get_update())]
    return doc


def _state(doc: HostDoc) -> tuple[bytes, bytes]:
    return doc.doc.get_update(), doc.doc.get_state()


# ------------------------------------------------------------------------------ properties


def _post(doc: HostDoc, node_id: str, raw: bytes) -> Node | None:
    """The steps of the POST handler after its size and Content-Type checks."""
    body = _parse_object(raw)
    if "id" in body and body["id"] != node_id:
        raise ValidationError("id", f"must match the id in the path ({node_id!r})", node_id=node_id)
    try:
        _STORE.host_of(node_id)
    except NodeNotFoundError:
        node = _API._node_to_create(node_id, body)
        if node.host != doc.host:
            # Store.create would open a new host doc for it; a scratch one stands in.
            HostDoc(node.host, clock=_clock).create(node)
            return None
        return doc.create(node)
    changes = _API._changes_to_apply(doc.get(node_id), body)
    return doc.update(node_id, changes) if changes else None


def _check_refusal(exc: BaseException) -> None:
    if isinstance(exc, _HttpError):
        if not 400 <= exc.status < 500:
            raise ContractError(f"a refused body got a status outside 4xx\n{exc.status}")
        return
    if isinstance(exc, ValidationError) and (not exc.field or exc.field not in str(exc)):
        raise ContractError(f"a ValidationError does not name its field\n{exc!r}")


def check_body(node_id: str, raw: bytes) -> None:
    """POST ``raw`` to ``/node/{node_id}`` of a fresh host doc; raise on a finding."""
    doc = _fresh()
    _STORE.by_host = {HOST: doc}
    before = _state(doc)
    stored, error = expect(lambda: _post(doc, node_id, raw), (_HttpError, KrillError))
    if error is not None:
        _check_refusal(error)
        if _state(doc) != before:
            raise ContractError(f"a refused body changed the host doc\n{error!r}")
        return
    if stored is not None:
        again = HostDoc(HOST, initial=[doc.doc.get_update()]).get(stored.id)
        if again != stored:
            raise ContractError("a node written over REST reads back different")


def check_node_json(raw: bytes) -> None:
    """``Node.from_json`` on ``raw``; raise on a finding."""
    node, _ = expect(lambda: Node.from_json(raw), (ValidationError,))
    if node is None:
        return
    if Node.from_json(node.to_json()) != node or Node.from_fields(node.to_fields()) != node:
        raise ContractError("a node read from JSON does not survive its own JSON")


# ---------------------------------------------------------------------------- built bodies

_NUMBERS = (0, 1, -1, 17, 54, 8442, 65536, 2**53, 2**63 - 1, -(2**63), 0.5, 1e308, -0.0)
_TEXT = (
    *(t.value for t in NodeType),
    *(s.value for s in NodeState),
    SCHEMA,
    "2.0",
    "1.9",
    HOST,
    "host-b",
    "http://10.0.0.1:8442/x",
    "/dev/ttyUSB0",
    "*/5 * * * *",
    "a + b * 2",
    "krill/#",
    "(?P<value>\\d+)",
    "input",
    "output",
    "",
    "\x00",
    "\u2028",
)


def _value(draw: Draw, depth: int = 0) -> Any:
    kind = draw.below(8 if depth < 40 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return draw.flag()
    if kind == 2:
        return draw.choice(_NUMBERS)
    if kind == 3:
        return draw.choice(_TEXT + _IDS)
    if kind == 4:
        return draw.text(24, unicode_only=True)
    if kind == 5:
        return [_value(draw, depth + 1) for _ in range(draw.below(4))]
    if kind == 6:
        # Deep nesting: the model caps the depth of free-form values.
        return [_value(draw, depth + 1)]
    return {draw.text(6, unicode_only=True): _value(draw, depth + 1) for _ in range(draw.below(3))}


def _meta(draw: Draw, node_type: NodeType) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(CATALOG[node_type].meta)]
    meta: dict[str, Any] = {}
    for _ in range(draw.below(5)):
        key = draw.choice([*names, "extra", draw.text(6, unicode_only=True)]) if names else "x"
        meta[key] = _value(draw)
    return meta


def build_body(draw: Draw) -> bytes:
    """A JSON object of node fields chosen by ``draw``: mostly plausible, sometimes not."""
    node_type = draw.choice(list(NodeType))
    body: dict[str, Any] = {}
    for key in FIELDS:
        if draw.below(4) == 0:
            continue
        if key == "type":
            body[key] = node_type.value if draw.below(4) else _value(draw)
        elif key == "meta":
            body[key] = _meta(draw, node_type) if draw.below(4) else _value(draw)
        elif key == "parent":
            body[key] = draw.choice((*_IDS, None)) if draw.below(4) else _value(draw)
        elif key == "host":
            body[key] = HOST if draw.below(4) else _value(draw)
        elif key == "schema":
            body[key] = SCHEMA if draw.below(4) else _value(draw)
        else:
            body[key] = _value(draw)
    if draw.below(8) == 0:
        body[draw.text(8, unicode_only=True)] = _value(draw)
    options = orjson.OPT_NON_STR_KEYS
    return orjson.dumps(body, option=options)


# ------------------------------------------------------------------------------ the target


def check_one(data: bytes) -> None:
    """Run one input through the REST body path or the node model; raise on a finding."""
    if len(data) < 2:
        data = data.ljust(2, b"\x00")
    mode, node_id, rest = data[0] % 3, _IDS[data[1] % len(_IDS)], data[2:]
    if mode == RAW_BODY:
        check_body(node_id, rest)
    elif mode == BUILT_BODY:
        check_body(node_id, build_body(Draw(rest)))
    else:
        check_node_json(rest)


def seeds() -> list[bytes]:
    """Creates and updates that succeed, and whole nodes as JSON."""
    bodies = [
        (5, {"type": "Pin", "parent": "srv", "meta": {"pin": 4, "mode": "output"}}),
        (6, {"type": "DataPoint", "parent": "proj", "name": "t", "meta": {"unit": "C"}}),
        (6, {"type": "Timer", "parent": "proj", "meta": {"interval_ms": 1000}}),
        (1, {"name": "renamed", "state": "error"}),
        (2, {"meta": {"pin": 18}, "id": "pin17"}),
        (3, {"parent": "proj", "type": "DataPoint", "schema": SCHEMA}),
    ]
    node = Node.new(NodeType.Pin, host=HOST, parent="srv", meta={"pin": 5}, id="p5")
    out = [bytes([RAW_BODY, i]) + orjson.dumps(body) for i, body in bodies]
    out += [bytes([NODE_JSON, 0]) + node.to_json(), bytes([RAW_BODY, 5]) + b"[]"]
    out += [bytes([BUILT_BODY, i]) + bytes(range(i * 7, i * 7 + 60)) for i in range(4)]
    return out


TARGET = Target("rest", check_one, seeds, max_len=4096, per_process=25_000)

if __name__ == "__main__":
    from fuzz.run import main

    sys.exit(main(["rest", *sys.argv[1:]]))
