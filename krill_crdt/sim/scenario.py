"""What a simulation run is made of: the swarm, its network, its faults and its workload.

Everything here is a frozen description; nothing runs. Peers are picked by *selectors*, so a
scenario written for 50 peers still means something at 500:

* ``"all"``: every peer;
* ``"a:b"``: the peers whose position ``i / peers`` lies in ``[a, b)`` (fractions, so
  ``"0:0.5"`` is the first half);
* ``"#3"``: the peer at index 3 (``"#-1"`` is the last);
* a name from :attr:`Scenario.groups`, which maps names to selectors.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML through the tomli backport
    import tomli as tomllib

__all__ = [
    "TRANSPORTS",
    "BrokerOutage",
    "Crash",
    "LinkProfile",
    "LinkRule",
    "Partition",
    "Scenario",
    "Writer",
    "load_scenarios",
    "select",
]

#: Transports a simulated peer can run, as the engine names them.
TRANSPORTS = ("udp", "ws", "mqtt")

Action = Literal["edit", "edit-same", "create", "create-child", "delete"]
Topology = Literal["mesh", "ring", "star", "none"]


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """How one direction of one transport between two peers behaves.

    Attributes:
        latency: mean one-way delay, seconds.
        jitter: each frame's delay varies uniformly by up to this much either way, seconds.
        loss: probability that a frame is lost.
        duplicate: probability that a frame arrives twice (the copy a little later).
        reorder: probability that a frame is held back by up to ``reorder_delay``, so that
            frames sent after it overtake it.
        reorder_delay: the longest hold-back of a reordered frame, seconds.
        bandwidth: bytes per second the sender can put on this link (``None``: unlimited);
            frames queue behind each other, so a burst arrives spread out.
    """

    latency: float = 0.002
    jitter: float = 0.001
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.05
    bandwidth: float | None = None

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability in 0..1, got {value}")
        if self.latency < 0 or self.jitter < 0 or self.reorder_delay < 0:
            raise ValueError("latency, jitter and reorder_delay must not be negative")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be above 0 bytes/s, got {self.bandwidth}")


@dataclass(frozen=True, slots=True)
class LinkRule:
    """A profile for the frames from ``src`` peers to ``dst`` peers on ``transport``.

    Rules are tried in order and the first match wins; a rule for A to B says nothing about
    B to A, which is how asymmetric links are written.
    """

    src: str = "all"
    dst: str = "all"
    transport: str = "*"
    profile: LinkProfile = field(default_factory=LinkProfile)


@dataclass(frozen=True, slots=True)
class Partition:
    """The swarm splits into ``groups`` at ``at`` and heals at ``heal`` (never if None).

    Peers in no listed group form one more side of their own. ``broker`` names the group the
    MQTT broker stays reachable from while split (``None``: from every side).
    """

    at: float
    heal: float | None
    groups: tuple[str, ...]
    broker: str | None = None


@dataclass(frozen=True, slots=True)
class Crash:
    """The ``peers`` crash at ``at`` and start again at ``restart`` (stay down if None)."""

    peers: str
    at: float
    restart: float | None


@dataclass(frozen=True, slots=True)
class BrokerOutage:
    """The MQTT broker is down from ``at`` until ``until``."""

    at: float
    until: float


@dataclass(frozen=True, slots=True)
class Writer:
    """Peers that write at a steady rate.

    Attributes:
        peers: who writes (selector).
        rate: writes per second per writing peer (Poisson arrivals).
        start: when writing begins, seconds of virtual time.
        stop: when it ends.
        action: ``edit`` sets the name of a random project; ``edit-same`` sets the name of
            the one project every writer shares (concurrent edits of the same node);
            ``create`` adds a project; ``create-child`` adds a project under a random
            project; ``delete`` removes a random project with its subtree.
        doc: whose host doc is written: ``"own"`` (the writer's own if it is a host, else
            a random host doc), ``"any"`` (a random host doc), or a host index such as ``"0"``.
        origin: the transport of the write's origin: ``"local"`` for the peer's own API,
            ``"ws-client"`` for a browser attached to the peer.
    """

    peers: str
    rate: float
    start: float
    stop: float
    action: Action = "edit"
    doc: str = "own"
    origin: str = "local"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One simulation: the swarm, its network, its faults and its workload.

    Attributes:
        name: what ``krill sim --list`` shows.
        description: one line about what it exercises.
        peers: how many peers.
        hosts: how many of them own a host doc (the first ``hosts`` peers). Every peer
            follows every host doc.
        projects: projects each host creates at start.
        transports: what every peer runs (``udp``, ``ws``, ``mqtt``).
        topology: which point-to-point (ws) links exist: ``mesh`` (every pair), ``ring``
            (each peer to its ``degree`` nearest neighbours on a ring), ``star`` (every peer
            to peer 0), ``none``.
        degree: neighbours per peer on the ring.
        profile: the default profile of every link.
        rules: profiles for particular peers and transports (first match wins).
        groups: named selectors, used by partitions and rules.
        partitions, crashes, outages: the faults.
        writers: the workload.
        clock_skew: each peer's clock is off by a uniform amount up to this, seconds.
        start_spread: peers start at uniform times up to this, seconds (a swarm does not
            boot in one instant, and staggered beacons are what a real swarm sees).
        flush_interval: a peer sends its queued local writes this often, seconds; writes in
            between are merged into one frame per doc.
        commit_delay: a write is durable (acknowledged) this long after it was made.
        link_timeout: how long a side takes to notice that a link is dead, seconds.
        redial: how long a side takes to re-establish a link that can work again.
        settle: virtual seconds the run continues after the last write or fault.
        quiet_window: the tail of the settle time in which no delta frame may be sent.
        faults: engine safeguards switched off (see :mod:`krill_crdt.sim.faults`).
    """

    name: str
    description: str = ""
    peers: int = 20
    hosts: int = 4
    projects: int = 4
    transports: tuple[str, ...] = ("udp", "ws")
    topology: Topology = "ring"
    degree: int = 2
    profile: LinkProfile = field(default_factory=LinkProfile)
    rules: tuple[LinkRule, ...] = ()
    groups: Mapping[str, str] = field(default_factory=dict)
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()
    outages: tuple[BrokerOutage, ...] = ()
    writers: tuple[Writer, ...] = ()
    clock_skew: float = 0.5
    start_spread: float = 1.0
    flush_interval: float = 0.05
    commit_delay: float = 0.05
    link_timeout: float = 2.0
    redial: float = 0.5
    settle: float = 20.0
    quiet_window: float = 5.0
    faults: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.peers < 2:
            raise ValueError(f"a swarm needs at least 2 peers, got {self.peers}")
        if not self.hosts >= 1:
            raise ValueError(f"at least one peer must host a doc, got hosts={self.hosts}")
        unknown = set(self.transports) - set(TRANSPORTS)
        if unknown or not self.transports:
            raise ValueError(f"transports must be among {TRANSPORTS}, got {self.transports}")
        if self.quiet_window >= self.settle:
            raise ValueError("the quiet window must be shorter than the settle time")
        if self.flush_interval < 0 or self.commit_delay < 0:
            raise ValueError("flush_interval and commit_delay must not be negative")

    def sized(self, peers: int | None) -> Scenario:
        """Return this scenario with another number of peers (hosts capped to fit)."""
        if not peers or peers == self.peers:
            return self
        return replace(self, peers=peers, hosts=min(self.hosts, peers))


def select(selector: str, peers: int, groups: Mapping[str, str] | None = None) -> list[int]:
    """Return the indices of the peers a selector picks, sorted.

    Raises:
        ValueError: the selector is not one of the forms the module docstring lists.
    """
    spec = selector.strip()
    if groups and spec in groups:
        return select(groups[spec], peers, None)
    if spec == "all":
        return list(range(peers))
    if spec.startswith("#"):
        index = int(spec[1:])
        if not -peers <= index < peers:
            raise ValueError(f"peer index {index} is outside a swarm of {peers}")
        return [index % peers]
    low, sep, high = spec.partition(":")
    if not sep:
        raise ValueError(f"not a peer selector: {selector!r}")
    a, b = float(low or 0.0), float(high or 1.0)
    # Rounding the bounds (not each position) keeps adjacent ranges disjoint and complete.
    return list(range(round(a * peers), round(b * peers)))


# ------------------------------------------------------------------------------ TOML


def _build(cls: type[Any], table: Mapping[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    extra = sorted(set(table) - known)
    if extra:
        raise ValueError(f"{where}: unknown key(s) {', '.join(extra)}")
    values = dict(table)
    if "profile" in values and isinstance(values["profile"], Mapping):
        values["profile"] = _build(LinkProfile, values["profile"], f"{where}.profile")
    if "groups" in values and cls is Partition:
        values["groups"] = tuple(values["groups"])
    return cls(**values)


def scenario_from_mapping(table: Mapping[str, Any], where: str = "scenario") -> Scenario:
    """Build a scenario from a parsed TOML table (see ``docs/sim.md`` for the keys).

    Raises:
        ValueError: a key is unknown or a value is invalid.
    """
    values = dict(table)
    nested: dict[str, type[Any]] = {
        "rules": LinkRule,
        "partitions": Partition,
        "crashes": Crash,
        "outages": BrokerOutage,
        "writers": Writer,
    }
    for key, cls in nested.items():
        if key in values:
            values[key] = tuple(
                _build(cls, item, f"{where}.{key}[{i}]") for i, item in enumerate(values[key])
            )
    for key in ("transports", "faults"):
        if key in values:
            values[key] = tuple(values[key])
    try:
        return _build(Scenario, values, where)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_scenarios(path: Path) -> dict[str, Scenario]:
    """Read user scenarios from a TOML file: one ``[[scenario]]`` table per scenario.

    Raises:
        ValueError: the file is not valid TOML or a scenario is invalid.
        OSError: the file cannot be read.
    """
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    found: dict[str, Scenario] = {}
    for i, table in enumerate(data.get("scenario", [])):
        scenario = scenario_from_mapping(table, f"{path.name}: scenario[{i}]")
        found[scenario.name] = scenario
    return found
