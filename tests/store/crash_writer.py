"""Child process of the crash-safety test: writes nodes and prints each acknowledgement.

Usage: python crash_writer.py DATA_DIR FSYNC_POLICY START

Every line ``ack create ID`` or ``ack update ID N`` is printed only after the store has
acknowledged that write as durable. The parent kills this process with SIGKILL at a random
moment and checks that everything acknowledged is in the store.
"""

from __future__ import annotations

import asyncio
import sys

from krill_crdt.model import Node, NodeType
from krill_crdt.store import LogOptions, Store

HOST = "crash-host"


async def main(data_dir: str, fsync: str, start: int) -> None:
    options = LogOptions(fsync=fsync, batch_delay_ms=2.0)  # type: ignore[arg-type]
    async with Store(data_dir, options=options) as store:
        if "srv" not in store.doc(HOST, create=True):
            await store.create(Node.new(NodeType.Server, host=HOST, id="srv"))
        number = start
        while True:
            node_id = f"n{number}"
            await store.create(
                Node.new(NodeType.Project, host=HOST, parent="srv", id=node_id, name="0")
            )
            print(f"ack create {node_id}", flush=True)
            for version in (1, 2):
                await store.update(node_id, {"name": str(version)})
                print(f"ack update {node_id} {version}", flush=True)
            number += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
