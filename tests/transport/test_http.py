"""The HTTP API over real loopback sockets: REST JSON routes, binary /sync, /events, /metrics."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krill_crdt.metrics import Metrics
from krill_crdt.model import Node, NodeState, NodeType
from krill_crdt.store import Create, HostDoc, Store
from krill_crdt.transport.http import (
    HTTP_ORIGIN,
    Access,
    HttpApi,
    HttpOptions,
    PeerInfo,
)

HOST = "pi-1"
OTHER = "pi-2"
PEER = PeerInfo(
    peer="0123456789abcdef0123456789abcdef",
    name="kitchen",
    version="9.9.9",
    follows=[HOST, OTHER],
    peers=["fedcba98765432100123456789abcdef"],
)
#: Every wait on the network in this file is bounded by this many seconds.
TIMEOUT = 5.0

# ------------------------------------------------------------------------------- helpers


def server_node(host: str = HOST) -> Node:
    return Node.new(NodeType.Server, host=host, id=f"srv-{host}", name="server")


def pin_body(pin: object = 17, **extra: object) -> dict[str, object]:
    return {"type": "Pin", "parent": f"srv-{HOST}", "name": "led", "meta": {"pin": pin}, **extra}


@asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[Store]:
    async with Store(path) as store:
        await store.create(server_node())
        yield store


@asynccontextmanager
async def serve(store: Store, **kwargs: Any) -> AsyncIterator[tuple[TestClient[Any, Any], HttpApi]]:
    metrics = kwargs.pop("metrics", None) or Metrics()
    api = HttpApi(store, lambda: PEER, metrics, own_host=HOST, **kwargs)
    client: TestClient[Any, Any] = TestClient(TestServer(api.app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, api
    finally:
        await client.close()


def snapshot(store: Store) -> dict[str, bytes]:
    """Every host doc's state vector: equal snapshots mean nothing was written."""
    return {host: doc.state_vector() for host, doc in store.docs().items()}


async def post_json(client: TestClient[Any, Any], path: str, body: object) -> Any:
    return await client.post(path, data=orjson.dumps(body), headers=JSON_HEADERS)


JSON_HEADERS = {"Content-Type": "application/json"}
BINARY_HEADERS = {"Content-Type": "application/octet-stream"}


async def read_block(response: Any) -> list[str]:
    """Read one server-sent event (or comment) block: its lines up to the blank line."""
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(response.content.readline(), TIMEOUT)
        if raw == b"":
            return lines
        line = raw.decode().rstrip("\n")
        if line == "":
            if lines:
                return lines
            continue
        lines.append(line)


async def next_change(response: Any) -> dict[str, Any]:
    """Skip comments and return the data of the next ``change`` event."""
    for _ in range(50):
        block = await read_block(response)
        assert block, "the event stream ended"
        if block[0] == "event: change":
            data: dict[str, Any] = orjson.loads(block[1].removeprefix("data: "))
            return data
    raise AssertionError("no change event in 50 blocks")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient[Any, Any]]:
    async with serve(store) as (test_client, _):
        yield test_client


# -------------------------------------------------------------------------------- health


async def test_health_shows_the_peer_info(client: TestClient[Any, Any]) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {
        "peer": PEER.peer,
        "name": "kitchen",
        "version": "9.9.9",
        "follows": [HOST, OTHER],
        "peers": list(PEER.peers),
    }


# ----------------------------------------------------------------------------- reads


async def test_nodes_lists_every_host_doc_and_narrows_by_host_and_type(
    store: Store, client: TestClient[Any, Any]
) -> None:
    await store.create(server_node(OTHER))
    await store.create(
        Node.new(NodeType.Pin, host=HOST, parent=f"srv-{HOST}", id="p", meta={"pin": 4})
    )

    every = await (await client.get("/nodes")).json()
    assert [n["id"] for n in every] == ["p", f"srv-{HOST}", f"srv-{OTHER}"]
    narrowed = await (await client.get("/nodes", params={"host": OTHER})).json()
    assert [n["id"] for n in narrowed] == [f"srv-{OTHER}"]
    pins = await (await client.get("/nodes", params={"type": "Pin"})).json()
    assert [n["id"] for n in pins] == ["p"]


async def test_nodes_with_an_unknown_type_is_400(client: TestClient[Any, Any]) -> None:
    response = await client.get("/nodes", params={"type": "Toaster"})
    assert response.status == 400
    assert "type: is not a known node type" in (await response.json())["error"]


async def test_nodes_of_an_unknown_host_is_404(client: TestClient[Any, Any]) -> None:
    response = await client.get("/nodes", params={"host": "nowhere"})
    assert response.status == 404
    assert "nowhere" in (await response.json())["error"]


async def test_get_of_an_unknown_node_is_404_naming_it(client: TestClient[Any, Any]) -> None:
    response = await client.get("/node/ghost")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert (await response.json())["error"].startswith("no node 'ghost'")


# ---------------------------------------------------------------------------- writes


async def test_create_answers_201_and_the_node_reads_back(client: TestClient[Any, Any]) -> None:
    response = await post_json(client, "/node/led", pin_body())
    assert response.status == 201
    assert response.headers["Location"] == "/node/led"
    created = await response.json()
    # No host in the body: the node goes to this peer's own host doc.
    assert created["host"] == HOST
    assert created["meta"]["pin"] == 17

    fetched = await client.get("/node/led")
    assert fetched.status == 200
    assert await fetched.json() == created


async def test_partial_update_answers_200_and_writes_only_the_given_fields(
    store: Store, client: TestClient[Any, Any]
) -> None:
    await post_json(client, "/node/led", pin_body() | {"meta": {"pin": 5, "mode": "output"}})
    changes = store.doc(HOST).changes()

    response = await post_json(client, "/node/led", {"name": "status led"})
    assert response.status == 200
    updated = await response.json()
    assert updated["name"] == "status led"
    assert updated["meta"]["mode"] == "output"
    change = await changes.get(TIMEOUT)
    assert change.node_id == "led"
    assert change.fields == {"name", "updated"}


async def test_a_node_posted_back_whole_is_accepted_as_an_update(
    store: Store, client: TestClient[Any, Any]
) -> None:
    node = await (await post_json(client, "/node/led", pin_body())).json()
    node["name"] = "renamed"
    response = await post_json(client, "/node/led", node)
    assert response.status == 200
    assert store.get("led").name == "renamed"


async def test_a_validation_error_is_400_naming_the_field(
    store: Store, client: TestClient[Any, Any]
) -> None:
    response = await post_json(client, "/node/led", pin_body(pin=99))
    assert response.status == 400
    assert "meta.pin: must be 0..53, got 99" in (await response.json())["error"]
    assert "led" not in store.doc(HOST)


async def test_a_parent_rule_violation_is_400_naming_parent(
    store: Store, client: TestClient[Any, Any]
) -> None:
    await store.create(Node.new(NodeType.Project, host=HOST, parent=f"srv-{HOST}", id="proj"))
    response = await post_json(client, "/node/led", pin_body() | {"parent": "proj"})
    assert response.status == 400
    assert "parent: a Pin must be under a Server" in (await response.json())["error"]


async def test_changing_a_fixed_field_is_400(client: TestClient[Any, Any]) -> None:
    await post_json(client, "/node/led", pin_body())
    response = await post_json(client, "/node/led", {"type": "Server"})
    assert response.status == 400
    assert "type: cannot be changed" in (await response.json())["error"]


async def test_a_body_id_that_differs_from_the_path_is_400(
    store: Store, client: TestClient[Any, Any]
) -> None:
    response = await post_json(client, "/node/led", pin_body(id="other"))
    assert response.status == 400
    assert "id: must match the id in the path" in (await response.json())["error"]
    assert "led" not in store.doc(HOST) and "other" not in store.doc(HOST)


async def test_malformed_json_is_400(client: TestClient[Any, Any]) -> None:
    response = await client.post("/node/led", data=b'{"type": "Pin",', headers=JSON_HEADERS)
    assert response.status == 400
    assert "body is not valid JSON" in (await response.json())["error"]


async def test_a_json_body_that_is_not_an_object_is_400(client: TestClient[Any, Any]) -> None:
    response = await client.post("/node/led", data=b"[1, 2]", headers=JSON_HEADERS)
    assert response.status == 400
    assert (await response.json())["error"] == "body must be a JSON object, got list"


async def test_an_oversized_body_is_413_by_its_declared_length(
    store: Store, client: TestClient[Any, Any]
) -> None:
    body = orjson.dumps(pin_body() | {"name": "x" * (600 * 1024)})
    response = await client.post("/node/led", data=body, headers=JSON_HEADERS)
    assert response.status == 413
    assert "at most 524288 bytes" in (await response.json())["error"]
    assert "led" not in store.doc(HOST)


async def test_an_oversized_chunked_body_is_413_without_a_declared_length(
    store: Store,
) -> None:
    async with serve(store, options=HttpOptions(max_node_body=1024)) as (client, api):

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"name": "'
            for _ in range(64):
                yield b"x" * 256

        response = await client.post("/node/led", data=chunks(), headers=JSON_HEADERS)
        assert response.status == 413
        assert (
            api.metrics.value("krill_frames_rejected_total", transport="http", reason="oversized")
            == 1
        )


async def test_a_wrong_content_type_is_415(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/node/led", data=orjson.dumps(pin_body()), headers={"Content-Type": "text/plain"}
    )
    assert response.status == 415
    assert "Content-Type must be application/json" in (await response.json())["error"]


async def test_delete_removes_the_subtree_and_answers_the_ids(
    store: Store, client: TestClient[Any, Any]
) -> None:
    await store.create(Node.new(NodeType.Project, host=HOST, parent=f"srv-{HOST}", id="a"))
    await store.create(Node.new(NodeType.Project, host=HOST, parent="a", id="b"))
    await store.create(Node.new(NodeType.DataPoint, host=HOST, parent="b", id="c"))

    response = await client.delete("/node/a")
    assert response.status == 200
    assert await response.json() == {"removed": ["a", "b", "c"]}
    assert store.doc(HOST).ids() == [f"srv-{HOST}"]


async def test_delete_of_an_unknown_node_is_404(client: TestClient[Any, Any]) -> None:
    response = await client.delete("/node/ghost")
    assert response.status == 404


# ---------------------------------------------------------------------------- invoke


async def test_invoke_without_a_hook_is_501(client: TestClient[Any, Any]) -> None:
    response = await client.post(f"/node/srv-{HOST}/invoke")
    assert response.status == 501
    assert await response.json() == {"error": "execution is not available on this peer"}


async def test_invoke_delegates_to_the_hook(store: Store) -> None:
    asked: list[str] = []

    async def invoke(node_id: str) -> dict[str, Any]:
        asked.append(node_id)
        return {"ran": node_id}

    async with serve(store, invoke=invoke) as (client, _):
        response = await client.post(f"/node/srv-{HOST}/invoke")
        assert response.status == 200
        assert await response.json() == {"ran": f"srv-{HOST}"}
        assert (await client.post("/node/ghost/invoke")).status == 404
    assert asked == [f"srv-{HOST}"]


async def test_a_failing_hook_is_a_json_500_without_details(store: Store) -> None:
    async def invoke(node_id: str) -> dict[str, Any]:
        raise RuntimeError("secret internals")

    async with serve(store, invoke=invoke) as (client, _):
        response = await client.post(f"/node/srv-{HOST}/invoke")
        assert response.status == 500
        error = (await response.json())["error"]
        assert error.startswith("internal error") and "secret" not in error


# ---------------------------------------------------------------------------- series


@pytest.fixture
async def point(store: Store) -> str:
    await store.create(Node.new(NodeType.DataPoint, host=HOST, parent=f"srv-{HOST}", id="temp"))
    store.series.append_many([("temp", float(t), 20.0 + t) for t in range(1, 6)])
    return "temp"


async def test_series_returns_the_samples_in_range(
    point: str, client: TestClient[Any, Any]
) -> None:
    response = await client.get(f"/node/{point}/series", params={"since": "2", "until": "4"})
    assert response.status == 200
    assert await response.json() == [[2.0, 22.0], [3.0, 23.0], [4.0, 24.0]]
    limited = await client.get(f"/node/{point}/series", params={"limit": "2"})
    assert await limited.json() == [[1.0, 21.0], [2.0, 22.0]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "since: must be a Unix time in seconds"),
        ({"until": "nan"}, "until: must be a Unix time in seconds"),
        ({"since": "5", "until": "1"}, "since: must not be after until"),
        ({"limit": "-1"}, "limit: must be a whole number"),
        ({"limit": "1.5"}, "limit: must be a whole number"),
    ],
)
async def test_series_with_bad_parameters_is_400(
    point: str, client: TestClient[Any, Any], params: dict[str, str], message: str
) -> None:
    response = await client.get(f"/node/{point}/series", params=params)
    assert response.status == 400
    assert message in (await response.json())["error"]


async def test_series_of_an_unknown_node_is_404(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/node/ghost/series")).status == 404


# ------------------------------------------------------------------------------ sync


async def test_sync_diff_without_a_state_vector_rebuilds_the_whole_doc(
    store: Store, client: TestClient[Any, Any]
) -> None:
    await store.create(
        Node.new(NodeType.Pin, host=HOST, parent=f"srv-{HOST}", id="p", meta={"pin": 4})
    )
    response = await client.get(f"/sync/{HOST}")
    assert response.status == 200
    assert response.content_type == "application/octet-stream"

    replica = HostDoc(HOST, initial=[await response.read()])
    assert replica.list_nodes() == store.doc(HOST).list_nodes()


async def test_sync_diff_against_a_state_vector_sends_only_the_missing_part(
    store: Store, client: TestClient[Any, Any]
) -> None:
    replica = HostDoc(HOST, initial=[await (await client.get(f"/sync/{HOST}")).read()])
    await store.create(
        Node.new(NodeType.Pin, host=HOST, parent=f"srv-{HOST}", id="p", meta={"pin": 4})
    )

    sv = base64.urlsafe_b64encode(replica.state_vector()).decode().rstrip("=")
    missing = await (await client.get(f"/sync/{HOST}", params={"sv": sv})).read()
    whole = await (await client.get(f"/sync/{HOST}")).read()
    assert len(missing) < len(whole)
    replica.apply(missing, origin=HTTP_ORIGIN)
    assert replica.list_nodes() == store.doc(HOST).list_nodes()


@pytest.mark.parametrize(
    ("sv", "message"),
    [("@@not base64", "sv: not valid base64"), ("/w", "sv: not a Yjs state vector")],
)
async def test_sync_diff_with_a_bad_state_vector_is_400(
    client: TestClient[Any, Any], sv: str, message: str
) -> None:
    response = await client.get(f"/sync/{HOST}", params={"sv": sv})
    assert response.status == 400
    assert (await response.json())["error"] == message


async def test_sync_diff_of_an_unknown_doc_is_404(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/sync/nowhere")).status == 404


async def test_sync_post_applies_an_update_tagged_as_http(
    store: Store, client: TestClient[Any, Any]
) -> None:
    remote = HostDoc(HOST, initial=[store.doc(HOST).diff()])
    remote.create(Node.new(NodeType.Pin, host=HOST, parent=f"srv-{HOST}", id="p", meta={"pin": 4}))
    changes = store.doc(HOST).changes()

    update = remote.diff(store.doc(HOST).state_vector())
    response = await client.post(f"/sync/{HOST}", data=update, headers=BINARY_HEADERS)
    assert response.status == 204
    assert store.get("p").meta == remote.get("p").meta
    assert (await changes.get(TIMEOUT)).origin == HTTP_ORIGIN


async def test_sync_post_of_garbage_is_400_and_leaves_the_doc_unchanged(
    store: Store, client: TestClient[Any, Any]
) -> None:
    before = snapshot(store)
    response = await client.post(f"/sync/{HOST}", data=b"garbage!", headers=BINARY_HEADERS)
    assert response.status == 400
    assert "rejected" in (await response.json())["error"]
    fresh = await client.post("/sync/brand-new", data=b"garbage!", headers=BINARY_HEADERS)
    assert fresh.status == 400
    assert snapshot(store) == before


async def test_sync_post_hands_the_update_to_the_hook(store: Store) -> None:
    seen: list[tuple[str, bytes]] = []

    def on_sync_update(doc: str, update: bytes) -> None:
        seen.append((doc, update))

    async with serve(store, on_sync_update=on_sync_update) as (client, _):
        response = await client.post(f"/sync/{HOST}", data=b"\x00\x00", headers=BINARY_HEADERS)
        assert response.status == 204
    assert seen == [(HOST, b"\x00\x00")]


async def test_sync_post_needs_the_binary_content_type(client: TestClient[Any, Any]) -> None:
    response = await client.post(f"/sync/{HOST}", data=b"\x00\x00", headers=JSON_HEADERS)
    assert response.status == 415


# ----------------------------------------------------------------------- authorization


def token_gate(request: web.Request, write: bool) -> Access:
    token = request.headers.get("Authorization", "")
    if token == "Bearer rw":
        return Access.ALLOW
    if token == "Bearer ro":
        return Access.FORBIDDEN if write else Access.ALLOW
    return Access.UNAUTHENTICATED


async def test_writes_without_a_token_are_401(store: Store) -> None:
    async with serve(store, authorize=token_gate) as (client, _):
        response = await post_json(client, "/node/led", pin_body())
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "authentication required" in (await response.json())["error"]
        assert (await client.delete(f"/node/srv-{HOST}")).status == 401
    assert "led" not in store.doc(HOST)


async def test_a_read_only_token_reads_but_its_writes_are_403(store: Store) -> None:
    before = snapshot(store)
    headers = {"Authorization": "Bearer ro"}
    async with serve(store, authorize=token_gate) as (client, _):
        assert (await client.get("/nodes", headers=headers)).status == 200
        for response in (
            await client.post(
                "/node/led", data=orjson.dumps(pin_body()), headers=headers | JSON_HEADERS
            ),
            await client.delete(f"/node/srv-{HOST}", headers=headers),
            await client.post(f"/sync/{HOST}", data=b"\x00\x00", headers=headers | BINARY_HEADERS),
            await client.post(f"/node/srv-{HOST}/invoke", headers=headers),
        ):
            assert response.status == 403
            assert "may not write" in (await response.json())["error"]
    assert snapshot(store) == before


async def test_a_full_token_writes(store: Store) -> None:
    async with serve(store, authorize=token_gate) as (client, _):
        headers = {"Authorization": "Bearer rw"} | JSON_HEADERS
        response = await client.post("/node/led", data=orjson.dumps(pin_body()), headers=headers)
        assert response.status == 201


# ---------------------------------------------------------------------------- events


async def test_events_deliver_a_change_made_through_the_api(
    client: TestClient[Any, Any],
) -> None:
    events = await client.get("/events")
    assert events.headers["Content-Type"] == "text/event-stream"
    assert await read_block(events) == [": krill change stream"]

    await post_json(client, "/node/led", pin_body())
    change = await next_change(events)
    assert change["host"] == HOST
    assert change["id"] == "led"
    assert change["kind"] == "created"
    assert "meta" in change["fields"]
    assert change["origin"] == {"peer": "", "transport": "local"}
    events.close()


async def test_events_send_a_heartbeat_when_idle(store: Store) -> None:
    async with serve(store, options=HttpOptions(heartbeat_s=0.05)) as (client, _):
        events = await client.get("/events")
        await read_block(events)
        assert await read_block(events) == [": heartbeat"]
        events.close()


async def test_events_include_host_docs_opened_after_the_stream(
    client: TestClient[Any, Any],
) -> None:
    events = await client.get("/events")
    await read_block(events)

    # The node is the first write to a host doc this peer did not have a moment ago.
    response = await post_json(
        client, f"/node/srv-{OTHER}", {"type": "Server", "parent": None, "host": OTHER}
    )
    assert response.status == 201
    change = await next_change(events)
    assert (change["host"], change["id"], change["kind"]) == (OTHER, f"srv-{OTHER}", "created")
    assert change["origin"] == {"peer": "", "transport": "local"}
    events.close()


async def test_events_end_with_overflow_for_a_client_that_falls_behind(store: Store) -> None:
    async with serve(store, options=HttpOptions(events_buffer=2)) as (client, _):
        events = await client.get("/events")
        await read_block(events)
        burst = [
            Create(Node.new(NodeType.Project, host=HOST, parent=f"srv-{HOST}", id=f"p{i}"))
            for i in range(10)
        ]
        await store.batch(HOST, burst)

        blocks = [await read_block(events) for _ in range(4)]
        assert [b[0] for b in blocks[:3]] == ["event: change", "event: change", "event: overflow"]
        assert blocks[3] == []  # and then the stream ends


async def test_events_end_cleanly_on_shutdown(store: Store) -> None:
    async with serve(store) as (client, _):
        events = await client.get("/events")
        await read_block(events)
        closing = asyncio.create_task(client.server.close())
        assert await read_block(events) == []
        await asyncio.wait_for(closing, TIMEOUT)


# --------------------------------------------------------------------------- metrics


async def test_metrics_are_prometheus_text_with_the_frame_counters(
    client: TestClient[Any, Any],
) -> None:
    await client.get(f"/sync/{HOST}")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    assert 'krill_frames_sent_total{kind="diff",transport="http"} 1.0' in text or (
        'krill_frames_sent_total{transport="http",kind="diff"} 1.0' in text
    )


async def test_refused_input_is_counted_by_reason(store: Store) -> None:
    async with serve(store) as (client, api):
        await client.post("/node/led", data=b"{", headers=JSON_HEADERS)
        await client.post(f"/sync/{HOST}", data=b"garbage!", headers=BINARY_HEADERS)
        value = api.metrics.value
        assert value("krill_frames_rejected_total", transport="http", reason="malformed_json") == 1
        assert value("krill_frames_rejected_total", transport="http", reason="undecodable") == 1


async def test_a_refused_request_is_logged_at_info_once_then_debug_without_secrets(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="krill.transport.http")
    for _ in range(2):
        await client.post(
            "/node/led?token=hunter2", data=b'{"pw": "swordfish"', headers=JSON_HEADERS
        )

    records = [r for r in caplog.records if r.name == "krill.transport.http"]
    assert [r.levelno for r in records] == [logging.INFO, logging.DEBUG]
    assert "POST /node/led" in records[0].getMessage()
    for record in records:
        assert "hunter2" not in record.getMessage()
        assert "swordfish" not in record.getMessage()


# ---------------------------------------------------------------------- router errors


async def test_an_unknown_route_is_a_json_404(client: TestClient[Any, Any]) -> None:
    response = await client.get("/no/such/route")
    assert response.status == 404
    assert await response.json() == {"error": "no route GET /no/such/route"}


async def test_a_wrong_method_is_a_json_405(client: TestClient[Any, Any]) -> None:
    response = await client.put("/node/led", data=b"{}")
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) >= {"GET", "POST", "DELETE"}
    assert "method PUT is not allowed on /node/led" in (await response.json())["error"]


# ---------------------------------------------------------------------------- fuzzing

_IDS = ["srv-pi-1", "led", "fresh", "a+b", "x" * 200]
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
_META = st.fixed_dictionaries(
    {},
    optional={
        "pin": st.integers(-3, 60) | _JSON_VALUES,
        "mode": st.sampled_from(["input", "output", "pwm", "bogus"]),
        "pull": st.sampled_from(["none", "up", "sideways"]),
        "description": st.text(max_size=10),
    },
)
#: Bodies close to a valid node, so that creates and updates succeed often enough to matter.
_PLAUSIBLE = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Pin", "Project", "DataPoint", "Server", "Toaster"]),
        "parent": st.sampled_from([None, "srv-pi-1", "led", "ghost"]),
    },
    optional={
        "name": st.text(max_size=10),
        "meta": _META,
        "state": st.sampled_from([s.value for s in NodeState] + ["sleepy"]),
        "host": st.sampled_from([HOST, OTHER]),
    },
)
#: Partial updates with fitting values.
_UPDATES = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(alphabet="abc xyz", max_size=10),
        "state": st.sampled_from([s.value for s in NodeState]),
        "meta": st.fixed_dictionaries({"pin": st.integers(0, 60)}),
    },
)
#: Creates of nodes that may well be valid.
_CREATES = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("Pin"),
            "parent": st.just("srv-pi-1"),
            "meta": st.fixed_dictionaries({"pin": st.integers(0, 60)}),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["Project", "DataPoint"]), "parent": st.just("srv-pi-1")},
        optional={"name": st.text(alphabet="abc xyz", max_size=10)},
    ),
)
#: Anything in the shape of a node, with any value in any field.
_WILD = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(_IDS) | _JSON_VALUES,
        "type": st.sampled_from([t.value for t in NodeType] + ["Toaster"]) | _JSON_VALUES,
        "host": st.sampled_from([HOST, OTHER, "", "bad host"]) | _JSON_VALUES,
        "parent": st.sampled_from([None, "srv-pi-1", "led", "ghost"]) | _JSON_VALUES,
        "name": st.text(max_size=10) | _JSON_VALUES,
        "state": st.sampled_from([s.value for s in NodeState] + ["sleepy"]) | _JSON_VALUES,
        "meta": _META | _JSON_VALUES,
        "updated": _SCALARS,
        "schema": st.sampled_from(["1.0", "2.0", "1.9"]) | _JSON_VALUES,
        "extra": _JSON_VALUES,
    },
)
_BODIES = (
    _PLAUSIBLE.map(orjson.dumps)
    | _UPDATES.map(orjson.dumps)
    | _CREATES.map(orjson.dumps)
    | _WILD.map(orjson.dumps)
    | _JSON_VALUES.map(orjson.dumps)
    | st.binary(max_size=40)
)


def test_random_bodies_never_fail_the_server_nor_change_the_store_when_refused(
    tmp_path: Path,
) -> None:
    # Hypothesis drives a synchronous test; one loop, store and server serve every example,
    # so the refusals are checked against a store that the accepted examples keep changing.
    loop = asyncio.new_event_loop()
    stack = serve_in(tmp_path / "fuzz")
    try:
        store, client = loop.run_until_complete(stack.__anext__())

        async def post(node_id: str, body: bytes) -> None:
            before = snapshot(store)
            response = await client.post(f"/node/{node_id}", data=body, headers=JSON_HEADERS)
            assert response.content_type == "application/json"
            answer = await response.json()
            assert 200 <= response.status < 300 or 400 <= response.status < 500, answer
            if response.status >= 400:
                assert set(answer) == {"error"}
                assert snapshot(store) == before

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(node_id=st.sampled_from(_IDS), body=_BODIES)
        def check(node_id: str, body: bytes) -> None:
            loop.run_until_complete(asyncio.wait_for(post(node_id, body), TIMEOUT))

        check()
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


async def serve_in(path: Path) -> AsyncGenerator[tuple[Store, TestClient[Any, Any]], None]:
    """Open a store and a server for a synchronous test driving its own event loop."""
    async with open_store(path) as store, serve(store) as (client, _):
        yield store, client
