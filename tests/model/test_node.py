"""The Node value object: construction rules, fields, JSON and evolve."""

from __future__ import annotations

import dataclasses
import math

import orjson
import pytest
from pycrdt import Doc, Map

from krill_crdt.errors import ValidationError
from krill_crdt.model import (
    FIELDS,
    MAX_NODE_JSON_BYTES,
    SCHEMA,
    DataPointMeta,
    Node,
    NodeState,
    NodeType,
    PinMeta,
    ServerMeta,
)


def pin(**changes: object) -> Node:
    fields: dict[str, object] = {
        "id": "pin-17",
        "parent": "pi-1",
        "host": "pi-1",
        "type": "Pin",
        "name": "Pump relay",
        "state": "none",
        "meta": {"pin": 17, "mode": "output", "targets": ["dp-1"]},
        "updated": 1700000000.5,
        "schema": SCHEMA,
    }
    fields.update(changes)
    return Node.from_fields(fields)


def refused(field: str, **changes: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        pin(**changes)
    assert caught.value.field == field, str(caught.value)
    assert f"{field}: " in str(caught.value)
    return caught.value


# --- construction -----------------------------------------------------------------------------


def test_new_fills_in_defaults() -> None:
    node = Node.new(NodeType.Server, host="pi-1", id="pi-1")
    assert node.parent is None
    assert node.name == ""
    assert node.state is NodeState.NONE
    assert node.meta == ServerMeta()
    assert node.updated == 0.0
    assert node.schema == SCHEMA


def test_new_makes_a_fresh_uuid4_hex_id() -> None:
    first = Node.new(NodeType.Button, host="pi-1")
    second = Node.new(NodeType.Button, host="pi-1")
    assert len(first.id) == 32
    assert int(first.id, 16) >= 0
    assert first.id != second.id


def test_new_reads_meta_from_a_mapping() -> None:
    node = Node.new(NodeType.Pin, host="pi-1", meta={"pin": 4.0})
    assert node.meta == PinMeta(pin=4)


def test_new_takes_a_meta_instance() -> None:
    meta = PinMeta(pin=4, mode="pwm")
    assert Node.new(NodeType.Pin, host="pi-1", meta=meta).meta is meta


def test_new_names_the_node_in_meta_errors() -> None:
    with pytest.raises(ValidationError, match=r"^node p1: meta\.pin: is required$"):
        Node.new(NodeType.Pin, host="pi-1", id="p1")


def test_new_refuses_meta_of_another_type() -> None:
    with pytest.raises(ValidationError, match=r"meta: must be a PinMeta for a Pin node"):
        Node.new(NodeType.Pin, host="pi-1", meta=ServerMeta())


def test_node_accepts_enum_values_given_as_strings() -> None:
    node = Node("a", None, "h", "Server", "", "info", ServerMeta(), 1)  # type: ignore[arg-type]
    assert node.type is NodeType.Server
    assert node.state is NodeState.INFO
    assert node.updated == 1.0
    assert type(node.updated) is float


def test_node_is_frozen_and_hashable() -> None:
    node = pin()
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.name = "x"  # type: ignore[misc]
    assert hash(node) == hash(pin())


def test_parent_rules_are_not_checked_by_the_node() -> None:
    # The host doc checks them; a node alone does not know its parent's type.
    assert Node.new(NodeType.Server, host="h", parent="elsewhere").parent == "elsewhere"


# --- field rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id",
    ["", "x" * 129, "a b", "a\tb", "a\x00b", "a/b", "a+b", "a#b", "\u2028", "\ud800"],
    ids=repr,
)
def test_id_rules(bad_id: str) -> None:
    refused("id", id=bad_id)


@pytest.mark.parametrize("good_id", ["x" * 128, "pin-x", "ünïcødé", "a:b.c_d", "😀"], ids=repr)
def test_ids_may_be_any_printable_characters(good_id: str) -> None:
    assert pin(id=good_id).id == good_id


def test_id_must_be_a_string() -> None:
    refused("id", id=17)


@pytest.mark.parametrize("bad_host", ["", "x" * 129, "pi 1", "pi/1", None, 3])
def test_host_follows_the_id_rules(bad_host: object) -> None:
    refused("host", host=bad_host)


def test_parent_must_be_a_valid_id() -> None:
    refused("parent", parent="no parent")


def test_parent_must_not_be_the_node_itself() -> None:
    err = refused("parent", parent="pin-17")
    assert "must not be the node itself" in str(err)


def test_parent_may_be_none() -> None:
    assert pin(parent=None).parent is None


def test_name_may_hold_at_most_256_characters() -> None:
    assert len(pin(name="n" * 256).name) == 256
    refused("name", name="n" * 257)


@pytest.mark.parametrize("bad_name", ["line\nbreak", "bell\x07", "del\x7f", "c1\x85"], ids=repr)
def test_name_must_not_hold_control_characters(bad_name: str) -> None:
    refused("name", name=bad_name)


@pytest.mark.parametrize("bad_time", [-1.0, math.nan, math.inf, True, "1", None, 10**400])
def test_updated_must_be_a_finite_non_negative_number(bad_time: object) -> None:
    refused("updated", updated=bad_time)


def test_type_must_be_a_known_type_with_a_suggestion() -> None:
    err = refused("type", type="Pinn")
    assert "did you mean 'Pin'?" in str(err)


def test_type_values_are_case_sensitive() -> None:
    refused("type", type="pin")


def test_state_must_be_a_known_lowercase_state() -> None:
    err = refused("state", state="NONE")
    assert "did you mean" in str(err)


def test_meta_must_be_an_object() -> None:
    refused("meta", meta=[17])


def test_meta_errors_name_the_node() -> None:
    err = refused("meta.pin", meta={"pin": 99})
    assert str(err) == "node pin-17: meta.pin: must be 0..53, got 99"
    assert err.node_id == "pin-17"


def test_meta_class_must_match_the_type() -> None:
    with pytest.raises(ValidationError, match=r"meta: must be a PinMeta for a Pin node"):
        dataclasses.replace(pin(), meta=DataPointMeta())


@pytest.mark.parametrize("field", ["targets", "sources"])
def test_chain_lists_must_not_name_the_node_itself(field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Node.new(NodeType.Compute, host="h", id="c1", meta={field: ["a", "c1"]})
    assert caught.value.field == f"meta.{field}[1]"


@pytest.mark.parametrize("missing", FIELDS)
def test_every_field_is_required(missing: str) -> None:
    fields = pin().to_fields()
    del fields[missing]
    with pytest.raises(ValidationError) as caught:
        Node.from_fields(fields)
    assert caught.value.field == missing
    assert str(caught.value).endswith(f"{missing}: is required")


def test_unknown_field_is_refused_with_a_suggestion() -> None:
    fields = {**pin().to_fields(), "parnet": "x"}
    with pytest.raises(ValidationError, match=r"parnet: is not a node field \(did you mean"):
        Node.from_fields(fields)


def test_fields_must_be_a_mapping() -> None:
    with pytest.raises(ValidationError, match=r"node fields must be an object, got 'list'"):
        Node.from_fields([])  # type: ignore[arg-type]


def test_field_names_must_be_strings() -> None:
    with pytest.raises(ValidationError, match=r"field names must be strings"):
        Node.from_fields({**pin().to_fields(), 1: "x"})  # type: ignore[dict-item]


# --- fields -----------------------------------------------------------------------------------


def test_to_fields_has_exactly_the_node_keys() -> None:
    fields = pin().to_fields()
    assert tuple(fields) == FIELDS == (
        "id", "parent", "host", "type", "name", "state", "meta", "updated", "schema",
    )  # fmt: skip
    assert fields["type"] == "Pin"
    assert fields["state"] == "none"
    assert isinstance(fields["meta"], dict)


def test_to_fields_is_a_fresh_copy() -> None:
    node = pin()
    fields = node.to_fields()
    fields["meta"]["targets"].append("x")  # type: ignore[index]
    assert node.meta.targets == ("dp-1",)  # type: ignore[attr-defined]


def test_fields_read_back_from_floats_only_storage() -> None:
    # pycrdt reads every integer back as a float.
    node = pin()
    fields = node.to_fields()
    fields["meta"] = {key: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                      for key, v in node.meta.to_dict().items()}  # fmt: skip
    assert Node.from_fields(fields) == node


def test_fields_round_trip_through_a_pycrdt_map() -> None:
    node = Node.new(
        NodeType.DataPoint,
        host="pi-1",
        meta={"precision": 3, "snapshot_value": 7, "snapshot_time": 12, "targets": ["x"]},
        updated=5,
    )
    writer, reader = Doc(), Doc()
    writer.get("nodes", type=Map)[node.id] = Map(node.to_fields())
    reader.apply_update(writer.get_update())
    stored = reader.get("nodes", type=Map)[node.id].to_py()
    assert stored["meta"]["precision"] == 3.0
    assert Node.from_fields(stored) == node


# --- JSON -------------------------------------------------------------------------------------


def test_json_round_trip() -> None:
    node = pin()
    assert Node.from_json(node.to_json()) == node


def test_json_accepts_a_string() -> None:
    node = pin()
    assert Node.from_json(node.to_json().decode()) == node


def test_json_is_the_same_for_equal_nodes() -> None:
    assert pin().to_json() == pin().to_json()
    assert orjson.loads(pin().to_json()) == pin().to_fields()


def test_invalid_json_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^node JSON is not valid JSON"):
        Node.from_json(b'{"id": ')


def test_json_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^node JSON must be an object, got 'list'$"):
        Node.from_json(b"[1, 2]")


def test_oversized_json_is_refused_before_parsing() -> None:
    data = b" " * MAX_NODE_JSON_BYTES + b"{}"
    with pytest.raises(ValidationError, match=rf"at most {MAX_NODE_JSON_BYTES} bytes"):
        Node.from_json(data)
    with pytest.raises(ValidationError, match=rf"at most {MAX_NODE_JSON_BYTES} bytes"):
        Node.from_json(data.decode())


def test_json_string_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"not valid Unicode"):
        Node.from_json('{"id": "\ud800"}')


def test_json_of_another_kind_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"must be bytes or str"):
        Node.from_json(17)  # type: ignore[arg-type]


def test_json_errors_name_the_node_and_field() -> None:
    fields = pin().to_fields()
    fields["name"] = 5
    with pytest.raises(ValidationError, match=r"^node pin-17: name: must be a string"):
        Node.from_json(orjson.dumps(fields))


def test_largest_node_round_trips_through_json() -> None:
    ids = [f"{i:03d}" + "€" * 125 for i in range(256)]
    node = Node.new(
        NodeType.OutgoingWebHook,
        host="h" * 64,
        parent="p" * 128,
        id="i" * 128,
        name="n" * 256,
        meta={"url": "https://e.org/" + "u" * 2000, "sources": ids, "targets": ids},
    )
    data = node.to_json()
    assert len(data) < MAX_NODE_JSON_BYTES
    assert Node.from_json(data) == node


# --- evolve -----------------------------------------------------------------------------------


def test_evolve_changes_fields_and_leaves_the_original() -> None:
    node = pin()
    changed = node.evolve(name="Fan", state=NodeState.WARN, updated=2.0)
    assert (changed.name, changed.state, changed.updated) == ("Fan", NodeState.WARN, 2.0)
    assert node.name == "Pump relay"


def test_evolve_validates() -> None:
    with pytest.raises(ValidationError, match=r"^node pin-17: name: must not hold control"):
        pin().evolve(name="a\nb")


def test_evolve_reads_a_meta_mapping_as_the_whole_meta() -> None:
    changed = pin().evolve(meta={"pin": 5})
    assert changed.meta == PinMeta(pin=5)


def test_evolve_validates_a_meta_mapping() -> None:
    with pytest.raises(ValidationError, match=r"^node pin-17: meta\.pin: must be 0\.\.53"):
        pin().evolve(meta={"pin": 60})


def test_evolve_takes_a_meta_instance() -> None:
    assert pin().evolve(meta=PinMeta(pin=6)).meta == PinMeta(pin=6)


def test_evolve_refuses_a_type_change() -> None:
    with pytest.raises(ValidationError) as caught:
        pin().evolve(type=NodeType.DataPoint, meta={})
    assert caught.value.field == "type"
    assert "cannot change" in str(caught.value)


def test_evolve_allows_restating_the_same_type() -> None:
    assert pin().evolve(type=NodeType.Pin) == pin()


def test_evolve_refuses_unknown_field_names() -> None:
    with pytest.raises(ValidationError, match=r"nmae: is not a node field \(did you mean 'name'"):
        pin().evolve(nmae="x")


def test_a_host_id_longer_than_a_wire_doc_id_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        Node.new(NodeType.Server, host="é" * 33)
    assert caught.value.field == "host"
    assert "64 UTF-8 bytes" in str(caught.value)
