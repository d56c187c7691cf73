"""The built-in scenarios, sized for CI: each runs in seconds at its default size.

``krill sim --list`` prints them; ``--peers`` scales any of them, since every peer set is a
selector (see :mod:`krill_crdt.sim.scenario`).
"""

from __future__ import annotations

from .scenario import BrokerOutage, Crash, LinkProfile, LinkRule, Partition, Scenario, Writer

__all__ = ["SCENARIOS"]

#: A lossy, duplicating, reordering LAN: what a busy Wi-Fi access point does to datagrams.
FLAKY = LinkProfile(latency=0.004, jitter=0.003, loss=0.3, duplicate=0.15, reorder=0.2)
#: The same LAN as a TCP stream sees it: nothing lost or duplicated, but retransmissions
#: make delays long and uneven (frames still arrive in order on one link).
FLAKY_TCP = LinkProfile(latency=0.02, jitter=0.018)

_HALVES = {"east": "0:0.5", "west": "0.5:1"}

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="partition-heal",
            description="the swarm splits in two halves that keep writing, then heals",
            peers=30,
            groups=_HALVES,
            partitions=(Partition(at=5.0, heal=15.0, groups=("east", "west")),),
            writers=(Writer("all", rate=0.3, start=2.0, stop=18.0, doc="any"),),
        ),
        Scenario(
            name="flaky-lan",
            description="30% datagram loss, duplication and reordering; slow TCP links",
            peers=16,
            profile=FLAKY_TCP,
            rules=(LinkRule(transport="udp", profile=FLAKY),),
            writers=(Writer("all", rate=3.0, start=2.0, stop=10.0, doc="any"),),
        ),
        Scenario(
            name="beacon-storm",
            description="every peer is a server and all of them edit at once",
            peers=20,
            hosts=20,
            projects=2,
            writers=(Writer("all", rate=2.0, start=2.0, stop=6.0, doc="own"),),
        ),
        Scenario(
            name="concurrent-edit",
            description="every peer edits the name of the same node at once",
            peers=12,
            topology="mesh",
            writers=(Writer("all", rate=3.0, start=2.0, stop=10.0, action="edit-same", doc="0"),),
        ),
        Scenario(
            name="delete-vs-create",
            description="half the peers delete projects while the others create children",
            peers=12,
            projects=8,
            writers=(
                Writer("0:0.5", rate=1.0, start=2.0, stop=12.0, action="delete", doc="0"),
                Writer("0.5:1", rate=2.0, start=2.0, stop=12.0, action="create-child", doc="0"),
                Writer("all", rate=0.5, start=2.0, stop=12.0, action="create", doc="0"),
            ),
        ),
        Scenario(
            name="crash-restart",
            description="a quarter of the peers (a host among them) crash and restart",
            peers=16,
            commit_delay=0.3,
            crashes=(Crash("0:0.25", at=6.0, restart=9.0),),
            writers=(Writer("all", rate=1.0, start=2.0, stop=14.0, doc="own"),),
        ),
        Scenario(
            name="browser-relay",
            description="a browser reaching one peer edits another host's doc through it",
            peers=10,
            writers=(
                Writer("#-1", rate=3.0, start=2.0, stop=12.0, doc="0", origin="ws-client"),
                Writer(
                    "#-1",
                    rate=0.5,
                    start=2.0,
                    stop=12.0,
                    action="create",
                    doc="1",
                    origin="ws-client",
                ),
            ),
        ),
        Scenario(
            name="broker-outage",
            description="peers on separate subnets share only a broker, which is down for 5 s",
            peers=16,
            transports=("mqtt",),
            topology="none",
            outages=(BrokerOutage(at=5.0, until=10.0),),
            writers=(Writer("all", rate=1.0, start=2.0, stop=14.0, doc="any"),),
        ),
        Scenario(
            name="steady-load",
            description="25 servers writing 8 times a second each; writes coalesce per flush",
            peers=25,
            hosts=25,
            projects=2,
            flush_interval=0.5,
            writers=(Writer("all", rate=8.0, start=2.0, stop=8.0, doc="own"),),
        ),
    )
}
