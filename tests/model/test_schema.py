"""Schema versions: which nodes this release reads, and what it keeps of newer ones."""

from __future__ import annotations

import orjson
import pytest

from krill_crdt.errors import SchemaVersionError, ValidationError
from krill_crdt.model import SCHEMA, SCHEMA_VERSION, Node, NodeType, PinMeta, parse_schema
from krill_crdt.model import schema as schema_module

NEXT_MINOR = f"{SCHEMA_VERSION[0]}.{SCHEMA_VERSION[1] + 1}"
NEXT_MAJOR = f"{SCHEMA_VERSION[0] + 1}.0"


def pin_fields(schema: str = SCHEMA, **meta: object) -> dict[str, object]:
    return {
        "id": "pin-4",
        "parent": "pi-1",
        "host": "pi-1",
        "type": "Pin",
        "name": "",
        "state": "none",
        "meta": {"pin": 4, **meta},
        "updated": 1.0,
        "schema": schema,
    }


def test_schema_constants_agree() -> None:
    assert SCHEMA == "1.1"
    assert SCHEMA_VERSION == (1, 1)
    assert parse_schema(SCHEMA) == SCHEMA_VERSION


@pytest.mark.parametrize(
    "text", ["1", "1.0.0", "v1.0", "01.0", "1.00", " 1.0", "1.0\n", "", "1.-1"]
)
def test_malformed_schema_is_a_validation_error(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Node.from_fields(pin_fields(schema=text))
    assert not isinstance(caught.value, SchemaVersionError)
    assert caught.value.field == "schema"


def test_schema_must_be_a_string() -> None:
    with pytest.raises(ValidationError, match=r"schema: must be a string"):
        Node.from_fields(pin_fields(schema=1.0))  # type: ignore[arg-type]


def test_newer_major_is_refused_with_schema_version_error() -> None:
    with pytest.raises(SchemaVersionError) as caught:
        Node.from_fields(pin_fields(schema=NEXT_MAJOR))
    assert str(caught.value) == (
        f"node pin-4: schema: this release reads schema 1.x only, got '{NEXT_MAJOR}'"
    )
    assert caught.value.node_id == "pin-4"


def test_newer_major_is_refused_before_meta_is_read() -> None:
    fields = pin_fields(schema=NEXT_MAJOR)
    fields["meta"] = "garbage"
    with pytest.raises(SchemaVersionError):
        Node.from_fields(fields)


def test_newer_major_is_refused_before_any_other_field_is_read() -> None:
    fields = {"schema": NEXT_MAJOR, "id": ["not", "an", "id"], "type": "Hologram", "meta": 0}
    with pytest.raises(SchemaVersionError) as caught:
        Node.from_fields(fields)
    assert caught.value.node_id == ""


def test_newer_major_json_is_refused_with_schema_version_error() -> None:
    with pytest.raises(SchemaVersionError):
        Node.from_json(orjson.dumps({"schema": NEXT_MAJOR, "meta": None}))


def test_older_major_is_refused_too() -> None:
    with pytest.raises(SchemaVersionError):
        Node.from_fields(pin_fields(schema="0.9"))


def test_newer_major_meta_is_refused_by_from_dict() -> None:
    with pytest.raises(SchemaVersionError):
        PinMeta.from_dict({"pin": 4}, schema=NEXT_MAJOR)


def test_node_of_a_newer_major_cannot_be_built() -> None:
    with pytest.raises(SchemaVersionError):
        Node.new(NodeType.Server, host="h").evolve(schema=NEXT_MAJOR)


def test_newer_minor_is_read() -> None:
    node = Node.from_fields(pin_fields(schema=NEXT_MINOR))
    assert node.schema == NEXT_MINOR


def test_newer_minor_keeps_unknown_meta_keys() -> None:
    node = Node.from_fields(pin_fields(schema=NEXT_MINOR, drive="strong", curve=[1, {"a": 2.5}]))
    assert dict(node.meta.extra).keys() == {"drive", "curve"}
    assert node.meta.to_dict()["curve"] == [1, {"a": 2.5}]


def test_newer_minor_unknown_meta_keys_survive_a_fields_round_trip() -> None:
    fields = pin_fields(schema=NEXT_MINOR, drive="strong", curve=[1, {"a": 2.5}])
    node = Node.from_fields(fields)
    assert Node.from_fields(node.to_fields()) == node
    assert node.to_fields()["meta"] == {**PinMeta(pin=4).to_dict(), **fields["meta"]}  # type: ignore[dict-item]


def test_newer_minor_unknown_meta_keys_survive_a_json_round_trip() -> None:
    node = Node.from_json(orjson.dumps(pin_fields(schema=NEXT_MINOR, drive="strong")))
    assert Node.from_json(node.to_json()).meta.extra == {"drive": "strong"}


def test_newer_minor_unknown_meta_keys_survive_an_edit() -> None:
    node = Node.from_fields(pin_fields(schema=NEXT_MINOR, drive="strong"))
    edited = node.evolve(name="Pump", updated=2.0)
    assert edited.schema == NEXT_MINOR
    assert edited.to_fields()["meta"]["drive"] == "strong"  # type: ignore[index]


def test_newer_minor_still_checks_known_meta_keys() -> None:
    with pytest.raises(ValidationError, match=r"meta\.pin: must be 0\.\.53"):
        Node.from_fields(pin_fields(schema=NEXT_MINOR, pin=99))


def test_newer_minor_unknown_meta_values_must_be_json() -> None:
    with pytest.raises(ValidationError, match=r"meta\.drive: must be a finite number"):
        Node.from_fields(pin_fields(schema=NEXT_MINOR, drive=float("nan")))


def test_newer_minor_unknown_meta_values_are_read_only() -> None:
    node = Node.from_fields(pin_fields(schema=NEXT_MINOR, curve={"a": [1]}))
    with pytest.raises(TypeError):
        node.meta.extra["curve"]["a"] = 2  # type: ignore[index]


def test_newer_minor_unknown_meta_values_are_bounded() -> None:
    with pytest.raises(ValidationError, match=r"meta: unknown fields must encode to at most"):
        Node.from_fields(pin_fields(schema=NEXT_MINOR, blob="x" * 70_000))


def test_newer_minor_unknown_meta_nesting_is_bounded() -> None:
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ValidationError, match=r"must nest at most"):
        Node.from_fields(pin_fields(schema=NEXT_MINOR, deep=deep))


def test_newer_minor_top_level_fields_are_dropped() -> None:
    node = Node.from_fields({**pin_fields(schema=NEXT_MINOR), "tags": ["a"]})
    assert set(node.to_fields()) == set(pin_fields())


def test_equal_minor_refuses_unknown_meta_keys_with_a_suggestion() -> None:
    with pytest.raises(ValidationError) as caught:
        Node.from_fields(pin_fields(pul="up"))
    assert caught.value.field == "meta.pul"
    assert "did you mean 'pull'?" in str(caught.value)


def test_older_minor_refuses_unknown_meta_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend this release is one minor ahead, so our own schema is an older minor.
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", (SCHEMA_VERSION[0], SCHEMA_VERSION[1] + 1))
    with pytest.raises(ValidationError, match=r"meta\.drive: is not a field of PinMeta"):
        Node.from_fields(pin_fields(drive="strong"))


def test_unknown_meta_keys_need_a_newer_minor_on_the_node() -> None:
    node = Node.from_fields(pin_fields(schema=NEXT_MINOR, drive="strong"))
    with pytest.raises(ValidationError, match=r"meta\.drive: is not a field of PinMeta"):
        node.evolve(schema=SCHEMA)


def test_unknown_meta_keys_may_not_shadow_known_ones() -> None:
    with pytest.raises(ValidationError, match=r"meta\.pin: is a known field"):
        PinMeta(pin=4, extra={"pin": 5})
