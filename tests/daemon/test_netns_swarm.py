"""Four ``krill serve`` daemons on a simulated LAN: discovery, replication, a cut and a heal.

Each daemon runs in a network namespace of its own, joined to one bridge by a veth pair (see
:mod:`tests.netns`): it listens on its LAN address, sends and hears beacons on that interface
only, and shares one swarm key with the others. Nothing is sent on this machine's own
interfaces. The tests read and write through each daemon's REST API from inside the
daemon's namespace, through a small client process started there.

Both tests cut the last peer off at the bridge and heal it again; they differ in how long
the cut lasts: shorter than the peer links' heartbeat (TCP carries the links through it), or
long enough for the heartbeat to close them (about 16 s more, spent waiting for that).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from krill_crdt.daemon.template import write_swarm_key
from tests.netns import Lan, LanHost, free_subnet, netns_unavailable

pytestmark = pytest.mark.timeout(120)

#: The project's root, so the daemons and clients import this checkout of krill_crdt.
ROOT = Path(__file__).resolve().parents[2]

#: How many peers share the LAN; the last one is the one cut off.
PEERS = 4
CUT = PEERS - 1

#: Each namespace has its own ports, so every daemon can use the documented defaults.
HTTP_PORT = 8442
BEACON_PORT = 45317

#: Every wait is bounded. Start-up is a second or two per daemon, run side by side; a beacon
#: goes out at least every 8 s when idle and every second while state changes, so discovery
#: and convergence after a heal take a few beacon rounds at most.
HEALTH_TIMEOUT_S = 15.0
DISCOVERY_TIMEOUT_S = 20.0
REPLICATION_TIMEOUT_S = 10.0
CONVERGENCE_TIMEOUT_S = 20.0
#: How long the cut peer is watched for edits it must not get, once the others have them:
#: more than one active beacon interval, in which a leak across the cut would show.
APART_WATCH_S = 1.5
#: aiohttp pings a quiet link every 10 s (the link transport's heartbeat) and closes it when
#: no pong comes within half of that: about 15 s after the cut, plus slack.
LINK_TIMEOUT_S = 25.0
#: Re-dialing after a heal waits for a beacon and, for the larger peer id, a grace period.
RELINK_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 6.0
REQUEST_TIMEOUT_S = 2.0
POLL_S = 0.1

#: The edits made on each side of the cut, to different fields of one node.
LINKED_DESCRIPTION = "written on the linked side"
CUT_NAME = "renamed by the cut peer"

#: How much of each daemon's log a failure prints.
LOG_TAIL_LINES = 40

#: Runs inside a namespace: reads one JSON request per line on stdin (method, url, body),
#: answers one JSON line per request on stdout (status and body, or status 0 and the error).
CLIENT = r"""
import json
import sys
import urllib.error
import urllib.request

for line in sys.stdin:
    ask = json.loads(line)
    body = None if ask["body"] is None else json.dumps(ask["body"]).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(ask["url"], data=body, method=ask["method"], headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=ask["timeout"]) as response:
            answer = {"status": response.status, "body": response.read().decode()}
    except urllib.error.HTTPError as exc:
        answer = {"status": exc.code, "body": exc.read().decode()}
    except (OSError, ValueError) as exc:
        answer = {"status": 0, "body": "", "error": repr(exc)}
    print(json.dumps(answer), flush=True)
"""


def clean_environ() -> dict[str, str]:
    """This environment without config variables or systemd sockets, so only the file counts."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KRILL_", "NOTIFY_", "WATCHDOG"))
    }
    env["PYTHONPATH"] = str(ROOT)
    return env


def krill_command() -> list[str]:
    """``krill`` from this interpreter's environment (``python -m krill_crdt`` without it)."""
    script = Path(sys.executable).with_name("krill")
    return [str(script)] if script.exists() else [sys.executable, "-m", "krill_crdt"]


class Client:
    """An HTTP client process inside one namespace; one request at a time, each bounded."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", CLIENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=clean_environ(),
        )
        self._pending = b""

    def request(self, method: str, url: str, body: Any = None) -> tuple[int, str]:
        """Send one request; return (status, body), or (0, the error) if no answer came.

        Raises:
            AssertionError: the client process died or did not answer in time.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        ask = {"method": method, "url": url, "body": body, "timeout": REQUEST_TIMEOUT_S}
        self.process.stdin.write(json.dumps(ask).encode() + b"\n")
        self.process.stdin.flush()

        # Read the raw pipe up to the answer's line feed, never past a deadline.
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + REQUEST_TIMEOUT_S + 3.0
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([fd], [], [], max(left, 0.0))
            assert readable, f"the client in {self.namespace} did not answer {method} {url}"
            chunk = os.read(fd, 1 << 20)
            assert chunk, f"the client in {self.namespace} died: {self.stderr()}"
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        answer = json.loads(line)
        return int(answer["status"]), str(answer.get("error", answer["body"]))

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read().decode(errors="replace")

    def close(self) -> None:
        """End the client: it leaves when its stdin closes, or is killed after a bound."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Daemon:
    """One ``krill serve`` in one namespace, with a client beside it."""

    def __init__(self, index: int, host: LanHost, tmp_path: Path, key: Path, group: str) -> None:
        self.name = f"pi-{index}"
        self.host = host
        self.url = f"http://{host.address}:{HTTP_PORT}"
        folder = tmp_path / self.name
        folder.mkdir()
        config = folder / "krill.toml"
        config.write_text(
            f"""\
[peer]
name = "{self.name}"
data_dir = "data"
swarm = "netns-test"
swarm_key_file = "{key}"

[http]
listen = "{host.address}:{HTTP_PORT}"

[discovery]
multicast = true
group = "{group}"
port = {BEACON_PORT}
interface = "{host.address}"

[gpio]
backend = "simulated"

[log]
level = "info"
"""
        )
        self.log = folder / "daemon.log"
        serve = [*krill_command(), "serve", "--config", str(config)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", host.namespace, *serve],
                cwd=folder,
                env=clean_environ(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.client = Client(host.namespace)
        self.peer_id = ""

    def get(self, path: str) -> str:
        status, body = self.client.request("GET", self.url + path)
        assert status == 200, f"GET {path} on {self.name}: {status} {body}"
        return body

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        status, answer = self.client.request("POST", self.url + path, body)
        assert status in (200, 201), f"POST {path} on {self.name}: {status} {answer}"
        return json.loads(answer)

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {node["id"]: node for node in self.get_json("/nodes")}

    def linked(self) -> int:
        """How many peers this one has a live peer link with, from its ``/metrics``."""
        for line in self.get("/metrics").splitlines():
            if line.startswith('krill_peers{state="linked"}'):
                return int(float(line.split()[-1]))
        raise AssertionError(f'{self.name}: no krill_peers{{state="linked"}} in /metrics')

    def wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.name} exited with {self.process.returncode}"
            status, body = self.client.request("GET", self.url + "/health")
            if status == 200:
                self.peer_id = json.loads(body)["peer"]
                return
            time.sleep(POLL_S)
        raise AssertionError(f"{self.name}: no /health within {HEALTH_TIMEOUT_S} s")

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return "\n".join(lines)


class Swarm:
    """The LAN and its daemons, as the test sees them."""

    def __init__(self, lan: Lan, daemons: list[Daemon]) -> None:
        self.lan = lan
        self.daemons = daemons

    def wait_until(self, what: str, timeout: float, check: Callable[[], bool]) -> float:
        """Poll ``check`` until it holds; return the seconds it took; fail after ``timeout``."""
        started = time.monotonic()
        while not check():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not within {timeout} s: {what}")
            time.sleep(POLL_S)
        took = time.monotonic() - started
        print(f"{what}: {took:.1f} s")
        return took

    def assert_apart(self, linked: list[Daemon], cut: Daemon) -> None:
        """Fail if an edit made on one side of the cut has reached the other side."""
        for d in linked:
            nodes = d.nodes()
            assert "cut-side" not in nodes, f"{d.name} got a node made behind the cut"
            assert nodes["shared"]["name"] == "shared", f"{d.name} got an edit from behind the cut"
        alone = cut.nodes()
        assert "linked-side" not in alone, f"{cut.name} got a node made across the cut"
        assert alone["shared"]["meta"]["description"] == "", f"{cut.name} got an edit across it"
        assert alone["shared"]["name"] == CUT_NAME, f"{cut.name} lost its own edit"

    @contextlib.contextmanager
    def logs_on_failure(self) -> Iterator[None]:
        """Print the tail of every daemon's log if the body fails (pytest shows it then)."""
        try:
            yield
        except BaseException:
            self.print_logs()
            raise

    def print_logs(self) -> None:
        for daemon in self.daemons:
            print(f"----- {daemon.name} ({daemon.host.namespace}, {daemon.url}) -----")
            print(daemon.tail(), flush=True)


def stop_all(daemons: list[Daemon]) -> None:
    """SIGTERM every daemon at once; SIGKILL any still running :data:`STOP_TIMEOUT_S` later."""
    for daemon in daemons:
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGTERM)
    for daemon in daemons:
        daemon.client.close()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for daemon in daemons:
        try:
            daemon.process.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            print(f"{daemon.name} ignored SIGTERM for {STOP_TIMEOUT_S} s: killing it")
            daemon.process.kill()
            daemon.process.wait()


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[Swarm]:
    """Start one daemon per namespace on a fresh LAN; stop them and remove the LAN after."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    subnet = free_subnet()
    if subnet is None:
        pytest.skip("every test subnet of 10.213.0.0/16 overlaps a route of this machine")

    key = tmp_path / "swarm.key"
    write_swarm_key(key)
    # A group of its own, so the swarm could never meet another even if a link leaked.
    group = f"239.255.213.{1 + int.from_bytes(os.urandom(1), 'big') % 254}"
    try:
        lan = Lan(PEERS, subnet).open()
    except RuntimeError as exc:
        pytest.skip(f"cannot build the test LAN: {exc}")

    daemons: list[Daemon] = []
    try:
        for i, host in enumerate(lan.hosts):
            daemons.append(Daemon(i, host, tmp_path, key, group))
        swarm = Swarm(lan, daemons)
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        with swarm.logs_on_failure():
            for daemon in daemons:
                daemon.wait_healthy(deadline)
        yield swarm
    finally:
        # The daemons go first: a namespace with a process still inside outlives its name.
        try:
            stop_all(daemons)
        finally:
            lan.close()


def test_peers_find_each_other_and_converge_after_a_cut_their_links_outlive(
    swarm: Swarm,
) -> None:
    # TCP keeps the peer links through a short cut and resends what was lost once it heals.
    with swarm.logs_on_failure():
        _find_replicate_cut_heal(swarm, links_time_out=False)


def test_peers_find_each_other_and_converge_after_a_cut_that_drops_their_links(
    swarm: Swarm,
) -> None:
    # The links' heartbeat closes them during a long cut: the peers must find each other
    # again, dial new links and catch up on what each side wrote meanwhile.
    with swarm.logs_on_failure():
        _find_replicate_cut_heal(swarm, links_time_out=True)


def _find_replicate_cut_heal(swarm: Swarm, *, links_time_out: bool) -> None:
    daemons = swarm.daemons
    ids = {d.peer_id for d in daemons}
    cut = daemons[CUT]
    linked = [d for d in daemons if d is not cut]

    # Step 1: every peer hears the beacons of the three others and links with them.
    def everyone_linked() -> bool:
        return all(
            set(d.get_json("/health")["peers"]) >= ids - {d.peer_id} and d.linked() == PEERS - 1
            for d in daemons
        )

    swarm.wait_until(
        "every peer sees and links with the others", DISCOVERY_TIMEOUT_S, everyone_linked
    )

    # Step 2: a node made on one peer reaches all of them.
    origin = daemons[0]
    origin.post("/node/shared", {"type": "Project", "parent": origin.name, "name": "shared"})
    swarm.wait_until(
        "the node made on pi-0 is on every peer",
        REPLICATION_TIMEOUT_S,
        lambda: all("shared" in d.nodes() for d in daemons),
    )

    # Step 3: cut the last peer off; edit different fields of the shared node on each side
    # and add a node on each side.
    swarm.lan.cut(CUT)
    editor = daemons[1]
    editor.post("/node/shared", {"meta": {"description": LINKED_DESCRIPTION}})
    editor.post("/node/linked-side", {"type": "Project", "parent": editor.name})
    cut.post("/node/shared", {"name": CUT_NAME})
    cut.post("/node/cut-side", {"type": "Project", "parent": cut.name})

    def linked_side_has_its_edits() -> bool:
        for d in linked:
            nodes = d.nodes()
            if "linked-side" not in nodes or nodes["shared"]["meta"]["description"] == "":
                return False
        return True

    swarm.wait_until(
        "the linked peers have the linked side's edits",
        REPLICATION_TIMEOUT_S,
        linked_side_has_its_edits,
    )

    # Step 4: nothing crosses the cut, watched for a while (and until the links time out).
    swarm.assert_apart(linked, cut)
    if links_time_out:

        def links_down() -> bool:
            swarm.assert_apart(linked, cut)
            return cut.linked() == 0 and all(d.linked() == PEERS - 2 for d in linked)

        swarm.wait_until("the links to the cut peer time out", LINK_TIMEOUT_S, links_down)
    watch_until = time.monotonic() + APART_WATCH_S
    while time.monotonic() < watch_until:
        time.sleep(POLL_S)
        swarm.assert_apart(linked, cut)

    # Step 5: heal the cut; every peer ends with every edit, all with the same graph.
    swarm.lan.heal(CUT)

    def converged() -> bool:
        graphs = [d.nodes() for d in daemons]
        if any(graph != graphs[0] for graph in graphs):
            return False
        shared = graphs[0]["shared"]
        return (
            {"linked-side", "cut-side"} <= set(graphs[0])
            and shared["name"] == CUT_NAME
            and shared["meta"]["description"] == LINKED_DESCRIPTION
        )

    swarm.wait_until("all peers converge after the heal", CONVERGENCE_TIMEOUT_S, converged)
    swarm.wait_until(
        "every peer is linked with the others again",
        RELINK_TIMEOUT_S,
        lambda: all(d.linked() == PEERS - 1 for d in daemons),
    )
