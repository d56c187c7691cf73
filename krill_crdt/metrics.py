"""The metrics every layer counts, with the names and labels of the ``/metrics`` contract.

One :class:`Metrics` per peer, on its own Prometheus registry, so several peers in one
process (tests, the simulator) keep separate figures.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["PROPAGATION_BUCKETS", "Metrics"]

#: Buckets of ``krill_propagation_seconds``: sub-millisecond for loopback and wired LANs up to
#: tens of seconds for a peer healing after a partition by anti-entropy.
PROPAGATION_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Metrics:
    """The counters, gauges and histograms of one peer.

    Attributes mirror the metric names without the ``krill_`` prefix.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.frames_sent = Counter(
            "krill_frames_sent", "Frames sent", ["transport", "kind"], registry=r
        )
        self.frames_received = Counter(
            "krill_frames_received",
            "Frames received and accepted",
            ["transport", "kind"],
            registry=r,
        )
        self.frames_rejected = Counter(
            "krill_frames_rejected",
            "Frames refused, by reason",
            ["transport", "reason"],
            registry=r,
        )
        self.frames_dropped = Counter(
            "krill_frames_dropped",
            "Frames dropped unsent: a bounded queue was full, or no link could take them",
            ["transport"],
            registry=r,
        )
        self.propagation = Histogram(
            "krill_propagation_seconds",
            "Time from a write on its origin to its apply here",
            buckets=PROPAGATION_BUCKETS,
            registry=r,
        )
        self.peers = Gauge("krill_peers", "Peers known, by state", ["state"], registry=r)
        self.doc_unsynced = Gauge(
            "krill_doc_unsynced_seconds",
            "How long a doc's digest has differed from a peer's",
            ["doc"],
            registry=r,
        )
        self.node_executions = Counter(
            "krill_node_executions", "Processor runs", ["type"], registry=r
        )
        self.processor_errors = Counter(
            "krill_processor_errors", "Processor failures", ["type"], registry=r
        )
        self.store_bytes = Gauge("krill_store_bytes", "Bytes on disk", ["doc"], registry=r)

    def sent(self, transport: str, kind: str) -> None:
        self.frames_sent.labels(transport, kind).inc()

    def received(self, transport: str, kind: str) -> None:
        self.frames_received.labels(transport, kind).inc()

    def rejected(self, transport: str, reason: str) -> None:
        self.frames_rejected.labels(transport, reason).inc()

    def value(self, name: str, **labels: str) -> float:
        """Return one sample's current value (0 if it was never set); for tests and tools."""
        found = self.registry.get_sample_value(name, labels)
        return float(found) if found is not None else 0.0
