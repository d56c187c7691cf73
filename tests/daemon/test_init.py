"""``krill init``: a commented config that loads back, and a private swarm key for --lan."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from krill_crdt.cli import main
from krill_crdt.daemon.config import ConfigError, env_name, load_config, schema
from krill_crdt.daemon.template import KEY_HELP, LAN_INTERFACE_PLACEHOLDER
from krill_crdt.runtime.config import PeerConfig


def test_every_key_has_a_comment() -> None:
    keys = {key.dotted for section in schema().values() for key in section.values()}
    assert set(KEY_HELP) == keys


def test_init_writes_every_key_and_loads_back_into_the_defaults(tmp_path: Path) -> None:
    output = tmp_path / "krill.toml"
    assert main(["init", "--output", str(output)]) == 0
    text = output.read_text()
    for section in schema().values():
        for key in section.values():
            assert f"{key.name} = " in text
            assert env_name(key) in text
    config = load_config(output, {})
    defaults = PeerConfig()
    assert config.http == defaults.http
    assert config.discovery == defaults.discovery
    assert config.peer.name == defaults.peer.name
    assert config.peer.data_dir == tmp_path.resolve() / ".krill"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    output = tmp_path / "krill.toml"
    output.write_text("# mine\n")
    assert main(["init", "--output", str(output)]) == 1
    assert output.read_text() == "# mine\n"
    assert main(["init", "--output", str(output), "--force"]) == 0
    assert "[http]" in output.read_text()


def test_init_lan_writes_a_0600_swarm_key_next_to_the_config(tmp_path: Path) -> None:
    output = tmp_path / "etc" / "krill.toml"
    assert main(["init", "--lan", "--output", str(output)]) == 0
    key = output.parent / "swarm.key"
    assert len(bytes.fromhex(key.read_text())) == 32  # 64 hex digits and a newline
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_init_lan_keeps_an_existing_swarm_key(tmp_path: Path) -> None:
    key = tmp_path / "swarm.key"
    key.write_bytes(b"k" * 32)
    assert main(["init", "--lan", "--output", str(tmp_path / "krill.toml")]) == 0
    assert key.read_bytes() == b"k" * 32


def test_init_lan_config_refuses_to_load_until_the_interface_is_filled_in(
    tmp_path: Path,
) -> None:
    output = tmp_path / "krill.toml"
    assert main(["init", "--lan", "--output", str(output)]) == 0
    with pytest.raises(ConfigError, match=r"discovery\.interface: must be an IPv4 address"):
        load_config(output, {})

    output.write_text(output.read_text().replace(LAN_INTERFACE_PLACEHOLDER, "192.168.1.20"))
    config = load_config(output, {})
    assert config.http.listen == "0.0.0.0:8442"
    assert config.discovery.interface == "192.168.1.20"
    assert config.peer.swarm_key_file == tmp_path.resolve() / "swarm.key"
    assert config.peer.data_dir == Path("/var/lib/krill")
    assert config.gpio.backend == "auto"
