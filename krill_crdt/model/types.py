"""Node types, their categories, node states, and where in the tree each type may sit.

Every node has a type (:class:`NodeType`), and every type belongs to a :class:`Category`.
:data:`CATALOG` holds one :class:`TypeSpec` per type: its category, its meta class, and the
parent types it may sit under. :func:`check_parent` applies those rules; the host doc calls it
on every write, since only the host doc knows the type of a node's parent.

Parent rules ("root" means the node has no parent):

================================================  =========  ==================================
type                                              category   may sit under
================================================  =========  ==================================
Server                                            host       nothing: a root only
Client                                            client     root, or Server
Peer                                              peer       Server
Project                                           project    Server, Project
Pin                                               pin        Server
SerialDevice                                      serial     Server
MqttBridge                                        bridge     Server
DataPoint                                         data_point Server, Project, SerialDevice,
                                                             MqttBridge
DiscardAbove, DiscardBelow, Deadband, Debounce    filter     DataPoint
HighThreshold, LowThreshold                       trigger    DataPoint
CronTimer, Timer, Button, IncomingWebHook         trigger    Server, Project, DataPoint, Pin
LogicGate, Calculation, Compute, OutgoingWebHook  executor   Server, Project, DataPoint, any
                                                             trigger, any executor
================================================  =========  ==================================
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from ..errors import ValidationError
from . import meta as m

__all__ = [
    "CATALOG",
    "Category",
    "NodeState",
    "NodeType",
    "TypeSpec",
    "allowed_children",
    "check_parent",
]


class NodeType(str, Enum):
    """What a node is. The value is the name, as stored in the ``type`` field of a node."""

    Server = "Server"
    Client = "Client"
    Project = "Project"
    Peer = "Peer"
    Pin = "Pin"
    DataPoint = "DataPoint"
    DiscardAbove = "DiscardAbove"
    DiscardBelow = "DiscardBelow"
    Deadband = "Deadband"
    Debounce = "Debounce"
    SerialDevice = "SerialDevice"
    HighThreshold = "HighThreshold"
    LowThreshold = "LowThreshold"
    CronTimer = "CronTimer"
    Timer = "Timer"
    Button = "Button"
    IncomingWebHook = "IncomingWebHook"
    LogicGate = "LogicGate"
    Calculation = "Calculation"
    Compute = "Compute"
    OutgoingWebHook = "OutgoingWebHook"
    MqttBridge = "MqttBridge"

    def __str__(self) -> str:
        return self.value


class Category(str, Enum):
    """The role a node type plays; several types share one category."""

    HOST = "host"
    CLIENT = "client"
    PROJECT = "project"
    PEER = "peer"
    PIN = "pin"
    DATA_POINT = "data_point"
    FILTER = "filter"
    SERIAL = "serial"
    TRIGGER = "trigger"
    EXECUTOR = "executor"
    BRIDGE = "bridge"

    def __str__(self) -> str:
        return self.value


class NodeState(str, Enum):
    """How a node is doing, as its host last wrote it.

    States report results; they are never requests. Running a node is asked of its host
    directly, so no peer ever reacts to another peer's state change by executing something.
    """

    NONE = "none"
    INFO = "info"
    WARN = "warn"
    SEVERE = "severe"
    ERROR = "error"
    PAUSED = "paused"
    PAIRING = "pairing"
    PROCESSING = "processing"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """What the model knows about one node type.

    Attributes:
        type: the node type.
        category: its category.
        parents: the node types it may sit under.
        may_be_root: whether it may have no parent.
        meta: the class of its meta.
        description: one line saying what it is.
    """

    type: NodeType
    category: Category
    parents: frozenset[NodeType]
    may_be_root: bool
    # builtins.type: inside this class body, "type" is the field above.
    meta: builtins.type[m.Meta]
    description: str


_T = NodeType
_TRIGGERS = frozenset(
    {_T.HighThreshold, _T.LowThreshold, _T.CronTimer, _T.Timer, _T.Button, _T.IncomingWebHook}
)
_EXECUTORS = frozenset({_T.LogicGate, _T.Calculation, _T.Compute, _T.OutgoingWebHook})
_UNDER_SERVER = frozenset({_T.Server})
_UNDER_DATA_POINT = frozenset({_T.DataPoint})
_TIMER_PARENTS = frozenset({_T.Server, _T.Project, _T.DataPoint, _T.Pin})
_EXECUTOR_PARENTS = frozenset({_T.Server, _T.Project, _T.DataPoint}) | _TRIGGERS | _EXECUTORS


def _spec(
    type_: NodeType,
    category: Category,
    parents: frozenset[NodeType],
    meta: type[m.Meta],
    description: str,
    *,
    may_be_root: bool = False,
) -> tuple[NodeType, TypeSpec]:
    return type_, TypeSpec(type_, category, parents, may_be_root, meta, description)


#: One :class:`TypeSpec` per :class:`NodeType`, read-only.
CATALOG: Mapping[NodeType, TypeSpec] = MappingProxyType(
    dict(
        [
            _spec(_T.Server, Category.HOST, frozenset(), m.ServerMeta,
                  "a host that owns a host doc and runs its nodes", may_be_root=True),
            _spec(_T.Client, Category.CLIENT, _UNDER_SERVER, m.ClientMeta,
                  "a browser, app or script that edits the graph", may_be_root=True),
            _spec(_T.Project, Category.PROJECT, frozenset({_T.Server, _T.Project}),
                  m.ProjectMeta, "a folder grouping data points, triggers and executors"),
            _spec(_T.Peer, Category.PEER, _UNDER_SERVER, m.PeerMeta,
                  "another peer of the swarm, as a server has seen it"),
            _spec(_T.Pin, Category.PIN, _UNDER_SERVER, m.PinMeta,
                  "a GPIO line of its server"),
            _spec(_T.DataPoint, Category.DATA_POINT,
                  frozenset({_T.Server, _T.Project, _T.SerialDevice, _T.MqttBridge}),
                  m.DataPointMeta, "a named value with host-local history"),
            _spec(_T.DiscardAbove, Category.FILTER, _UNDER_DATA_POINT, m.DiscardAboveMeta,
                  "drops values above a threshold"),
            _spec(_T.DiscardBelow, Category.FILTER, _UNDER_DATA_POINT, m.DiscardBelowMeta,
                  "drops values below a threshold"),
            _spec(_T.Deadband, Category.FILTER, _UNDER_DATA_POINT, m.DeadbandMeta,
                  "drops changes smaller than a band"),
            _spec(_T.Debounce, Category.FILTER, _UNDER_DATA_POINT, m.DebounceMeta,
                  "keeps a value only once it has held for a window"),
            _spec(_T.SerialDevice, Category.SERIAL, _UNDER_SERVER, m.SerialDeviceMeta,
                  "a serial line whose lines feed data points"),
            _spec(_T.HighThreshold, Category.TRIGGER, _UNDER_DATA_POINT, m.HighThresholdMeta,
                  "fires when its data point rises above a level"),
            _spec(_T.LowThreshold, Category.TRIGGER, _UNDER_DATA_POINT, m.LowThresholdMeta,
                  "fires when its data point falls below a level"),
            _spec(_T.CronTimer, Category.TRIGGER, _TIMER_PARENTS, m.CronTimerMeta,
                  "fires on a cron schedule"),
            _spec(_T.Timer, Category.TRIGGER, _TIMER_PARENTS, m.TimerMeta,
                  "fires at a fixed interval"),
            _spec(_T.Button, Category.TRIGGER, _TIMER_PARENTS, m.ButtonMeta,
                  "fires when pressed in a dashboard"),
            _spec(_T.IncomingWebHook, Category.TRIGGER, _TIMER_PARENTS, m.IncomingWebHookMeta,
                  "fires when an HTTP request reaches its path"),
            _spec(_T.LogicGate, Category.EXECUTOR, _EXECUTOR_PARENTS, m.LogicGateMeta,
                  "combines its sources as booleans"),
            _spec(_T.Calculation, Category.EXECUTOR, _EXECUTOR_PARENTS, m.CalculationMeta,
                  "evaluates a formula over its sources"),
            _spec(_T.Compute, Category.EXECUTOR, _EXECUTOR_PARENTS, m.ComputeMeta,
                  "aggregates the recent history of its sources"),
            _spec(_T.OutgoingWebHook, Category.EXECUTOR, _EXECUTOR_PARENTS,
                  m.OutgoingWebHookMeta, "sends an HTTP request"),
            _spec(_T.MqttBridge, Category.BRIDGE, _UNDER_SERVER, m.MqttBridgeMeta,
                  "an MQTT subscription whose messages feed data points"),
        ]
    )
)  # fmt: skip


def check_parent(child_type: NodeType, parent_type: NodeType | None) -> None:
    """Check that a node of one type may sit under a node of another.

    Args:
        child_type: type of the node being placed.
        parent_type: type of its parent, or ``None`` for a root.

    Raises:
        ValidationError: field ``parent``, when the catalog does not allow it, for example
            ``parent: a Pin must be under a Server, got 'Project'``.
    """
    spec = CATALOG[NodeType(child_type)]
    if parent_type is None:
        if spec.may_be_root:
            return
    elif NodeType(parent_type) in spec.parents:
        return
    got = None if parent_type is None else NodeType(parent_type).value
    raise ValidationError("parent", _placement(spec), got)


def allowed_children(parent_type: NodeType | None) -> tuple[NodeType, ...]:
    """List the node types that may sit under a node of a type, or at the root.

    Args:
        parent_type: type of the parent, or ``None`` for the root.

    Returns:
        The allowed child types, in :class:`NodeType` order.
    """
    if parent_type is None:
        return tuple(spec.type for spec in CATALOG.values() if spec.may_be_root)
    parent = NodeType(parent_type)
    return tuple(spec.type for spec in CATALOG.values() if parent in spec.parents)


def _placement(spec: TypeSpec) -> str:
    # Says where the type may go, in the order the catalog lists types.
    article = "an" if spec.type.value[0] in "AEIOU" else "a"
    if not spec.parents:
        return f"{article} {spec.type} must be a root (no parent)"
    names = [str(t) for t in NodeType if t in spec.parents]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    if spec.may_be_root:
        return f"{article} {spec.type} must be a root or under a {listed}"
    return f"{article} {spec.type} must be under a {listed}"
