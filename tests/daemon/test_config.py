"""The TOML config: schema from the dataclasses, env overrides, errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from krill_crdt.daemon.config import ConfigError, env_name, load_config, schema
from krill_crdt.runtime.config import PeerConfig

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_no_file_and_no_env_gives_the_embedded_defaults() -> None:
    assert load_config(None, {}) == PeerConfig()


def test_file_values_are_read_by_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[peer]\nname = "pi-1"\nfollow = ["pi-2"]\n[http]\nlisten = "0.0.0.0:9000"\n'
        "[discovery]\nmulticast = false\nport = 40000\n",
    )
    config = load_config(path, {})
    assert config.peer.name == "pi-1"
    assert config.peer.follow == ("pi-2",)
    assert config.http.port == 9000
    assert config.discovery.multicast is False
    assert config.discovery.port == 40000


def test_relative_paths_in_a_file_are_relative_to_its_folder(tmp_path: Path) -> None:
    path = write(tmp_path, '[peer]\ndata_dir = "data"\nswarm_key_file = "/etc/k"\n')
    config = load_config(path, {})
    assert config.peer.data_dir == tmp_path.resolve() / "data"
    assert config.peer.swarm_key_file == Path("/etc/k")


def test_empty_string_unsets_an_optional_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nurl = ""\n[http]\ntoken_file = ""\n')
    config = load_config(path, {})
    assert config.mqtt.url is None
    assert config.http.token_file is None


def test_unknown_key_names_itself_and_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, '[http]\nlistne = "127.0.0.1:1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: [http] listne: unknown key (did you mean 'listen'?)"
    assert (caught.value.section, caught.value.key) == ("http", "listne")


def test_unknown_section_names_itself_and_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "[discovry]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"\[discovry\]: unknown section \(did you mean 'disc"):
        load_config(path, {})


def test_bad_value_names_the_file_the_key_and_the_rule(tmp_path: Path) -> None:
    path = write(tmp_path, '[http]\nlisten = "nowhere"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == (
        f"{path}: http.listen: must be HOST:PORT with a port 0..65535, got 'nowhere'"
    )


def test_wrong_toml_type_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[discovery]\nport = "45317"\n')
    with pytest.raises(ConfigError, match=r"\[discovery\] port: must be an integer, got '45317'"):
        load_config(path, {})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[http\n")
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}: not valid TOML"):
        load_config(path, {})


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", {})


def test_env_override_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[http]\nlisten = "127.0.0.1:1000"\n')
    config = load_config(path, {"KRILL_HTTP_LISTEN": "127.0.0.1:2000"})
    assert config.http.port == 2000


def test_env_values_are_read_by_type() -> None:
    config = load_config(
        None,
        {
            "KRILL_DISCOVERY_STATIC_PEERS": "http://a:1, http://b:2,",
            "KRILL_DISCOVERY_MULTICAST": "0",
            "KRILL_DISCOVERY_PEER_LINKS": "False",
            "KRILL_DISCOVERY_PORT": "40001",
            "KRILL_PEER_DATA_DIR": "/var/lib/krill",
            "KRILL_MQTT_URL": "",
        },
    )
    assert config.discovery.static_peers == ("http://a:1", "http://b:2")
    assert config.discovery.multicast is False
    assert config.discovery.peer_links is False
    assert config.discovery.port == 40001
    assert config.peer.data_dir == Path("/var/lib/krill")
    assert config.mqtt.url is None


def test_bad_env_value_names_the_variable_and_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"KRILL_DISCOVERY_PORT": "70000"})
    assert str(caught.value) == "KRILL_DISCOVERY_PORT: discovery.port: must be 1..65535, got 70000"


def test_unknown_env_key_in_a_known_section_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'KRILL_HTTP_LISTEN'\?"):
        load_config(None, {"KRILL_HTTP_LISTNE": "x"})


def test_other_krill_variables_are_not_config() -> None:
    assert load_config(None, {"KRILL_NO_EXTENSIONS": "1"}) == PeerConfig()


def test_every_section_dataclass_field_is_in_the_schema() -> None:
    keys = {key.dotted for section in schema().values() for key in section.values()}
    assert "discovery.peer_links" in keys
    assert "log.format" in keys
    assert all(env_name(k).startswith("KRILL_") for s in schema().values() for k in s.values())


def _documented_keys() -> set[str]:
    """``section.key`` for every row of a key table under a ``## [section]`` heading."""
    found: set[str] = set()
    section = ""
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## `?\[(\w+)\]`?", line)
        if heading:
            section = heading.group(1)
        row = re.match(r"^\| `(\w+)` \|", line)
        if row and section:
            found.add(f"{section}.{row.group(1)}")
    return found


def test_docs_config_md_documents_exactly_the_schema() -> None:
    keys = {key.dotted for section in schema().values() for key in section.values()}
    documented = _documented_keys()
    assert keys - documented == set(), "keys missing from docs/config.md"
    assert documented - keys == set(), "docs/config.md documents keys that do not exist"
