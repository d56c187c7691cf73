"""Node types, categories, states and the parent rules of the catalog."""

from __future__ import annotations

import pytest

from krill_crdt.errors import ValidationError
from krill_crdt.model import (
    CATALOG,
    Category,
    Meta,
    NodeState,
    NodeType,
    TypeSpec,
    allowed_children,
    check_parent,
)

T = NodeType
TRIGGERS = {T.HighThreshold, T.LowThreshold, T.CronTimer, T.Timer, T.Button, T.IncomingWebHook}
EXECUTORS = {T.LogicGate, T.Calculation, T.Compute, T.OutgoingWebHook}

# The parent rules as specified; None stands for "may be a root".
ALLOWED_PARENTS: dict[NodeType, set[NodeType | None]] = {
    T.Server: {None},
    T.Client: {None, T.Server},
    T.Peer: {T.Server},
    T.Project: {T.Server, T.Project},
    T.Pin: {T.Server},
    T.SerialDevice: {T.Server},
    T.MqttBridge: {T.Server},
    T.DataPoint: {T.Server, T.Project, T.SerialDevice, T.MqttBridge},
    T.DiscardAbove: {T.DataPoint},
    T.DiscardBelow: {T.DataPoint},
    T.Deadband: {T.DataPoint},
    T.Debounce: {T.DataPoint},
    T.HighThreshold: {T.DataPoint},
    T.LowThreshold: {T.DataPoint},
    T.CronTimer: {T.Server, T.Project, T.DataPoint, T.Pin},
    T.Timer: {T.Server, T.Project, T.DataPoint, T.Pin},
    T.Button: {T.Server, T.Project, T.DataPoint, T.Pin},
    T.IncomingWebHook: {T.Server, T.Project, T.DataPoint, T.Pin},
    **{
        executor: {T.Server, T.Project, T.DataPoint, *TRIGGERS, *EXECUTORS}
        for executor in EXECUTORS
    },
}

CATEGORIES = {
    T.Server: Category.HOST,
    T.Client: Category.CLIENT,
    T.Project: Category.PROJECT,
    T.Peer: Category.PEER,
    T.Pin: Category.PIN,
    T.DataPoint: Category.DATA_POINT,
    T.SerialDevice: Category.SERIAL,
    T.MqttBridge: Category.BRIDGE,
    **dict.fromkeys([T.DiscardAbove, T.DiscardBelow, T.Deadband, T.Debounce], Category.FILTER),
    **dict.fromkeys(TRIGGERS, Category.TRIGGER),
    **dict.fromkeys(EXECUTORS, Category.EXECUTOR),
}

PLACEMENTS = [
    (child, parent) for child in NodeType for parent in [None, *NodeType]
]  # every child type under every parent type and at the root


def test_node_type_values_equal_their_names() -> None:
    assert [t.value for t in NodeType] == [t.name for t in NodeType]
    assert len(NodeType) == 22


def test_node_type_is_a_str_and_prints_as_its_value() -> None:
    assert NodeType.Pin == "Pin"
    assert str(NodeType.Pin) == "Pin"
    assert f"{NodeType.DataPoint}" == "DataPoint"


def test_node_state_values_are_lowercase_names() -> None:
    assert [s.value for s in NodeState] == [s.name.lower() for s in NodeState]
    assert {s.name for s in NodeState} >= {
        "NONE", "INFO", "WARN", "SEVERE", "ERROR", "PAUSED", "PAIRING", "PROCESSING",
    }  # fmt: skip


def test_catalog_has_one_spec_per_type() -> None:
    assert set(CATALOG) == set(NodeType)
    for node_type, spec in CATALOG.items():
        assert isinstance(spec, TypeSpec)
        assert spec.type is node_type
        assert issubclass(spec.meta, Meta)
        assert spec.description


def test_catalog_is_read_only() -> None:
    with pytest.raises(TypeError):
        CATALOG[NodeType.Pin] = CATALOG[NodeType.Server]  # type: ignore[index]


def test_meta_classes_are_distinct_per_type() -> None:
    assert len({spec.meta for spec in CATALOG.values()}) == len(CATALOG)


@pytest.mark.parametrize("node_type", list(NodeType), ids=str)
def test_each_type_has_its_category(node_type: NodeType) -> None:
    assert CATALOG[node_type].category is CATEGORIES[node_type]


@pytest.mark.parametrize("node_type", list(NodeType), ids=str)
def test_catalog_parents_match_the_parent_rules(node_type: NodeType) -> None:
    spec = CATALOG[node_type]
    assert spec.may_be_root == (None in ALLOWED_PARENTS[node_type])
    assert set(spec.parents) == ALLOWED_PARENTS[node_type] - {None}


@pytest.mark.parametrize(
    ("child", "parent"), PLACEMENTS, ids=[f"{c}-under-{p}" for c, p in PLACEMENTS]
)
def test_check_parent_follows_the_parent_rules(child: NodeType, parent: NodeType | None) -> None:
    if parent in ALLOWED_PARENTS[child]:
        check_parent(child, parent)
    else:
        with pytest.raises(ValidationError) as caught:
            check_parent(child, parent)
        assert caught.value.field == "parent"
        assert str(caught.value).startswith(
            f"parent: a{'n' if child.value[0] in 'AEIOU' else ''} {child} must be"
        )


def test_check_parent_message_says_where_the_type_belongs() -> None:
    with pytest.raises(
        ValidationError, match=r"^parent: a Pin must be under a Server, got 'Project'$"
    ):
        check_parent(NodeType.Pin, NodeType.Project)


def test_check_parent_message_for_a_root_only_type() -> None:
    with pytest.raises(ValidationError, match=r"^parent: a Server must be a root \(no parent\)"):
        check_parent(NodeType.Server, NodeType.Server)


def test_check_parent_message_for_a_missing_parent() -> None:
    with pytest.raises(ValidationError, match=r"^parent: a DataPoint must be under .*, got None$"):
        check_parent(NodeType.DataPoint, None)


def test_allowed_children_of_the_root() -> None:
    assert allowed_children(None) == (NodeType.Server, NodeType.Client)


@pytest.mark.parametrize("parent", list(NodeType), ids=str)
def test_allowed_children_agree_with_check_parent(parent: NodeType) -> None:
    expected = tuple(child for child in NodeType if parent in ALLOWED_PARENTS[child])
    assert allowed_children(parent) == expected
