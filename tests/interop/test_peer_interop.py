"""A stock Yjs client attached to one peer edits a host doc owned by another peer.

The browser case: a client reaches only the peer it is connected to, yet its edit to a node
of another host must reach that host and every other peer, and their edits must reach it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from krill_crdt.model import Node, NodeType
from krill_crdt.transport.yws import TRANSPORT
from tests.interop.test_yjs_interop import CLIENT_TIMEOUT, HERE, SCRIPT, until, until_error
from tests.runtime.test_swarm import Swarm, converged, wait_for


async def test_a_client_on_one_peer_edits_another_hosts_doc_and_sees_its_edits(
    node: str, tmp_path: Path
) -> None:
    swarm = Swarm(tmp_path)
    a = await swarm.start("alpha")
    b = await swarm.start("bravo")
    try:
        await wait_for(lambda: converged([a, b], hosts=2))
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            f"{a.url.replace('http://', 'ws://')}/ws",
            b.host,  # bravo's host doc, reached through alpha
            "from-browser",
            "from-bravo",
            str(int(CLIENT_TIMEOUT * 1000)),
            cwd=HERE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            await until(process.stdout, "synced")
            await until(process.stdout, "wrote")

            # The edit reaches bravo, the doc's host, through alpha.
            await wait_for(lambda: "from-browser" in b.store.doc(b.host))
            theirs = b.get("from-browser")
            assert (theirs.parent, theirs.host) == (b.host, b.host)

            # Bravo's own edit reaches the client through alpha.
            mine = await b.create(
                Node.new(NodeType.Project, host=b.host, parent=b.host, id="from-bravo")
            )
            seen, _ = await until(process.stdout, "seen")
            assert Node.from_fields(seen["node"]) == mine
            assert await asyncio.wait_for(process.wait(), CLIENT_TIMEOUT) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert a.metrics.value("krill_frames_received_total", transport=TRANSPORT, kind="update")
    finally:
        await a.stop()
        await b.stop()


async def test_a_read_only_stock_client_on_a_peer_with_tokens_writes_no_doc(
    node: str, tmp_path: Path
) -> None:
    from dataclasses import replace

    from krill_crdt.runtime.access import new_token
    from krill_crdt.runtime.config import AccessConfig, HttpConfig
    from krill_crdt.runtime.peer import PEER_ID_FILE, Peer

    swarm = Swarm(tmp_path)
    viewer = new_token()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"viewer {viewer}\n")
    tokens.chmod(0o600)
    # The two peers write; the viewer's token may only read.
    ids = []
    for name in ("alpha", "bravo"):
        (tmp_path / name).mkdir()
        ids.append(os.urandom(16))
        (tmp_path / name / PEER_ID_FILE).write_bytes(ids[-1])
    access = AccessConfig(read=("token:viewer",), write=tuple(i.hex() for i in ids))
    config = replace(
        swarm.config("alpha"),
        http=HttpConfig(listen="127.0.0.1:0", token_file=tokens),
        access=access,
    )
    a = await Peer(config).start()
    b = await Peer(replace(swarm.config("bravo"), access=access)).start()
    try:
        await wait_for(lambda: converged([a, b], hosts=2))
        before = [p.store.doc(b.host).state_vector() for p in (a, b)]
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            f"{a.url.replace('http://', 'ws://')}/ws",
            b.host,
            "from-viewer",
            "never",
            str(int(CLIENT_TIMEOUT * 1000)),
            viewer,
            cwd=HERE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            await until(process.stdout, "synced")
            message = await until_error(process.stdout)
            assert "4403" in message["message"]
            assert await asyncio.wait_for(process.wait(), CLIENT_TIMEOUT) == 1
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await asyncio.sleep(0.5)
        assert [p.store.doc(b.host).state_vector() for p in (a, b)] == before
        assert all("from-viewer" not in p.store.doc(b.host) for p in (a, b))
    finally:
        for peer in (a, b):
            await peer.stop()
