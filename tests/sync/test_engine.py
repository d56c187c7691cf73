"""The sans-I/O sync engine, driven over an in-memory network."""

from __future__ import annotations

from krill_crdt._core.codec import Kind, encode_frame
from krill_crdt.model import Node, NodeState, NodeType
from krill_crdt.sync.engine import SyncOptions, run_seq_base
from krill_crdt.sync.link import Link
from krill_crdt.sync.pacing import PacingOptions
from tests.sync.harness import KEY, SWARM, Net, SimPeer

UDP = {"udp": True, "ws": False}


def project(peer: SimPeer, node_id: str, host: str | None = None) -> Node:
    host = host or peer.name
    return Node.new(NodeType.Project, host=host, parent=f"srv-{host}", id=node_id, name=node_id)


def updates_received(peer: SimPeer, transport: str = "ws") -> int:
    return peer.received[(transport, "update")]


def test_a_new_link_brings_both_sides_up_to_date_in_one_round_trip() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    a.write_server()
    a.host_doc().create(project(a, "p1"))
    b.write_server()
    net.pump()  # no links yet: nothing to send to

    net.link(a, b)
    net.pump()

    assert a.content() == b.content()
    assert set(b.docs.hosts()) == {"a", "b"}
    assert b.host_doc("a").get("p1").name == "p1"


def test_a_local_write_reaches_the_peer_once_and_never_echoes_back() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.link(a, b)
    a.write_server()
    net.pump()
    before_a = updates_received(a)

    a.host_doc().create(project(a, "p1"))
    net.pump()

    assert b.host_doc("a").get("p1").id == "p1"
    assert updates_received(b) == 2
    assert updates_received(a) == before_a == 0


def test_writes_queued_before_a_flush_travel_as_one_frame() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.link(a, b)
    a.write_server()
    for i in range(50):
        a.host_doc().create(project(a, f"p{i}"))
    net.pump()
    assert updates_received(b) == 1
    assert len(b.host_doc("a")) == 51


def test_concurrent_edits_of_one_node_converge_and_traffic_stops() -> None:
    net = Net(SyncOptions(pacing=PacingOptions(floor=0.25, active=1.0, idle=8.0)))
    a, b = net.add("a"), net.add("b")
    net.link(a, b)
    a.write_server()
    a.host_doc().create(project(a, "shared"))
    net.pump()

    a.host_doc().update("shared", {"name": "from a", "state": NodeState.WARN})
    b.host_doc("a").update("shared", {"name": "from b"})
    net.pump()
    assert a.content() == b.content()

    # Two beacon periods later, nothing but beacons has moved.
    net.sent.clear()
    net.advance(2 * 8.0)
    assert set(net.sent) <= {"beacon"}
    assert a.content() == b.content()


def test_five_peers_in_a_mesh_each_receive_one_update_once() -> None:
    net = Net()
    peers = [net.add(name) for name in "abcde"]
    net.mesh(peers)
    peers[0].write_server()
    net.pump()
    counts_before = {p.name: updates_received(p) for p in peers}

    peers[0].host_doc().create(project(peers[0], "p1"))
    net.pump()

    for peer in peers[1:]:
        assert updates_received(peer) - counts_before[peer.name] == 1, peer.name
        assert peer.host_doc("a").get("p1").id == "p1"
    assert updates_received(peers[0]) == counts_before["a"]


def test_a_delta_is_relayed_along_a_chain_of_links_once() -> None:
    net = Net()
    a, b, c, d = (net.add(name) for name in "abcd")
    net.link(a, b)
    net.link(b, c)
    net.link(c, d)
    net.pump()
    a.write_server()
    net.pump()

    a.host_doc().create(project(a, "far"))
    net.pump()

    assert d.host_doc("a").get("far").id == "far"
    for peer in (b, c, d):
        assert updates_received(peer) == 2, peer.name  # the server, then the project


def test_a_diamond_of_links_delivers_once_per_peer() -> None:
    net = Net()
    a, b, c, d = (net.add(name) for name in "abcd")
    for x, y in ((a, b), (a, c), (b, d), (c, d)):
        net.link(x, y)
    net.pump()
    a.write_server()
    net.pump()
    assert updates_received(d) == 1


def test_a_lost_delta_is_healed_by_beacon_digests() -> None:
    net = Net()
    a, b = net.add("a", dict(UDP)), net.add("b", dict(UDP))
    net.link(a, b)
    a.write_server()
    net.pump()

    net.drop = lambda send, to: send.kind == "update"
    a.host_doc().create(project(a, "lost"))
    net.pump()
    assert "lost" not in b.host_doc("a")

    net.drop = lambda send, to: False
    net.advance(2.0)
    assert b.host_doc("a").get("lost").id == "lost"
    assert a.content() == b.content()


def test_a_lost_delete_is_healed_by_beacon_digests() -> None:
    net = Net()
    a, b = net.add("a", dict(UDP)), net.add("b", dict(UDP))
    net.link(a, b)
    a.write_server()
    a.host_doc().create(project(a, "doomed"))
    net.pump()

    net.drop = lambda send, to: send.kind == "update"
    a.host_doc().delete("doomed")
    net.pump()
    assert "doomed" in b.host_doc("a")

    net.drop = lambda send, to: False
    net.advance(2.0)
    assert "doomed" not in b.host_doc("a")


def test_peers_on_multicast_only_discover_each_other_and_sync() -> None:
    net = Net()
    a, b = net.add("a", {"udp": True}), net.add("b", {"udp": True})
    a.write_server()
    b.write_server()
    net.advance(1.0)
    # Without point-to-point links the diffs have no way to travel; discovery still happens.
    seen = {peer for peer in a.engine.peers()}
    assert b.id in seen


def test_a_partition_heals_within_a_beacon_period_and_a_round_trip() -> None:
    net = Net()
    a, b, c = (net.add(name, dict(UDP)) for name in "abc")
    net.mesh([a, b, c])
    a.write_server()
    a.host_doc().create(project(a, "n"))
    net.pump()

    net.partitioned = {c.id}
    a.host_doc().update("n", {"name": "majority"})
    net.pump()
    c.host_doc("a").update("n", {"state": NodeState.SEVERE})
    net.pump()
    assert c.content() != a.content()

    net.partitioned = set()
    net.advance(1.0 + 0.1)
    assert a.content() == b.content() == c.content()
    node = a.host_doc().get("n")
    assert (node.name, node.state) == ("majority", NodeState.SEVERE)


def test_bad_frames_are_rejected_by_reason_and_change_nothing() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.link(a, b)
    a.write_server()
    net.pump()
    before = b.content()
    link = Link("ws", a.id)

    valid = encode_frame(Kind.UPDATE, a.id, SWARM, 10_000, 0, "a", b"\x00\x00", KEY)
    b.engine.receive(b"garbage", link, net.now)
    b.engine.receive(valid[:-3], link, net.now)
    b.engine.receive(
        encode_frame(Kind.UPDATE, a.id, SWARM, 10_001, 0, "a", b"\0", b"x" * 32), link, net.now
    )
    b.engine.receive(
        encode_frame(Kind.UPDATE, a.id, SWARM + 1, 10_002, 0, "a", b"\0", KEY), link, net.now
    )
    b.engine.receive(valid, link, net.now)
    b.engine.receive(valid, link, net.now)  # replayed
    b.engine.receive(
        encode_frame(Kind.UPDATE, a.id, SWARM, 10_003, 0, "a", b"\xff\xff", KEY), link, net.now
    )

    value = b.metrics.value
    labels = {"transport": "ws"}
    assert value("krill_frames_rejected_total", **labels, reason="TruncatedFrameError") >= 1
    assert value("krill_frames_rejected_total", **labels, reason="BadMacError") == 1
    assert value("krill_frames_rejected_total", **labels, reason="swarm") == 1
    assert value("krill_frames_rejected_total", **labels, reason="duplicate") == 1
    assert value("krill_frames_rejected_total", **labels, reason="update") == 1
    assert b.content() == before


def test_a_peer_refused_write_access_changes_nothing() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    b.engine._authorize = lambda peer, doc, write: not write
    net.link(a, b)
    a.write_server()
    net.pump()
    assert "a" not in b.docs.hosts()
    assert b.metrics.value("krill_frames_rejected_total", transport="ws", reason="forbidden") >= 1


def test_beacons_back_off_while_idle_and_speed_up_after_a_write() -> None:
    net = Net()
    a = net.add("a", {"udp": True})
    net.add("b", {"udp": True})
    net.advance(30.0)
    idle_interval = a.engine._pacer.interval
    assert idle_interval == 8.0
    a.write_server()
    net.pump()
    assert a.engine._pacer.next_due <= net.now + 0.25


def test_a_silent_peer_goes_offline_after_the_ttl() -> None:
    net = Net(SyncOptions(presence_ttl=5.0))
    a, b = net.add("a", {"udp": True}), net.add("b", {"udp": True})
    net.advance(1.0)
    assert b.id in a.engine.peers()
    net.partitioned = {b.id}
    net.advance(6.0)
    assert b.id not in a.engine.peers()


def test_a_restarted_peer_is_heard_again_not_taken_for_a_replay() -> None:
    net = Net()
    a, b = net.add("a", dict(UDP)), net.add("b", dict(UDP))
    net.link(a, b)
    b.write_server()
    net.pump()
    net.advance(1.0)

    # b restarts: same peer id, a new run whose sequence numbers start above the old ones.
    net.unlink(a, b)
    restarted = SimPeer(net, "b", dict(UDP), first_seq=run_seq_base(2))
    net.peers[restarted.id] = restarted
    restarted.write_server()
    net.link(a, restarted)
    net.pump()

    assert a.metrics.value("krill_frames_rejected_total", transport="ws", reason="duplicate") == 0
    assert set(a.docs.hosts()) == {"b"}


def test_a_delta_with_a_hole_before_it_is_replaced_by_a_full_diff() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.link(a, b)
    a.write_server()
    net.pump()
    b.host_doc("a")  # b holds the doc

    net.drop = lambda send, to: send.kind == "update"
    a.host_doc().create(project(a, "p1"))
    net.pump()
    net.drop = lambda send, to: False
    a.host_doc().update("p1", {"name": "renamed"})
    net.pump()

    assert b.engine.stats["gaps"] == 1
    assert b.host_doc("a").get("p1").name == "renamed"
    assert a.content() == b.content()
