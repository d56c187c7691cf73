"""Fuzz target: the daemon's config loader, TOML text and ``KRILL_*`` environment values.

Properties, for any input:

* ``load_config`` returns a config or raises ConfigError, nothing else;
* a ConfigError about one key names that key in its message, and the section too when the
  key belongs to a known section.

The first byte picks what the rest is: 0 the TOML file's bytes as they are; 1 choices that
build environment variables; 2 choices that build a TOML file of known sections and keys with
values of every TOML type, plus environment variables.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project and fuzz/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.common import ContractError, Draw, Target, expect
from krill_crdt.daemon.config import ConfigError, env_name, load_config, schema

RAW_TOML, ENVIRONMENT, BUILT_TOML = range(3)

KEYS = [key for keys in schema().values() for key in keys.values()]
_WORK = Path(tempfile.mkdtemp(prefix="krill-fuzz-config-"))
atexit.register(shutil.rmtree, _WORK, True)
CONFIG = _WORK / "krill.toml"

_VALUES = (
    "",
    "0",
    "1",
    "yes",
    "off",
    "true",
    "-1",
    "65536",
    "8442",
    "127.0.0.1:8442",
    "[::1]:80",
    ":80",
    "239.255.0.69",
    "224.0.0.1",
    "10.0.0.300",
    "http://10.0.0.2:8442,https://x",
    "ftp://x",
    "~/krill",
    "~nobody-here/krill",
    "/var/lib/krill",
    "debug",
    "json",
    "lgpio",
    "a/b",
    "x" * 70,
    "9" * 5000,
)
_TOML_VALUES = (
    '""',
    "true",
    "0",
    "-1",
    "65535",
    "1.5",
    "inf",
    "nan",
    "1979-05-27",
    "[]",
    '["a", "b"]',
    '["http://x", 1]',
    "{}",
    "{ a = 1 }",
    "0x10",
    "9" * 5000,
    "[" * 600 + "]" * 600,
)


def _environment(draw: Draw) -> dict[str, str]:
    env: dict[str, str] = {}
    for _ in range(draw.below(4)):
        kind = draw.below(6)
        if kind == 0:
            name = "KRILL_" + draw.text(16, unicode_only=True).upper()
        elif kind == 1:
            name = env_name(draw.choice(KEYS)) + draw.text(3, unicode_only=True)
        else:
            name = env_name(draw.choice(KEYS))
        # The environment holds no NUL, and undecodable bytes arrive as surrogate escapes.
        text = draw.choice(_VALUES) if draw.flag() else draw.text(40).replace("\0", "")
        env[name.replace("\0", "")] = text
    return env


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        elif 0xD800 <= ord(char) <= 0xDFFF:
            out.append("?")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def build_toml(draw: Draw) -> str:
    """A TOML file of known sections and keys (mostly), with values chosen by ``draw``."""
    by_section: dict[str, list[str]] = {}
    for _ in range(draw.below(6)):
        key = draw.choice(KEYS)
        section = key.section if draw.below(8) else draw.text(6, unicode_only=True)
        name = key.name if draw.below(8) else draw.text(6, unicode_only=True)
        kind = draw.below(3)
        if kind == 0:
            value = draw.choice(_TOML_VALUES)
        elif kind == 1:
            value = _toml_string(draw.choice(_VALUES))
        else:
            value = _toml_string(draw.text(30, unicode_only=True))
        by_section.setdefault(section, []).append(f"{_toml_string(name)} = {value}")
    parts = []
    for section, lines in by_section.items():
        parts.append(f"[{_toml_string(section)}]")
        parts.extend(lines)
    return "\n".join(parts) + "\n"


def _load(path: Path | None, env: dict[str, Any]) -> None:
    _, error = expect(lambda: load_config(path, env), (ConfigError,))
    if not isinstance(error, ConfigError) or not error.key:
        return
    # A variable names its key in upper case (KRILL_HTTP_LISTEN names http.listen).
    message = str(error).lower()
    if error.key.lower() not in message:
        raise ContractError(f"a ConfigError does not name its key\n{message}")
    if error.section and error.section.lower() not in message:
        raise ContractError(f"a ConfigError does not name its section\n{message}")


def check_one(data: bytes) -> None:
    """Load one config from the file or environment the input describes; raise on a finding."""
    mode, rest = (data[0] % 3, data[1:]) if data else (RAW_TOML, b"")
    if mode == RAW_TOML:
        CONFIG.write_bytes(rest)
        _load(CONFIG, {})
    elif mode == ENVIRONMENT:
        _load(None, _environment(Draw(rest)))
    else:
        draw = Draw(rest)
        CONFIG.write_text(build_toml(draw), encoding="utf-8")
        _load(CONFIG, _environment(draw))


def seeds() -> list[bytes]:
    """A LAN config, the embedded defaults, and environment overrides."""
    lan = (
        b'[peer]\nname = "pi-1"\ndata_dir = "/var/lib/krill"\nswarm = "home"\n'
        b'follow = ["pi-1", "pi-2"]\n[http]\nlisten = "0.0.0.0:8442"\n'
        b'[discovery]\ninterface = "192.168.1.10"\nstatic_peers = ["http://192.168.1.11:8442"]\n'
        b'port = 45317\nmulticast = true\n[mqtt]\nurl = "mqtt://broker"\n[gpio]\nbackend = "auto"\n'
        b'[log]\nlevel = "debug"\nformat = "json"\n'
    )
    return [
        bytes([RAW_TOML]) + lan,
        bytes([RAW_TOML]),
        bytes([RAW_TOML]) + b'[http]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n',
        bytes([ENVIRONMENT]) + bytes(range(0, 40)),
        bytes([ENVIRONMENT]) + bytes(range(40, 80)),
        bytes([BUILT_TOML]) + bytes(range(80, 140)),
        bytes([BUILT_TOML]) + bytes(range(140, 200)),
    ]


TARGET = Target("config", check_one, seeds, max_len=4096)

if __name__ == "__main__":
    from fuzz.run import main

    sys.exit(main(["config", *sys.argv[1:]]))
