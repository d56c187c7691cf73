"""The node model: node types and states, typed meta, the :class:`Node` value object, schema.

Everything a node may hold is checked here, once, on construction; layers above pass
:class:`Node` values around and trust them. See ``docs/model.md`` for the type catalog, the
parent rules, the meta fields and how schema versions evolve.

Example:
    >>> node = Node.new(NodeType.Pin, host="pi-1", parent="pi-1", meta={"pin": 17})
    >>> Node.from_json(node.to_json()) == node
    True
"""

from __future__ import annotations

from ._meta_base import Meta
from ._rules import (
    MAX_CHAIN_IDS,
    MAX_EXTRA_BYTES,
    MAX_EXTRA_DEPTH,
    MAX_HOST_ID_BYTES,
    MAX_ID_CHARS,
    check_host_id,
    check_id,
)
from .meta import (
    ButtonMeta,
    CalculationMeta,
    ChainMeta,
    ClientMeta,
    ComputeMeta,
    CronTimerMeta,
    DataPointMeta,
    DeadbandMeta,
    DebounceMeta,
    DiscardAboveMeta,
    DiscardBelowMeta,
    ExecutorMeta,
    HighThresholdMeta,
    IncomingWebHookMeta,
    LogicGateMeta,
    LowThresholdMeta,
    MqttBridgeMeta,
    OutgoingWebHookMeta,
    PeerMeta,
    PinMeta,
    ProjectMeta,
    SerialDeviceMeta,
    ServerMeta,
    TimerMeta,
)
from .node import FIELDS, MAX_NAME_CHARS, MAX_NODE_JSON_BYTES, Node
from .schema import SCHEMA, SCHEMA_VERSION, parse_schema
from .types import CATALOG, Category, NodeState, NodeType, TypeSpec, allowed_children, check_parent

__all__ = [
    "CATALOG",
    "FIELDS",
    "MAX_CHAIN_IDS",
    "MAX_EXTRA_BYTES",
    "MAX_EXTRA_DEPTH",
    "MAX_HOST_ID_BYTES",
    "MAX_ID_CHARS",
    "MAX_NAME_CHARS",
    "MAX_NODE_JSON_BYTES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ButtonMeta",
    "CalculationMeta",
    "Category",
    "ChainMeta",
    "ClientMeta",
    "ComputeMeta",
    "CronTimerMeta",
    "DataPointMeta",
    "DeadbandMeta",
    "DebounceMeta",
    "DiscardAboveMeta",
    "DiscardBelowMeta",
    "ExecutorMeta",
    "HighThresholdMeta",
    "IncomingWebHookMeta",
    "LogicGateMeta",
    "LowThresholdMeta",
    "Meta",
    "MqttBridgeMeta",
    "Node",
    "NodeState",
    "NodeType",
    "OutgoingWebHookMeta",
    "PeerMeta",
    "PinMeta",
    "ProjectMeta",
    "SerialDeviceMeta",
    "ServerMeta",
    "TimerMeta",
    "TypeSpec",
    "allowed_children",
    "check_host_id",
    "check_id",
    "check_parent",
    "parse_schema",
]
