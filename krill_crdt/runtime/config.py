"""Peer configuration: the sections and keys of the TOML config, as frozen dataclasses.

Every value validates itself on construction and names its key when it is wrong
(``http.listen: must be HOST:PORT, got 'x'``). The defaults are the embedded defaults of
``krill serve`` without a config: data under ``./.krill``, HTTP on 127.0.0.1:8442, multicast on
the loopback interface only, simulated GPIO, no MQTT.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ValidationError
from ..model import check_host_id

__all__ = [
    "EVERYONE",
    "AccessConfig",
    "DiscoveryConfig",
    "GpioConfig",
    "HttpConfig",
    "LogConfig",
    "MqttConfig",
    "PeerConfig",
    "PeerSection",
    "split_listen",
]


def _default_name() -> str:
    # The host name is what an operator recognises; it must still be a valid host id.
    name = socket.gethostname().split(".")[0] or "krill"
    try:
        return check_host_id("peer.name", name)
    except ValidationError:
        return "krill"


def split_listen(value: str, key: str = "http.listen") -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6) into host and port.

    Raises:
        ValidationError: not of that form, or the port is outside 0..65535.
    """
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValidationError(key, "must be HOST:PORT with a port 0..65535", value)
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class PeerSection:
    """``[peer]``: who this peer is and what it replicates.

    Attributes:
        name: this peer's host id (its host doc's id); the machine's host name by default.
        data_dir: where the store, the peer id and a generated swarm key live.
        swarm: the swarm's name; peers replicate only within one swarm.
        swarm_key_file: the shared secret that MACs every frame; without one a random key
            is generated into ``data_dir`` (fine for one peer, useless for a swarm).
        follow: host docs to replicate; empty means all.
    """

    name: str = field(default_factory=_default_name)
    data_dir: Path = Path(".krill")
    swarm: str = "default"
    swarm_key_file: Path | None = None
    follow: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_host_id("peer.name", self.name)
        if not self.swarm or len(self.swarm) > 64 or any(c in self.swarm for c in "/+# "):
            raise ValidationError(
                "peer.swarm", "must be 1..64 characters without '/', '+', '#' or spaces", self.swarm
            )
        for host in self.follow:
            check_host_id("peer.follow", host)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """``[http]``: the REST API, ``/sync``, ``/ws`` and the dashboard."""

    listen: str = "127.0.0.1:8442"
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Origins (``https://ops.example:443``) besides the peer's own whose pages may call the
    #: API from a browser. Requests from any other origin are refused.
    allowed_origins: tuple[str, ...] = ()
    #: CA certificate (PEM) that peer links dialing ``https`` peers verify them with; the
    #: system's CAs when unset.
    tls_ca: Path | None = None

    def __post_init__(self) -> None:
        split_listen(self.listen)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValidationError("http.tls_cert", "and http.tls_key must be set together")
        for origin in self.allowed_origins:
            if not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValidationError(
                    "http.allowed_origins", "must be origins like https://host[:port]", origin
                )

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """``[discovery]``: multicast beacons and static peers.

    The default interface is loopback: a peer only advertises where it can be reached, and
    one that listens on loopback is reachable only there. A LAN deployment names its
    interface address explicitly.
    """

    multicast: bool = True
    group: str = "239.255.0.69"
    port: int = 45317
    interface: str = "127.0.0.1"
    static_peers: tuple[str, ...] = ()
    #: Dial discovered peers over WebSocket. Off for peers that share only a broker (behind
    #: NAT, on other sites): they then replicate through MQTT alone.
    peer_links: bool = True

    def __post_init__(self) -> None:
        try:
            group = ipaddress.IPv4Address(self.group)
        except ValueError:
            raise ValidationError(
                "discovery.group", "must be an IPv4 address", self.group
            ) from None
        if not group.is_multicast:
            raise ValidationError("discovery.group", "must be a multicast address", self.group)
        if not 1 <= self.port <= 65535:
            raise ValidationError("discovery.port", "must be 1..65535", self.port)
        try:
            ipaddress.IPv4Address(self.interface)
        except ValueError:
            raise ValidationError(
                "discovery.interface", "must be an IPv4 address", self.interface
            ) from None
        for url in self.static_peers:
            if not url.startswith(("http://", "https://")):
                raise ValidationError("discovery.static_peers", "must be http(s) URLs", url)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """``[mqtt]``: off unless ``url`` is set."""

    url: str | None = None
    username: str | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class GpioConfig:
    """``[gpio]``: which pin backend drives Pin nodes."""

    backend: str = "simulated"

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "lgpio", "simulated"):
            raise ValidationError(
                "gpio.backend", 'must be "auto", "lgpio" or "simulated"', self.backend
            )


@dataclass(frozen=True, slots=True)
class LogConfig:
    """``[log]``: level and format of the daemon's log."""

    level: str = "info"
    format: str = "text"

    def __post_init__(self) -> None:
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            raise ValidationError("log.level", "must be debug, info, warning or error", self.level)
        if self.format not in ("text", "json"):
            raise ValidationError("log.format", 'must be "text" or "json"', self.format)


#: In an ``[access]`` entry: everyone (every member of the swarm and every valid token).
EVERYONE = "*"
#: A peer id in an ``[access]`` entry: 16 bytes in lowercase hex, as ``GET /health`` shows.
PEER_ID_PATTERN = r"[0-9a-f]{32}"
#: A token's name in ``http.token_file`` and in ``token:NAME`` entries.
TOKEN_NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"


def _check_access_entry(key: str, entry: str) -> None:
    doc, sep, who = entry.rpartition("=")
    if sep:
        check_host_id(key, doc)
    if who == EVERYONE or re.fullmatch(PEER_ID_PATTERN, who.lower()):
        return
    if who.startswith("token:") and re.fullmatch(TOKEN_NAME_PATTERN, who[6:]):
        return
    raise ValidationError(
        key,
        "entries must be WHO or DOC=WHO, WHO a peer id (32 hex digits), token:NAME or *",
        entry,
    )


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """``[access]``: who may read and who may write each host doc.

    Entries are ``WHO`` (every doc) or ``DOC=WHO`` (one host doc); ``WHO`` is a peer id, a
    token's ``token:NAME`` or ``*``. Whoever may write may also read. See
    :mod:`krill_crdt.runtime.access` for how they are applied.
    """

    read: tuple[str, ...] = (EVERYONE,)
    write: tuple[str, ...] = (EVERYONE,)

    def __post_init__(self) -> None:
        for entry in self.read:
            _check_access_entry("access.read", entry)
        for entry in self.write:
            _check_access_entry("access.write", entry)


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """The whole configuration of one peer."""

    peer: PeerSection = field(default_factory=PeerSection)
    http: HttpConfig = field(default_factory=HttpConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    log: LogConfig = field(default_factory=LogConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
