"""Each peer receives a delta once, whichever transports reach it, and links cost little."""

from __future__ import annotations

from krill_crdt._core.codec import decode_frame
from krill_crdt.model import Node, NodeType
from krill_crdt.sync.topology import decode_neighbours
from tests.sync.harness import KEY, Net

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
