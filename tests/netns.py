"""Throwaway Linux network namespaces for tests that need real hosts on a real link.

Everything made here lives inside namespaces this module creates: no interface, address or
route of this machine's own namespace is touched, so the tests' traffic never leaves them.

    reason = netns_unavailable()          # "" when namespaces can be made here
    with Lan(4, free_subnet()) as lan:    # a bridge and four hosts on it
        lan.hosts[0].namespace            # run things with ``ip netns exec`` there
        lan.cut(3)                        # unplug host 3's cable, then plug it back
        lan.heal(3)

Tests that use it need root and iproute2; they skip with the reason this module gives.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from types import TracebackType

__all__ = ["Lan", "LanHost", "free_subnet", "ip", "netns_unavailable"]

#: Every ``ip`` call is bounded; creating a namespace takes milliseconds.
IP_TIMEOUT_S = 10.0

#: The /16 the test subnets are taken from: private (RFC 1918) and rarely used by real
#: networks, which prefer 10.0.x.x, 10.1.x.x and 192.168.x.x.
SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")

#: Every group of 224.0.0.0/4 goes out on the LAN interface: the hosts have no other route.
MULTICAST = "224.0.0.0/4"

#: The LAN interface's name inside each host namespace (each namespace has its own names).
HOST_INTERFACE = "eth0"


def ip(*args: str) -> None:
    """Run one ``ip`` command; raise RuntimeError with its stderr when it fails."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def netns_unavailable() -> str:
    """Return why namespaces cannot be made here, or ``""`` when they can."""
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if probe.returncode != 0:
        return f"ip netns is unavailable: {probe.stderr.strip()}"
    return ""


def _host_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks this machine routes or owns, in any routing table, except default."""
    networks: list[ipaddress.IPv4Network] = []
    for command in (["-4", "route", "show", "table", "all"], ["-4", "addr", "show"]):
        done = subprocess.run(
            ["ip", "-j", *command], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=True
        )
        for entry in json.loads(done.stdout or "[]"):
            if "dst" in entry and entry["dst"] != "default":
                networks.append(ipaddress.IPv4Network(entry["dst"], strict=False))
            for address in entry.get("addr_info", []):
                networks.append(
                    ipaddress.IPv4Network(
                        f"{address['local']}/{address['prefixlen']}", strict=False
                    )
                )
    return networks


def free_subnet(prefix: int = 24) -> ipaddress.IPv4Network | None:
    """Return a subnet of :data:`SUBNET_POOL` that none of this machine's routes overlaps.

    The namespaces have routing tables of their own, so an overlap would not leak traffic;
    a distinct subnet keeps the test's addresses from being mistaken for real ones in any
    capture or log. A random start spreads concurrent runs over the pool.

    Returns:
        The subnet, or None if every one of the pool overlaps a route of this machine.
    """
    taken = _host_networks()
    candidates = list(SUBNET_POOL.subnets(new_prefix=prefix))
    start = random.randrange(len(candidates))
    for subnet in candidates[start:] + candidates[:start]:
        if not any(subnet.overlaps(network) for network in taken):
            return subnet
    return None


@dataclass(frozen=True, slots=True)
class LanHost:
    """One host of a :class:`Lan`.

    Attributes:
        namespace: its network namespace (``ip netns exec NAMESPACE ...``).
        address: its IPv4 address on the LAN.
        port: its cable's end on the bridge, in the bridge's namespace.
    """

    namespace: str
    address: str
    port: str


class Lan:
    """A bridge in a namespace of its own, and hosts each joined to it by a veth pair.

    Each host namespace holds loopback and :data:`HOST_INTERFACE` with one address of the
    subnet and a multicast route; the bridge's namespace holds the bridge and the other end
    of every pair. The bridge floods multicast to every port (IGMP snooping off), so groups
    work without a querier, as on a plain switch.

    ``with Lan(...)`` builds it and always removes every namespace on exit, which removes the
    veth pairs and the bridge with them; processes started inside the namespaces must be
    stopped before that, or their namespace outlives its name.
    """

    def __init__(self, count: int, subnet: ipaddress.IPv4Network) -> None:
        if not 1 <= count <= subnet.num_addresses - 2:
            raise ValueError(f"{count} hosts do not fit {subnet}")
        # A random tag keeps concurrent runs apart in the one list of namespace names.
        tag = secrets.token_hex(3)
        self.subnet = subnet
        self.bridge_namespace = f"krill-{tag}-lan"
        addresses = list(subnet.hosts())
        self.hosts = [
            LanHost(f"krill-{tag}-h{i}", str(addresses[i]), f"port{i}") for i in range(count)
        ]
        self._made: list[str] = []

    def open(self) -> Lan:
        """Build the LAN; on failure remove what was made and raise.

        Raises:
            RuntimeError: an ``ip`` command failed (its message says which and why).
        """
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Lan:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _build(self) -> None:
        # Step 1: the switch.
        bridge = self.bridge_namespace
        self._add_namespace(bridge)
        ip("-n", bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        ip("-n", bridge, "link", "set", "br0", "up")

        # Step 2: one cable per host, both ends made directly inside their namespaces.
        for host in self.hosts:
            self._add_namespace(host.namespace)
            ip(
                "-n", bridge, "link", "add", host.port, "type", "veth",
                "peer", "name", HOST_INTERFACE, "netns", host.namespace,
            )  # fmt: skip
            ip("-n", bridge, "link", "set", host.port, "master", "br0")
            ip("-n", bridge, "link", "set", host.port, "up")

            ns = host.namespace
            cidr = f"{host.address}/{self.subnet.prefixlen}"
            ip("-n", ns, "addr", "add", cidr, "dev", HOST_INTERFACE)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", HOST_INTERFACE, "multicast", "on", "up")
            ip("-n", ns, "route", "add", MULTICAST, "dev", HOST_INTERFACE)

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)

    def cut(self, index: int) -> None:
        """Unplug host ``index`` at the bridge: its interface stays up but loses its carrier."""
        ip("-n", self.bridge_namespace, "link", "set", self.hosts[index].port, "down")

    def heal(self, index: int) -> None:
        """Plug host ``index`` back in."""
        ip("-n", self.bridge_namespace, "link", "set", self.hosts[index].port, "up")

    def close(self) -> None:
        """Remove every namespace made so far (and so every veth pair and the bridge)."""
        while self._made:
            name = self._made.pop()
            subprocess.run(
                ["ip", "netns", "del", name], capture_output=True, timeout=IP_TIMEOUT_S, check=False
            )
