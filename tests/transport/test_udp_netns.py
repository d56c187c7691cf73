"""UDP multicast between two hosts, simulated by two network namespaces joined by a veth pair.

The namespaces, the veth pair, their addresses (10.77.0.0/24) and their multicast routes
exist only for the duration of the test and only inside the namespaces: nothing is sent on
this machine's own interfaces. Each namespace runs a child interpreter that uses the real
transport with its veth address as the interface.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import ip, netns_unavailable

#: The project's root, so the children import this checkout of krill_crdt.
ROOT = Path(__file__).resolve().parents[2]

#: Addresses on the veth pair, private (RFC 1918) and present only inside the namespaces.
ADDRESS_A = "10.77.0.1"
ADDRESS_B = "10.77.0.2"
PREFIX = 24

#: Bounds of each wait, so the whole test stays well under 15 s even when it fails.
READY_SECONDS = 6.0
CHILD_SECONDS = 8.0

#: Run inside a namespace: ``role interface group port payload_hex``. The receiver prints
#: ``ready`` once it has joined, then one JSON line about the first datagram it hears. The
#: sender (loopback off) sends the payload three times, listens a little longer, then prints
#: one JSON line with what it heard of its own datagrams and what it counted.
CHILD = r"""
import asyncio
import json
import sys

from krill_crdt.metrics import Metrics
from krill_crdt.sync.link import Link, Send
from krill_crdt.transport.udp import MulticastOptions, UdpMulticastTransport


async def main(role, interface, group, port, payload_hex):
    payload = bytes.fromhex(payload_hex)
    heard = asyncio.Queue()
    options = MulticastOptions(
        group=group, port=int(port), interface=interface, loopback=role == "recv"
    )
    transport = UdpMulticastTransport(options, Metrics())
    await transport.start(lambda data, link: heard.put_nowait((data, link)))
    try:
        if role == "recv":
            print("ready", flush=True)
            data, link = await asyncio.wait_for(heard.get(), 5)
            print(json.dumps({"data": data.hex(), "broadcast": link == Link("udp", None)}))
        else:
            for _ in range(3):
                transport.send(Send(Link("udp", None), payload, "beacon"))
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
            sent = transport.metrics.value(
                "krill_frames_sent_total", transport="udp", kind="beacon"
            )
            print(json.dumps({"heard_self": heard.qsize(), "sent": sent}))
    finally:
        await transport.stop()


asyncio.run(main(*sys.argv[1:]))
"""


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    """Make namespaces A and B joined by a veth pair; remove both afterwards, even on failure.

    Returns:
        The names of namespace A (10.77.0.1) and namespace B (10.77.0.2).
    """
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)

    # A random tag keeps parallel runs apart; veth names must fit IFNAMSIZ (15 characters).
    tag = secrets.token_hex(3)
    ns_a, ns_b = f"krill-{tag}-a", f"krill-{tag}-b"
    veth_a, veth_b = f"kv{tag}a", f"kv{tag}b"
    try:
        ip("netns", "add", ns_a)
        ip("netns", "add", ns_b)
        # Both ends are created directly inside their namespaces, never in this one.
        ip("-n", ns_a, "link", "add", veth_a, "type", "veth", "peer", "name", veth_b, "netns", ns_b)
        for ns, dev, address in ((ns_a, veth_a, ADDRESS_A), (ns_b, veth_b, ADDRESS_B)):
            ip("-n", ns, "addr", "add", f"{address}/{PREFIX}", "dev", dev)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        yield ns_a, ns_b
    finally:
        # Deleting a namespace also deletes the veth end inside it, and so the pair.
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def child(ns: str, *args: str) -> list[str]:
    """Return the command that runs the child script inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, sys.executable, "-c", CHILD, *args]


def test_frame_sent_in_one_namespace_arrives_in_the_other(two_hosts: tuple[str, str]) -> None:
    ns_a, ns_b = two_hosts
    group = f"239.255.{1 + secrets.randbelow(254)}.{1 + secrets.randbelow(254)}"
    port = str(20000 + secrets.randbelow(12000))
    payload = secrets.token_bytes(200)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    receiver = subprocess.Popen(
        child(ns_b, "recv", ADDRESS_B, group, port, payload.hex()),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        # Step 1: wait until B has joined the group, or the datagrams would go unheard.
        assert receiver.stdout is not None
        readable, _, _ = select.select([receiver.stdout], [], [], READY_SECONDS)
        assert readable, "the receiver did not join in time"
        assert receiver.stdout.readline().strip() == "ready", receiver.stderr

        # Step 2: A sends with loopback off.
        sender = subprocess.run(
            child(ns_a, "send", ADDRESS_A, group, port, payload.hex()),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=CHILD_SECONDS,
            check=False,
        )
        assert sender.returncode == 0, sender.stderr
        out, err = receiver.communicate(timeout=CHILD_SECONDS)
        assert receiver.returncode == 0, err
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.communicate()

    # Step 3: B got the bytes unchanged on the broadcast link; A, with loopback off on a
    # real link, did not hear itself, and counted each datagram it sent.
    heard = json.loads(out)
    assert heard == {"data": payload.hex(), "broadcast": True}
    report = json.loads(sender.stdout)
    assert report == {"heard_self": 0, "sent": 3.0}
