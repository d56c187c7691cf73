"""``krill nodes``: every action against a real peer on loopback, and the ways it fails."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from krill_crdt.cli import main, nodes
from krill_crdt.runtime.peer import Peer
from tests.runtime.test_swarm import Swarm

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Run:
    """What one ``krill`` command did."""

    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    swarm = Swarm(tmp_path)
    started = await swarm.start("pi-1")
    yield started
    await swarm.stop(started)


#: Runs ``krill ARGV...`` and returns what it did.
Krill = Callable[..., Awaitable[Run]]


@pytest.fixture
def krill(capsys: pytest.CaptureFixture[str]) -> Krill:
    async def run(*argv: str) -> Run:
        # main() calls asyncio.run, so it needs a thread of its own beside the peer's loop.
        capsys.readouterr()
        status = await asyncio.to_thread(main, list(argv))
        captured = capsys.readouterr()
        return Run(status, captured.out, captured.err)

    return run


async def seed(krill: Krill, url: str) -> None:
    """A project with a data point under it, and a pin, all on host pi-1."""
    for argv in (
        ("proj", "--type", "Project", "--parent", "pi-1", "--name", "Greenhouse"),
        ("temp", "--type", "DataPoint", "--parent", "proj", "--meta-set", "unit=C"),
        ("led", "--type", "Pin", "--parent", "pi-1", "--meta", '{"pin": 17, "mode": "output"}'),
    ):
        assert (await krill("nodes", "set", *argv, "--url", url)).status == 0


def assert_one_error_line(run: Run, status: int) -> str:
    assert run.status == status
    assert run.out == ""
    assert "Traceback" not in run.err
    lines = run.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("krill: ")
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---------------------------------------------------------------------------- list


async def test_list_shows_every_node_id_in_a_table(peer: Peer, krill: Krill) -> None:
    await seed(krill, peer.url)

    run = await krill("nodes", "list", "--url", peer.url)

    assert run.status == 0 and run.err == ""
    for node_id in ("pi-1", "proj", "temp", "led"):
        assert node_id in run.out
    assert "Greenhouse" in run.out and "DataPoint" in run.out
    assert run.out.index("led") < run.out.index("proj") < run.out.index("temp")


async def test_list_json_is_the_api_array_narrowed_by_type(peer: Peer, krill: Krill) -> None:
    await seed(krill, peer.url)

    every = (await krill("nodes", "list", "--json", "--url", peer.url)).json()
    pins = (await krill("nodes", "list", "--json", "--type", "Pin", "--url", peer.url)).json()

    assert [n["id"] for n in every] == ["led", "pi-1", "proj", "temp"]
    assert [n["id"] for n in pins] == ["led"]
    assert pins[0]["meta"]["pin"] == 17


async def test_list_takes_the_url_from_the_environment(
    peer: Peer, krill: Krill, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(nodes.URL_ENV, peer.url)

    run = await krill("nodes", "list", "--json")

    assert run.status == 0
    assert [n["id"] for n in run.json()] == ["pi-1"]


# ----------------------------------------------------------------------------- get


async def test_get_shows_the_fields_and_meta_of_one_node(peer: Peer, krill: Krill) -> None:
    await seed(krill, peer.url)

    table = await krill("nodes", "get", "led", "--url", peer.url)
    as_json = (await krill("nodes", "get", "led", "--json", "--url", peer.url)).json()

    assert table.status == 0
    assert "meta.pin" in table.out and "17" in table.out and "output" in table.out
    assert as_json["id"] == "led" and as_json["type"] == "Pin" and as_json["host"] == "pi-1"


async def test_get_of_an_unknown_node_is_one_line_and_exit_1(peer: Peer, krill: Krill) -> None:
    run = await krill("nodes", "get", "nope", "--url", peer.url)

    assert assert_one_error_line(run, 1) == "krill: no node 'nope' in any host doc"


# ----------------------------------------------------------------------------- set


async def test_set_creates_a_node_from_type_and_parent(peer: Peer, krill: Krill) -> None:
    run = await krill(
        "nodes", "set", "proj", "--type", "Project", "--parent", "pi-1", "--json", "--url", peer.url
    )

    assert run.status == 0
    assert run.json()["parent"] == "pi-1"
    assert peer.get("proj").name == ""


async def test_set_without_type_cannot_create_and_says_so(peer: Peer, krill: Krill) -> None:
    run = await krill("nodes", "set", "lonely", "--url", peer.url)

    assert "type: is required" in assert_one_error_line(run, 1)


async def test_set_updates_only_the_fields_given(peer: Peer, krill: Krill) -> None:
    await seed(krill, peer.url)

    run = await krill("nodes", "set", "proj", "--state", "warn", "--url", peer.url)

    assert run.status == 0 and "updated" in run.out
    stored = peer.get("proj")
    assert stored.state.value == "warn" and stored.name == "Greenhouse"


async def test_meta_set_merges_keys_into_the_current_meta(peer: Peer, krill: Krill) -> None:
    await seed(krill, peer.url)

    run = await krill(
        "nodes", "set", "led", "--meta-set", "pin=18", "--meta-set", "active_low=true",
        "--json", "--url", peer.url,
    )  # fmt: skip

    meta = run.json()["meta"]
    assert (meta["pin"], meta["active_low"], meta["mode"]) == (18, True, "output")


async def test_meta_set_values_that_are_not_json_are_strings(peer: Peer, krill: Krill) -> None:
    await seed(krill, peer.url)

    run = await krill(
        "nodes", "set", "proj", "--meta-set", "description=north bed", "--json", "--url", peer.url
    )

    assert run.json()["meta"]["description"] == "north bed"


async def test_validation_error_is_one_line_on_stderr_and_exit_1(peer: Peer, krill: Krill) -> None:
    run = await krill(
        "nodes", "set", "x", "--type", "Pin", "--parent", "pi-1", "--meta-set", "pin=99",
        "--url", peer.url,
    )  # fmt: skip

    assert assert_one_error_line(run, 1) == "krill: node x: meta.pin: must be 0..53, got 99"
    assert "x" not in {n.id for n in peer.nodes()}


async def test_malformed_meta_is_a_usage_error(krill: Krill) -> None:
    with pytest.raises(SystemExit) as exit_:
        await krill("nodes", "set", "x", "--meta", "[1, 2]")

    assert exit_.value.code == 2


# -------------------------------------------------------------------- delete, invoke


async def test_delete_prints_the_removed_subtree(peer: Peer, krill: Krill) -> None:
    await seed(krill, peer.url)

    run = await krill("nodes", "delete", "proj", "--url", peer.url)

    assert run.status == 0
    assert run.out.split() == ["proj", "temp"]
    assert {n.id for n in peer.nodes()} == {"pi-1", "led"}


async def test_invoke_prints_what_ran(peer: Peer, krill: Krill) -> None:
    await seed(krill, peer.url)

    table = await krill("nodes", "invoke", "temp", "--url", peer.url)
    as_json = (await krill("nodes", "invoke", "temp", "--json", "--url", peer.url)).json()

    assert table.status == 0 and table.out.strip() == "temp: ran temp"
    assert as_json["ran"] == ["temp"] and as_json["errors"] == {}


async def test_invoke_of_another_hosts_node_says_where_it_went(peer: Peer, krill: Krill) -> None:
    for argv in (
        ("pi-2", "--type", "Server", "--parent", "", "--host", "pi-2"),
        ("far", "--type", "Project", "--parent", "pi-2", "--host", "pi-2"),
    ):
        assert (await krill("nodes", "set", *argv, "--url", peer.url)).status == 0

    run = await krill("nodes", "invoke", "far", "--url", peer.url)

    assert run.status == 0 and "pi-2" in run.out


# ---------------------------------------------------------------------- reachability


async def test_unreachable_daemon_is_one_line_naming_the_url_and_exit_2(krill: Krill) -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    run = await krill("nodes", "list", "--url", url)

    assert url in assert_one_error_line(run, 2)


async def test_a_daemon_that_never_answers_times_out_with_exit_2(
    krill: Krill, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nodes, "TOTAL_TIMEOUT_S", 0.3)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        run = await krill("nodes", "get", "led", "--url", url)
    finally:
        server.close()

    assert "no answer from the daemon at " + url in assert_one_error_line(run, 2)


async def test_an_answer_that_is_not_json_is_one_line_and_exit_1(krill: Krill) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 14\r\n\r\nupstream down\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        run = await krill("nodes", "list", "--url", url)
    finally:
        server.close()

    line = assert_one_error_line(run, 1)
    assert line.startswith("krill: 502 Bad Gateway") and "upstream down" in line


async def test_a_url_that_is_not_http_is_a_usage_error(krill: Krill) -> None:
    with pytest.raises(SystemExit) as exit_:
        await krill("nodes", "list", "--url", "ftp://127.0.0.1")

    assert exit_.value.code == 2
