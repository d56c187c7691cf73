"""What ``krill init`` writes: a commented config with every key, and a swarm key.

The keys come from the schema (:func:`krill_crdt.daemon.config.schema`); :data:`KEY_HELP` gives
each its comment, and a key without one is a programming error caught by the tests.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from .config import Key, env_name, schema

__all__ = [
    "KEY_HELP",
    "LAN_INTERFACE_PLACEHOLDER",
    "SWARM_KEY_BYTES",
    "render_config",
    "write_swarm_key",
]

#: Size of a generated swarm key: 256 bits, the key size of the frames' HMAC-SHA256.
SWARM_KEY_BYTES = 32

#: Written as the LAN template's multicast interface. It is deliberately not an address, so a
#: config whose placeholder was not filled in refuses to load and names the key.
LAN_INTERFACE_PLACEHOLDER = "FILL-IN-LAN-ADDRESS"

#: One comment per key, in words for the person editing the file.
KEY_HELP: dict[str, str] = {
    "peer.name": "This peer's host id, the name of its host doc. Default: the host name.",
    "peer.data_dir": "Where the store, the peer id and a generated swarm key live.",
    "peer.swarm": "The swarm's name; peers replicate only within one swarm.",
    "peer.swarm_key_file": (
        "The swarm's shared secret (32 bytes), which authenticates every frame. Every peer of "
        'the swarm needs the same file. "" makes a random key in data_dir: a swarm of one.'
    ),
    "peer.follow": "Host docs to replicate; [] replicates all of them.",
    "http.listen": "HOST:PORT of the REST API, /sync, /ws, /metrics and the dashboard.",
    "http.token_file": 'File holding the token clients must present; "" for none.',
    "http.tls_cert": 'PEM certificate for HTTPS; set together with tls_key. "" for plain HTTP.',
    "http.tls_key": 'PEM private key for HTTPS; set together with tls_cert. "" for plain HTTP.',
    "http.allowed_origins": (
        "Other web origins (https://host:port) whose pages may call this API from a browser; "
        "the dashboard's own origin is always allowed."
    ),
    "http.tls_ca": 'CA certificate (PEM) to verify https peers with; "" for the system CAs.',
    "discovery.multicast": "Send and listen for multicast beacons to find peers.",
    "discovery.group": "Multicast group of the beacons.",
    "discovery.port": "UDP port of the beacons; every peer of the swarm uses the same one.",
    "discovery.interface": (
        "IPv4 address of the interface beacons go out on, and the address advertised to peers "
        "when http.listen is 0.0.0.0."
    ),
    "discovery.static_peers": 'Peers to dial directly, as http(s) URLs: ["http://pi-2:8442"].',
    "discovery.peer_links": (
        "Dial discovered peers over WebSocket. false for peers that share only an MQTT broker."
    ),
    "mqtt.url": 'Broker URL (mqtt://host:1883, mqtts://host:8883); "" leaves MQTT off.',
    "mqtt.username": 'Broker user name; "" for none.',
    "mqtt.password_file": 'File holding the broker password; "" for none.',
    "mqtt.tls_ca": 'CA certificate (PEM) to verify the broker with; "" for the system CAs.',
    "gpio.backend": (
        '"auto" (real pins on a Raspberry Pi, else simulated), "lgpio" (real pins or fail) or '
        '"simulated".'
    ),
    "log.level": "debug, info, warning or error.",
    "log.format": '"text" for people, "json" for one JSON object per line.',
    "access.read": (
        'Who may read host docs: peer ids (hex, from /health), "token:NAME" for a token of '
        'http.token_file, "*" for everyone; "DOC=WHO" for one host doc only.'
    ),
    "access.write": 'Who may write host docs (and so read them), as for read: ["*"] or '
    '["greenhouse=token:admin", "shed=*"].',
}


@dataclass(frozen=True, slots=True)
class _Line:
    value: str
    comment: str = ""
    commented_out: bool = False


def _toml(value: object) -> str:
    """A value as TOML (only the kinds the schema has)."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _default_route_address() -> str | None:
    """This machine's address on the interface of its default route, if it has one.

    A connected UDP socket sends nothing; connecting only asks the kernel for a route.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith(("0.", "127.")) else address


def _lan_values() -> dict[str, _Line]:
    guess = _default_route_address()
    hint = f" This machine's default route goes out from {guess}." if guess else ""
    return {
        "peer.data_dir": _Line(
            '"/var/lib/krill"', "The service's state directory (StateDirectory=krill)."
        ),
        "peer.swarm_key_file": _Line(
            '"swarm.key"',
            "Generated next to this file; copy it to every peer of the swarm. "
            "A relative path is relative to this file's folder.",
        ),
        "http.listen": _Line('"0.0.0.0:8442"', "Every interface: the LAN can reach this peer."),
        "discovery.interface": _Line(
            f'"{LAN_INTERFACE_PLACEHOLDER}"',
            "REQUIRED: replace with this machine's IPv4 address on the LAN (see `ip -4 addr`); "
            "peers reach this one at that address. The config refuses to load until it is "
            f"filled in.{hint}",
        ),
        "gpio.backend": _Line('"auto"', "Real pins on a Raspberry Pi, simulated elsewhere."),
    }


def _wrap(text: str, width: int = 96) -> list[str]:
    lines: list[str] = []
    current = "#"
    for word in text.split():
        if len(current) + 1 + len(word) > width and current != "#":
            lines.append(current)
            current = "#"
        current += " " + word
    lines.append(current)
    return lines


def render_config(*, lan: bool = False) -> str:
    """Return a config file with every key of the schema, each under its comment.

    Args:
        lan: write a LAN deployment (listen on every interface, multicast on a LAN address
            the user fills in, a swarm key file next to the config) instead of the defaults.

    Returns:
        The TOML text; without ``lan`` it loads into exactly the embedded defaults.
    """
    overrides = _lan_values() if lan else {}
    what = "a LAN deployment" if lan else "the embedded defaults of `krill serve`"
    out = [
        f"# krill_crdt peer configuration: {what}.",
        "# Every key can also be set by an environment variable, KRILL_SECTION_KEY",
        "# (KRILL_HTTP_LISTEN=127.0.0.1:9000), which wins over this file.",
        '# Keys that take a file accept "" for "not set". The reference is docs/config.md.',
    ]
    for section, keys in schema().items():
        out += ["", f"[{section}]"]
        for key in keys.values():
            out += _key_lines(key, overrides.get(key.dotted))
    return "\n".join(out) + "\n"


def _key_lines(key: Key, override: _Line | None) -> list[str]:
    lines = _wrap(KEY_HELP[key.dotted])
    if override is not None:
        lines += _wrap(override.comment) if override.comment else []
        lines.append(f"{key.name} = {override.value}")
    elif key.dotted == "peer.name":
        # Written out, a default host name would follow the file to the next machine.
        lines.append(f'# {key.name} = "{socket.gethostname().split(".")[0] or "krill"}"')
    else:
        lines.append(f"{key.name} = {_toml(key.default)}")
    lines[-1] += f"  # {env_name(key)}"
    return lines


def write_swarm_key(path: Path) -> bool:
    """Write a fresh random swarm key to ``path``, readable by its owner only (0600).

    An existing key is kept: replacing it would cut this peer off from its swarm.

    Returns:
        True if a key was written, False if one was already there.

    Raises:
        OSError: the file cannot be created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        # Hex text: it survives copying between machines, editors and terminals intact.
        handle.write(secrets.token_bytes(SWARM_KEY_BYTES).hex().encode() + b"\n")
    # The umask can only remove bits; this makes 0600 hold even under an odd umask.
    os.chmod(path, 0o600)
    return True
