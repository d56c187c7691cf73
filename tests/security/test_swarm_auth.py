"""Frames from outside the swarm: spoofed beacons, other keys, replays and floods on UDP."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time

import pytest

from krill_crdt._core.codec import Kind, encode_beacon, encode_frame
from krill_crdt.model import Node, NodeType
from krill_crdt.runtime.peer import Peer, swarm_number
from tests.runtime.test_swarm import contents, wait_for
from tests.security.conftest import SecureSwarm

pytestmark = pytest.mark.timeout(120)


def rejected(peer: Peer, reason: str) -> float:
    return peer.metrics.value("krill_frames_rejected_total", transport="udp", reason=reason)


def sender() -> socket.socket:
    """A UDP socket that sends multicast out of the loopback interface only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    return sock


async def test_spoofed_beacons_and_frames_of_another_key_are_ignored(
    secure: SecureSwarm,
) -> None:
    alpha = await secure.start(secure.config("alpha"))
    before = contents([alpha])
    swarm = swarm_number("secure")
    # A beacon that claims to come from a real-looking peer at an address of the attacker's,
    # advertising a doc the peer would want: signed with a key of the attacker's own.
    impostor = random.randbytes(16)
    payload = encode_beacon(["http://127.0.0.1:9"], {"stolen": b"\x01" * 8})
    now_ms = int(time.time() * 1000)
    wrong_key = random.randbytes(32)
    spoofed = encode_frame(Kind.BEACON, impostor, swarm, 1, now_ms, "", payload, wrong_key)
    update = encode_frame(Kind.UPDATE, impostor, swarm, 2, now_ms, "alpha", b"\x00\x00", wrong_key)
    with sender() as sock:
        for data in (spoofed, update):
            sock.sendto(data, (secure.group, secure.port))
    await wait_for(lambda: rejected(alpha, "BadMacError") >= 2)
    await asyncio.sleep(0.3)
    assert impostor not in alpha.engine.peers()
    assert not alpha.engine.links()
    assert "stolen" not in alpha.store.docs()
    assert contents([alpha]) == before


async def test_a_replayed_frame_is_ignored(secure: SecureSwarm) -> None:
    alpha = await secure.start(secure.config("alpha"))
    key = bytes.fromhex(secure.key.read_text())
    swarm = swarm_number("secure")
    origin = random.randbytes(16)
    now_ms = int(time.time() * 1000)
    # A genuine member's frame, recorded on the wire and sent again later.
    from pycrdt import Doc, Map

    doc = Doc()
    doc.get("nodes", type=Map)["x"] = Map({"name": "first"})
    frame = encode_frame(Kind.UPDATE, origin, swarm, 7, now_ms, "visitor", doc.get_update(), key)
    with sender() as sock:
        sock.sendto(frame, (secure.group, secure.port))
        await wait_for(lambda: "visitor" in alpha.store.docs())
        state = alpha.store.doc("visitor").state_vector()
        for _ in range(3):
            sock.sendto(frame, (secure.group, secure.port))
    await wait_for(lambda: rejected(alpha, "duplicate") >= 3)
    assert alpha.store.doc("visitor").state_vector() == state


async def test_a_datagram_flood_from_one_source_is_cut_to_its_rate(
    secure: SecureSwarm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="krill.transport.udp")
    alpha = await secure.start(secure.config("alpha"))
    garbage = b"\x00" * 64
    with sender() as sock:
        # 3000 in about half a second: far above a burst of 1000 and 500 a second. Sent in
        # batches the peer reads in between, so the kernel's socket buffer never overflows.
        for _ in range(60):
            for _ in range(50):
                sock.sendto(garbage, (secure.group, secure.port))
            await asyncio.sleep(0.005)
    await wait_for(lambda: rejected(alpha, "rate") >= 1)
    refused = rejected(alpha, "MalformedFrameError") + rejected(alpha, "TruncatedFrameError")
    # Past the limit datagrams are not even decoded; the peer still works.
    assert refused < 3000
    await alpha.create(Node.new(NodeType.Project, host="alpha", parent="alpha", id="p", name="p"))
    assert alpha.get("p").name == "p"
    assert len([r for r in caplog.records if "over 500 a second" in r.getMessage()]) == 1
