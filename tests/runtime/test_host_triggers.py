"""Triggers on the host: incoming webhooks (token, JSON body, bad calls) and timers."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from krill_crdt.model import Node, NodeState, NodeType
from krill_crdt.runtime.processors import hash_token
from tests.runtime.test_swarm import Swarm, wait_for


async def test_a_webhook_call_runs_the_chain_and_bad_calls_are_refused(tmp_path: Path) -> None:
    swarm = Swarm(tmp_path)
    peer = await swarm.start("gate-host")
    try:
        await peer.create(
            Node.new(
                NodeType.IncomingWebHook,
                host=peer.host,
                parent=peer.host,
                id="doorbell",
                meta={"path": "/hooks/doorbell", "token_hash": hash_token("s3cret")},
            )
        )
        url = f"{peer.url}/hooks/doorbell"
        async with aiohttp.ClientSession() as session:
            async with session.post(
                url, json={"ring": 1}, headers={"Authorization": "Bearer s3cret"}
            ) as ok:
                assert ok.status == 200
                assert (await ok.json())["ran"] == ["doorbell"]
            async with session.post(url, json={}, headers={"X-Krill-Token": "wrong"}) as denied:
                assert denied.status == 401
                assert "token" in (await denied.json())["error"]
            async with session.post(
                url, data=b"{not json", headers={"X-Krill-Token": "s3cret"}
            ) as bad:
                assert bad.status == 400
                assert "not valid JSON" in (await bad.json())["error"]
            async with session.post(f"{peer.url}/hooks/nothing-here", json={}) as missing:
                assert missing.status == 404

        assert peer.get("doorbell").state is NodeState.WARN
        assert "not valid JSON" in peer.store.doc(peer.host).errors["doorbell"]
        assert peer.metrics.value("krill_node_executions_total", type="IncomingWebHook") == 1
    finally:
        await peer.stop()
        swarm.peers.clear()


async def test_a_timer_on_the_host_fires_on_its_own(tmp_path: Path) -> None:
    swarm = Swarm(tmp_path)
    peer = await swarm.start("timed")
    try:
        await peer.create(
            Node.new(
                NodeType.Timer,
                host=peer.host,
                parent=peer.host,
                id="tick",
                meta={"interval_ms": 200},
            )
        )
        await wait_for(
            lambda: peer.metrics.value("krill_node_executions_total", type="Timer") >= 3,
            timeout=5,
        )
    finally:
        await peer.stop()
        swarm.peers.clear()
