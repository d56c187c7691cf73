"""One processor per node type.

:func:`make_registry` builds a fresh set; :data:`REGISTRY` is the one a peer uses unless it
asks for its own. Some processors keep per-node state in memory, keyed by node id (a one-shot
timer's firing; a threshold mirrors the armed flag it keeps in its node); since every node has
exactly one host, peers that share one process may share a registry, and tests that want a
clean slate build their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ...model import NodeType
from .base import Processor
from .data import (
    DataPointProcessor,
    DeadbandProcessor,
    DebounceProcessor,
    DiscardAboveProcessor,
    DiscardBelowProcessor,
)
from .devices import MqttBridgeProcessor, PinProcessor, SerialDeviceProcessor
from .executors import (
    BACKOFF_CAP_S,
    BACKOFF_FIRST_S,
    CalculationProcessor,
    ComputeProcessor,
    LogicGateProcessor,
    OutgoingWebHookProcessor,
)
from .structural import ClientProcessor, PeerProcessor, ProjectProcessor, ServerProcessor
from .triggers import (
    ButtonProcessor,
    CronTimerProcessor,
    HighThresholdProcessor,
    IncomingWebHookProcessor,
    LowThresholdProcessor,
    TimerProcessor,
)

__all__ = ["REGISTRY", "make_registry"]


def make_registry(
    *, backoff_first_s: float = BACKOFF_FIRST_S, backoff_cap_s: float = BACKOFF_CAP_S
) -> Mapping[NodeType, Processor]:
    """Build one processor for every node type.

    Args:
        backoff_first_s: first pause between outgoing webhook attempts.
        backoff_cap_s: longest pause between them.

    Returns:
        A read-only mapping from every :class:`NodeType` to its processor.

    Raises:
        RuntimeError: a node type has no processor or two processors claim one (a
            programming error, caught by the tests).
    """
    processors: list[Processor] = [
        ServerProcessor(),
        ClientProcessor(),
        ProjectProcessor(),
        PeerProcessor(),
        PinProcessor(),
        DataPointProcessor(),
        DiscardAboveProcessor(),
        DiscardBelowProcessor(),
        DeadbandProcessor(),
        DebounceProcessor(),
        SerialDeviceProcessor(),
        HighThresholdProcessor(),
        LowThresholdProcessor(),
        CronTimerProcessor(),
        TimerProcessor(),
        ButtonProcessor(),
        IncomingWebHookProcessor(),
        LogicGateProcessor(),
        CalculationProcessor(),
        ComputeProcessor(),
        OutgoingWebHookProcessor(backoff_first_s=backoff_first_s, backoff_cap_s=backoff_cap_s),
        MqttBridgeProcessor(),
    ]
    registry = {processor.type: processor for processor in processors}
    missing = [t.value for t in NodeType if t not in registry]
    if missing or len(registry) != len(processors):
        raise RuntimeError(f"processors do not map one to one onto node types: {missing}")
    return MappingProxyType(registry)


#: The default processors, one per node type.
REGISTRY: Mapping[NodeType, Processor] = make_registry()
