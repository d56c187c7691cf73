"""Shared set-up of the security tests: peers with fixed ids, tokens and access lists."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from krill_crdt.runtime.access import new_token
from krill_crdt.runtime.config import (
    AccessConfig,
    DiscoveryConfig,
    HttpConfig,
    PeerConfig,
    PeerSection,
)
from krill_crdt.runtime.peer import PEER_ID_FILE, Peer


class SecureSwarm:
    """Peers on loopback sharing a swarm key, with known peer ids and one token file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.key = root / "swarm.key"
        self.key.write_text(random.randbytes(32).hex() + "\n")
        self.key.chmod(0o600)
        self.group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
        self.port = random.randint(20_000, 32_000)
        self.tokens = {"admin": new_token(), "viewer": new_token(), "shed": new_token()}
        self.token_file = root / "tokens"
        self.token_file.write_text(
            "# name token\n" + "".join(f"{n} {t}\n" for n, t in self.tokens.items())
        )
        self.token_file.chmod(0o600)
        self.peers: list[Peer] = []

    def peer_id(self, name: str) -> str:
        """The peer id ``name`` will have: written into its data dir before it starts."""
        data_dir = self.root / name
        data_dir.mkdir(exist_ok=True)
        path = data_dir / PEER_ID_FILE
        if not path.exists():
            path.write_bytes(random.randbytes(16))
        return path.read_bytes().hex()

    def config(
        self,
        name: str,
        *,
        access: AccessConfig | None = None,
        tokens: bool = False,
        http: HttpConfig | None = None,
    ) -> PeerConfig:
        self.peer_id(name)
        return PeerConfig(
            peer=PeerSection(
                name=name, data_dir=self.root / name, swarm="secure", swarm_key_file=self.key
            ),
            http=http
            or HttpConfig(listen="127.0.0.1:0", token_file=self.token_file if tokens else None),
            discovery=DiscoveryConfig(group=self.group, port=self.port, interface="127.0.0.1"),
            access=access or AccessConfig(),
        )

    async def start(self, config: PeerConfig) -> Peer:
        peer = await Peer(config).start()
        self.peers.append(peer)
        return peer


@pytest.fixture
async def secure(tmp_path: Path) -> AsyncIterator[SecureSwarm]:
    group = SecureSwarm(tmp_path)
    yield group
    for peer in group.peers:
        await peer.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
