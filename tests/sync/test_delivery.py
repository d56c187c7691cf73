"""Each peer receives a delta once, whichever transports reach it, and links cost little."""

from __future__ import annotations

from krill_crdt._core.codec import decode_frame
from krill_crdt.model import Node, NodeType
from krill_crdt.sync.topology import decode_neighbours
from tests.sync.harness import KEY, Net, SimPeer

UDP_AND_WS = {"udp": True, "ws": False}


def test_a_delta_by_multicast_is_not_also_sent_over_links_to_peers_that_hear_it() -> None:
    net = Net()
    a, b, c = (net.add(name, dict(UDP_AND_WS)) for name in "abc")
    net.link(a, b)
    net.link(b, c)  # a and c are not linked: multicast is the way from one to the other
    a.write_server()
    net.advance(2.0)
    before = {p.name: dict(p.received) for p in (b, c)}

    a.host_doc().create(Node.new(NodeType.Project, host="a", parent="srv-a", id="p", name="p"))
    net.pump()

    for peer in (b, c):
        got = {k: v - before[peer.name].get(k, 0) for k, v in peer.received.items()}
        assert got.get(("udp", "update"), 0) == 1, peer.name
        assert got.get(("ws", "update"), 0) == 0, peer.name
        assert peer.host_doc("a").get("p").id == "p"


def test_a_burst_of_new_links_is_announced_once_now_and_once_after_the_floor() -> None:
    net = Net()
    a, *others = (net.add(name) for name in "abcde")
    for other in others:
        net.link(a, other)
    sends, _ = a.engine.drain()
    announced = {s.data for s in sends if s.kind == "presence"}
    assert len(announced) == 1

    net.now += a.engine.options.presence_floor
    a.engine.tick(net.now)
    sends, _ = a.engine.drain()
    later = {s.data for s in sends if s.kind == "presence"}

    assert len(later) == 1
    (frame,) = (decode_frame(data, KEY) for data in later)
    assert decode_neighbours(frame.payload) == {p.id for p in others}


def test_a_sender_told_of_a_lost_datagram_sends_its_deltas_over_links_too() -> None:
    net = Net()
    a, b, c = (net.add(name, dict(UDP_AND_WS)) for name in "abc")
    net.link(a, b)  # c has no link: a's deltas go by multicast, which reaches b as well
    a.write_server()
    b.write_server()

    def b_keeps_writing(rounds: int) -> None:
        # b stays active, so a hears it on multicast without a break.
        for _ in range(rounds):
            b.host_doc().create(project(b, f"b{net.now:.2f}"))
            net.advance(0.5)

    b_keeps_writing(6)
    net.drop = lambda send, to: send.kind == "update" and send.link.peer is None and to is b
    by_link = b.received[("ws", "update")]
    a.host_doc().create(project(a, "lost"))
    net.pump()
    assert "lost" not in b.host_doc("a")  # multicast alone carried it, and lost it
    assert b.received[("ws", "update")] == by_link

    b_keeps_writing(6)  # a's beacons show b the difference; b asks a, lacking a's delta
    assert b.host_doc("a").get("lost").id == "lost"

    by_link = b.received[("ws", "update")]
    by_multicast = c.received[("udp", "update")]
    a.host_doc().create(project(a, "next"))
    net.pump()  # no time passes: no beacon, no repair

    assert b.host_doc("a").get("next").id == "next"
    assert b.received[("ws", "update")] == by_link + 1
    assert c.received[("udp", "update")] == by_multicast + 1  # multicast goes on for c


def project(peer: SimPeer, node_id: str) -> Node:
    return Node.new(
        NodeType.Project, host=peer.name, parent=f"srv-{peer.name}", id=node_id, name=node_id
    )
