"""Property tests: valid nodes of every type round-trip; arbitrary input only ever raises
ValidationError."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krill_crdt.errors import ValidationError
from krill_crdt.model import FIELDS, SCHEMA, Node, NodeType

from .strategies import json_values, nodes, python_values

# Enough examples to reach every branch of every type, few enough to keep the run short. No
# deadline: the run shares machines with other suites, and these tests are about outcomes.
ROUND_TRIP = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_floats(value: Any) -> Any:
    """What pycrdt gives back: every integer as a float."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [as_floats(item) for item in value]
    if isinstance(value, dict):
        return {key: as_floats(item) for key, item in value.items()}
    return value


@pytest.mark.parametrize("node_type", list(NodeType), ids=str)
@ROUND_TRIP
@given(data=st.data())
def test_every_type_round_trips_through_fields_and_json(
    node_type: NodeType, data: st.DataObject
) -> None:
    node = data.draw(nodes(node_type))
    assert Node.from_fields(node.to_fields()) == node
    assert Node.from_json(node.to_json()) == node


@ROUND_TRIP
@given(nodes())
def test_nodes_read_back_from_float_only_storage(node: Node) -> None:
    assert Node.from_fields(as_floats(node.to_fields())) == node


@FUZZ
@given(st.binary(max_size=200))
def test_from_json_of_arbitrary_bytes_only_raises_validation_error(data: bytes) -> None:
    with contextlib.suppress(ValidationError):
        Node.from_json(data)


@FUZZ
@given(st.text(max_size=200))
def test_from_json_of_arbitrary_text_only_raises_validation_error(data: str) -> None:
    with contextlib.suppress(ValidationError):
        Node.from_json(data)


@FUZZ
@given(json_values)
def test_from_json_of_arbitrary_json_only_raises_validation_error(value: object) -> None:
    with contextlib.suppress(ValidationError):
        Node.from_json(orjson.dumps(value))


@FUZZ
@given(st.dictionaries(st.sampled_from([*FIELDS, "extra"]), json_values, max_size=6))
def test_from_fields_of_arbitrary_objects_only_raises_validation_error(
    fields: dict[str, object],
) -> None:
    with contextlib.suppress(ValidationError):
        Node.from_fields(fields)


@FUZZ
@given(
    node=nodes(),
    field=st.sampled_from(FIELDS),
    value=json_values,
    schema=st.sampled_from([SCHEMA, "1.0", "1.9", "2.0"]),
)
def test_from_fields_with_one_field_replaced_only_raises_validation_error(
    node: Node, field: str, value: object, schema: str
) -> None:
    fields = {**node.to_fields(), "schema": schema, field: value}
    try:
        read = Node.from_fields(fields)
    except ValidationError:
        return
    assert Node.from_fields(read.to_fields()) == read


@FUZZ
@given(node=nodes(), key=st.text(max_size=12), value=json_values, newer=st.booleans())
def test_from_fields_with_one_meta_key_replaced_only_raises_validation_error(
    node: Node, key: str, value: object, newer: bool
) -> None:
    fields = node.to_fields()
    fields["meta"] = {**fields["meta"], key: value}  # type: ignore[dict-item]
    fields["schema"] = "1.9" if newer else SCHEMA
    try:
        read = Node.from_fields(fields)
    except ValidationError:
        return
    assert Node.from_json(read.to_json()) == read


@FUZZ
@given(node=nodes(), field=st.sampled_from(FIELDS), value=python_values)
def test_from_fields_with_arbitrary_python_values_only_raises_validation_error(
    node: Node, field: str, value: object
) -> None:
    fields = {**node.to_fields(), field: value}
    with contextlib.suppress(ValidationError):
        Node.from_fields(fields)


@FUZZ
@given(node=nodes(), key=st.text(max_size=12), value=python_values)
def test_meta_with_arbitrary_python_values_only_raises_validation_error(
    node: Node, key: str, value: object
) -> None:
    meta = {**node.meta.to_dict(), key: value}
    with contextlib.suppress(ValidationError):
        node.evolve(meta=meta)
