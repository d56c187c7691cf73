"""Bad frames on every transport of a running peer: refused, counted, logged once, harmless."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from krill_crdt._core.codec import Kind, encode_frame
from krill_crdt.runtime.config import (
    DiscoveryConfig,
    HttpConfig,
    MqttConfig,
    PeerConfig,
    PeerSection,
)
from krill_crdt.runtime.peer import Peer, swarm_number
from krill_crdt.sync.docs import MemoryDocs
from krill_crdt.sync.engine import SyncEngine
from krill_crdt.transport.ws import CHALLENGE_HEADER
from tests.mqtt_broker import MosquittoBroker
from tests.runtime.test_swarm import contents, wait_for

pytestmark = pytest.mark.timeout(120)

SWARM = "hostile"


def bad_frames(key: bytes, origin: bytes, base: int) -> dict[str, bytes]:
    """One frame per way of being wrong, with the rejection reason each must be counted as.

    ``base`` sets the sequence numbers: one replay window serves every transport, so each
    transport gets frames of its own numbers.
    """
    swarm = swarm_number(SWARM)
    now_ms = int(time.time() * 1000)
    valid = encode_frame(Kind.UPDATE, origin, swarm, base, now_ms, "alpha", b"\x00\x00", key)
    unknown_version = bytearray(valid)
    unknown_version[2] = 99
    return {
        "MalformedFrameError": random.Random(1).randbytes(200),
        "TruncatedFrameError": valid[:30],
        "BadMacError": encode_frame(
            Kind.UPDATE, origin, swarm, base + 1, now_ms, "alpha", b"\x00\x00", b"w" * 32
        ),
        "UnknownVersionError": bytes(unknown_version),
        "swarm": encode_frame(
            Kind.UPDATE, origin, swarm + 1, base + 2, now_ms, "alpha", b"\x00\x00", key
        ),
        "update": encode_frame(
            Kind.UPDATE, origin, swarm, base + 3, now_ms, "alpha", b"\xff\xfe", key
        ),
        "valid": valid,
    }


def rejected(peer: Peer, transport: str, reason: str) -> float:
    return peer.metrics.value("krill_frames_rejected_total", transport=transport, reason=reason)


async def test_bad_frames_on_every_transport_are_refused_and_change_nothing(
    tmp_path: Path,
    mqtt_broker_factory: Callable[..., MosquittoBroker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = mqtt_broker_factory()
    key_file = tmp_path / "swarm.key"
    key = random.randbytes(32)
    key_file.write_bytes(key)
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    port = random.randint(20_000, 32_000)
    config = PeerConfig(
        peer=PeerSection(
            name="alpha", data_dir=tmp_path / "alpha", swarm=SWARM, swarm_key_file=key_file
        ),
        http=HttpConfig(listen="127.0.0.1:0"),
        discovery=DiscoveryConfig(group=group, port=port, interface="127.0.0.1"),
        mqtt=MqttConfig(url=broker.url),
    )
    caplog.set_level(logging.DEBUG, logger="krill")
    intruder = bytes(range(16))
    async with Peer(config) as peer:
        before = contents([peer])

        # UDP: each bad frame twice (the second of each is logged at debug only), plus the
        # valid one twice (the second is a replay) and one datagram over the size limit.
        frames = bad_frames(key, intruder, 1 << 41)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        try:
            for data in frames.values():
                sender.sendto(data, (group, port))
                sender.sendto(data, (group, port))
            sender.sendto(b"\x00" * 4000, (group, port))
        finally:
            sender.close()
        await wait_for(lambda: rejected(peer, "udp", "duplicate") >= 1)

        # MQTT: the same frames published on the doc's update topic.
        frames = bad_frames(key, intruder, 2 << 41)
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            for data in frames.values():
                await client.publish(f"krill/v1/{SWARM}/alpha/update", data, qos=1)
        await wait_for(lambda: rejected(peer, "mqtt", "update") >= 1)

        # WebSocket peer link: a hello made with the right key, then the bad frames.
        frames = bad_frames(key, intruder, 3 << 41)
        other = SyncEngine(
            intruder, key=key, swarm=swarm_number(SWARM), docs=MemoryDocs(), now=time.time()
        )
        link_url = f"{peer.url.replace('http://', 'ws://')}/krill/v1/link"
        challenge = {CHALLENGE_HEADER: bytes(16).hex()}
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(link_url, headers=challenge) as ws,
        ):
            theirs = await ws.receive(timeout=5)
            await ws.send_bytes(other.hello(time.time(), theirs.data))
            await ws.receive(timeout=5)  # the peer's own hello
            for name, data in frames.items():
                if name != "valid":
                    await ws.send_bytes(data)
            await wait_for(lambda: rejected(peer, "ws", "update") >= 1)

        # HTTP: a garbage update on /sync.
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{peer.url}/sync/alpha",
                data=b"\xff\xfe garbage",
                headers={"Content-Type": "application/octet-stream"},
            ) as response,
        ):
            assert response.status == 400

        await asyncio.sleep(0.2)
        for transport in ("udp", "mqtt", "ws"):
            for reason in ("MalformedFrameError", "TruncatedFrameError", "BadMacError", "swarm"):
                assert rejected(peer, transport, reason) >= 1, (transport, reason)
            assert rejected(peer, transport, "UnknownVersionError") >= 1, transport
            assert rejected(peer, transport, "update") >= 1, transport
        assert rejected(peer, "udp", "duplicate") >= 1
        assert rejected(peer, "udp", "oversized") == 1
        assert contents([peer]) == before

    # Each source and reason is warned about once; repeats go to debug.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    bad_mac_udp = [m for m in warnings if "udp" in m and "BadMacError" in m]
    assert len(bad_mac_udp) == 1
    assert not any(key.hex() in m for m in warnings)
