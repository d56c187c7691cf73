"""Secrets: ``krill keygen``, file modes, and no key, token or password in any log line."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import aiohttp
import pytest

from krill_crdt.cli import main
from krill_crdt.errors import KrillError
from krill_crdt.runtime.access import Tokens
from krill_crdt.runtime.config import HttpConfig, MqttConfig
from krill_crdt.runtime.peer import Peer
from tests.mqtt_broker import MosquittoBroker
from tests.runtime.test_swarm import wait_for
from tests.security.conftest import SecureSwarm, bearer

pytestmark = pytest.mark.timeout(120)


def test_keygen_writes_a_private_hex_key_and_never_replaces_one_unasked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "swarm.key"
    assert main(["keygen", "-o", str(key)]) == 0
    text = key.read_text()
    assert len(text.strip()) == 64 and int(text, 16) >= 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert text.strip() not in capsys.readouterr().out  # the key is not printed

    assert main(["keygen", "-o", str(key)]) == 1
    assert "exists" in capsys.readouterr().err
    assert key.read_text() == text
    assert main(["keygen", "-o", str(key), "--force"]) == 0
    assert key.read_text() != text
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_keygen_adds_named_tokens_that_the_token_file_reader_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "tokens"
    assert main(["keygen", "--token", "admin", "-o", str(tokens)]) == 0
    admin = capsys.readouterr().out.strip()
    assert main(["keygen", "--token", "viewer", "-o", str(tokens)]) == 0
    viewer = capsys.readouterr().out.strip()
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    loaded = Tokens.load(tokens)
    assert (loaded.name_of(admin), loaded.name_of(viewer)) == ("admin", "viewer")
    assert loaded.name_of(admin[:-1]) is None
    assert main(["keygen", "--token", "admin", "-o", str(tokens)]) == 1
    assert main(["keygen", "--token", "bad name", "-o", str(tokens)]) == 2


async def test_a_key_file_others_can_read_is_warned_about(
    secure: SecureSwarm, caplog: pytest.LogCaptureFixture
) -> None:
    secure.key.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="krill")
    await secure.start(secure.config("alpha"))
    warnings = [r.getMessage() for r in caplog.records if "chmod 600" in r.getMessage()]
    assert len(warnings) == 1 and str(secure.key) in warnings[0] and "644" in warnings[0]


async def test_no_key_token_or_password_reaches_a_log_line(
    secure: SecureSwarm,
    mqtt_broker_password: MosquittoBroker,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = mqtt_broker_password.user.password
    password_file = tmp_path / "mqtt.password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    config = secure.config("alpha", tokens=True)
    config = type(config)(
        peer=config.peer,
        http=HttpConfig(listen="127.0.0.1:0", token_file=secure.token_file),
        discovery=config.discovery,
        mqtt=MqttConfig(
            url=mqtt_broker_password.url,
            username=mqtt_broker_password.user.username,
            password_file=password_file,
        ),
        access=config.access,
    )
    peer = await secure.start(config)
    await wait_for(
        lambda: peer.metrics.value("krill_frames_sent_total", transport="mqtt", kind="beacon") >= 1
    )
    admin = secure.tokens["admin"]
    async with aiohttp.ClientSession(peer.url) as http:
        # Right and wrong tokens, in headers and in query strings, on every kind of route.
        for headers in (bearer(admin), bearer(admin[:-2] + "xx"), bearer("")):
            for path in ("/nodes", "/node/nope", "/metrics", "/sync/alpha"):
                async with http.get(path, headers=headers) as response:
                    await response.read()
            async with http.post("/node/p", data=b"{bad json", headers=headers) as response:
                await response.read()
        async with http.get("/events", params={"token": admin + "wrong"}) as response:
            await response.read()
        ws = await http.ws_connect("/ws/alpha", params={"token": admin[::-1]})
        await ws.receive(timeout=5)
        ws = await http.ws_connect("/ws/nope", params={"token": admin})
        await ws.receive(timeout=5)
    # The broker refusing a wrong password (here: the swarm key file) must not echo it.
    bad = MqttConfig(url=mqtt_broker_password.url, username="krill", password_file=secure.key)
    other = secure.config("bravo")
    broken = Peer(
        type(other)(peer=other.peer, http=other.http, discovery=other.discovery, mqtt=bad)
    )
    with pytest.raises(KrillError) as refused:
        await broken.start()
    assert "not authorised" in str(refused.value)
    errors = str(refused.value)

    logged = caplog.text + "".join(str(r.args) for r in caplog.records) + errors
    secrets = [secure.key.read_text().strip(), password, *secure.tokens.values()]
    assert len(caplog.records) > 30  # the run did log, at debug level
    for secret in secrets:
        assert secret not in logged
        assert secret[:12] not in logged
