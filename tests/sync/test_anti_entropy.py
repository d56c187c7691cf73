"""Anti-entropy at scale: no repair for deltas in flight, one request per doc, news pushed on.

Every test here drives real engines over the in-memory network of :mod:`tests.sync.harness`;
time only moves when a test advances it.
"""

from __future__ import annotations

import pytest

from krill_crdt.model import Node, NodeType
from krill_crdt.sync.link import Link, Send
from tests.sync.harness import Net, SimPeer, peer_id

UDP_AND_WS = {"udp": True, "ws": False}


def project(peer: SimPeer, node_id: str, host: str | None = None) -> Node:
    host = host or peer.name
    return Node.new(NodeType.Project, host=host, parent=f"srv-{host}", id=node_id, name=node_id)


def test_a_beacon_that_overtakes_its_delta_asks_for_no_diff() -> None:
    net = Net()
    a, b = net.add("a", dict(UDP_AND_WS)), net.add("b", dict(UDP_AND_WS))
    net.link(a, b)
    a.write_server()
    net.advance(10.0)
    held: list[Send] = []

    def hold(send: Send, to: SimPeer) -> bool:
        if send.kind == "update":
            held.append(send)
            return True
        return False

    net.drop = hold
    a.host_doc().create(project(a, "late"))
    net.advance(0.1)  # a's beacon announces the change; the delta is still on its way
    net.drop = lambda send, to: False
    for send in held:
        b.engine.receive(send.data, Link("ws", a.id), net.now)
    asked_before = net.sent_by[("b", "sync_step1")]
    net.advance(3.0)

    assert b.host_doc("a").get("late").id == "late"
    assert net.sent_by[("b", "sync_step1")] == asked_before


def test_after_a_partition_one_peer_is_asked_per_doc() -> None:
    net = Net()
    peers = [net.add(name, {"mqtt": True}) for name in "abcde"]
    a, e = peers[0], peers[-1]
    a.write_server()
    net.advance(10.0)
    net.partitioned = {e.id}
    a.host_doc().create(project(a, "missed"))
    net.advance(1.0)

    net.partitioned = set()
    asked_before = net.sent_by[("e", "sync_step1")]
    net.advance(5.0)  # every other peer beacons a digest e lacks, more than once

    assert e.content() == a.content()
    assert net.sent_by[("e", "sync_step1")] - asked_before == 1


def split_chain(net: Net, a: SimPeer, b: SimPeer, c: SimPeer, d: SimPeer) -> None:
    """Link a-b-c-d, let a's server reach everyone, cut b-c and write "west" on a's side."""
    for x, y in ((a, b), (b, c), (c, d)):
        net.link(x, y)
    a.write_server()
    net.pump()
    net.unlink(b, c)
    a.host_doc().create(project(a, "west"))


def test_a_handshake_that_brings_news_is_pushed_along_the_links_at_once() -> None:
    net = Net()
    a, b, c, d = (net.add(name) for name in "abcd")
    split_chain(net, a, b, c, d)
    d.host_doc("a").create(project(a, "east"))
    net.pump()
    assert "east" not in a.host_doc("a") and "west" not in d.host_doc("a")

    net.link(b, c)
    net.pump()  # no time passes: no beacon, only the handshake and what it sets off

    assert a.content() == b.content() == c.content() == d.content()
    assert b.engine.stats["pushed"] >= 1 and c.engine.stats["pushed"] >= 1


def test_news_is_not_pushed_to_a_peer_that_may_not_read_the_doc() -> None:
    net = Net()
    d_id = peer_id("d")

    def c_rules(peer: bytes, doc: str, write: bool) -> bool:
        return write or not (peer == d_id and doc == "a")

    a, b = net.add("a"), net.add("b")
    c, d = net.add("c", authorize=c_rules), net.add("d")
    split_chain(net, a, b, c, d)
    net.pump()

    net.link(b, c)
    net.pump()

    assert "west" in c.host_doc("a")
    assert "west" not in d.host_doc("a")  # c learnt it, but may not hand it to d


def test_a_newcomer_catching_up_pushes_nothing_on() -> None:
    net = Net()
    a, b, c = (net.add(name) for name in "abc")
    net.link(a, b)
    a.write_server()
    a.host_doc().create(project(a, "p"))
    net.pump()

    net.link(c, b)
    net.link(c, a)
    net.pump()

    assert c.host_doc("a").get("p").id == "p"
    assert c.engine.stats["pushed"] == 0


def test_unsynced_seconds_count_from_the_first_differing_beacon_until_peers_agree() -> None:
    net = Net()
    a, b = net.add("a", {"udp": True}), net.add("b", {"udp": True})
    net.drop = lambda send, to: send.kind == "update"
    a.write_server()
    net.advance(0.05)  # a's first beacon: b follows doc a but lacks it
    first_seen = net.now
    net.advance(2.0)

    unsynced = b.engine.unsynced_seconds(net.now)
    assert unsynced == {"a": pytest.approx(net.now - first_seen)}
    b.engine.tick(net.now)
    assert b.metrics.value("krill_doc_unsynced_seconds", doc="a") == unsynced["a"]

    net.drop = lambda send, to: False
    net.link(a, b)
    net.advance(10.0)  # the handshake syncs b; a's next beacon shows b agrees
    b.engine.tick(net.now)
    assert b.engine.unsynced_seconds(net.now) == {"a": 0.0}
    assert b.metrics.value("krill_doc_unsynced_seconds", doc="a") == 0.0
