"""A stock Yjs client attached to one peer edits a host doc owned by another peer.

The browser case: a client reaches only the peer it is connected to, yet its edit to a node
of another host must reach that host and every other peer, and their edits must reach it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from krill_crdt.model import Node, NodeType
from krill_crdt.transport.yws import TRANSPORT
from tests.interop.test_yjs_interop import CLIENT_TIMEOUT, HERE, SCRIPT, until
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
