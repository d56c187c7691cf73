"""The :class:`Node` value object: one node of the graph, validated, and its JSON forms.

A node exists in three shapes, and converts between them without loss:

* a :class:`Node` (frozen; every field checked on construction);
* its *fields*, a plain dict (:meth:`Node.to_fields`), which is what a host doc stores under
  the node's id. Read back from pycrdt, every integer comes back as a float; reading accepts
  that;
* JSON bytes (:meth:`Node.to_json`), for the REST API and for people.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar, cast

import orjson

from ..errors import ValidationError
from ._meta_base import Meta, unknown_meta_key
from ._rules import check_host_id, check_id, check_text, short, shown, suggest
from .meta import ChainMeta, ExecutorMeta
from .schema import SCHEMA, is_newer_minor, readable_schema
from .types import CATALOG, NodeState, NodeType

__all__ = ["FIELDS", "MAX_NAME_CHARS", "MAX_NODE_JSON_BYTES", "Node"]

_E = TypeVar("_E", bound=Enum)

#: The keys of a node's fields, in the order :meth:`Node.to_fields` writes them.
FIELDS = ("id", "parent", "host", "type", "name", "state", "meta", "updated", "schema")

_FIELD_SET = frozenset(FIELDS)
_TYPES: Mapping[str, NodeType] = {member.value: member for member in NodeType}
_STATES: Mapping[str, NodeState] = {member.value: member for member in NodeState}

#: Longest node name; a name is a label for dashboards and logs.
MAX_NAME_CHARS = 256

#: Largest node JSON :meth:`Node.from_json` reads. The largest node this release can build (two
#: full chain lists of 128-character ids, maximal texts, and kept fields of a newer minor) is
#: under 400 KiB, so every node it writes reads back. 1 MiB is also aiohttp's default request
#: body limit, so a body the HTTP layer accepts is never refused here for size alone.
MAX_NODE_JSON_BYTES = 1024 * 1024


def _at_node(err: ValidationError, node_id: str) -> ValidationError:
    # The same error, now naming the node; keeps the class (SchemaVersionError stays one).
    if err.node_id or not node_id:
        return err
    return type(err)(err.field, err.rule, err.got, node_id=node_id)


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the graph.

    Attributes:
        id: unique node id.
        parent: id of its parent node, or ``None`` for a root.
        host: id of the host (server) whose host doc holds the node, and which runs it.
        type: what the node is.
        name: label for people; may be empty.
        state: how the node is doing, as its host last wrote it.
        meta: the typed meta of its type (see :data:`~krill_crdt.model.CATALOG`).
        updated: when the node last changed, in Unix time (seconds).
        schema: the schema it was written with (``"MAJOR.MINOR"``).

    Raises:
        ValidationError: on construction, when any field breaks its rule. Whether the parent's
            type fits is not checked here (see :func:`~krill_crdt.model.check_parent`).
        SchemaVersionError: ``schema`` has a major this release cannot read.
    """

    id: str
    parent: str | None
    host: str
    type: NodeType
    name: str
    state: NodeState
    meta: Meta
    updated: float
    schema: str = SCHEMA

    def __post_init__(self) -> None:
        check_id("id", self.id)
        try:
            self._check_fields()
        except ValidationError as err:
            raise _at_node(err, self.id) from None

    def _check_fields(self) -> None:
        # Step 1: the schema decides how everything else is read.
        version = readable_schema(self.schema)

        # Step 2: identity and place in the tree.
        check_host_id("host", self.host)
        if self.parent is not None:
            check_id("parent", self.parent)
            if self.parent == self.id:
                raise ValidationError("parent", "must not be the node itself", self.parent)

        # Step 3: enum fields, given as members or as their stored strings.
        object.__setattr__(self, "type", _enum_field("type", NodeType, _TYPES, self.type))
        object.__setattr__(self, "state", _enum_field("state", NodeState, _STATES, self.state))
        check_text("name", self.name, MAX_NAME_CHARS)
        object.__setattr__(self, "updated", _timestamp("updated", self.updated))

        # Step 4: the meta must be of its type's class, and keep unknown fields only when a
        # newer minor could have written them.
        wanted = CATALOG[self.type].meta
        if type(self.meta) is not wanted:
            raise ValidationError(
                "meta", f"must be a {wanted.__name__} for a {self.type} node", _kind(self.meta)
            )
        if self.meta.extra and not is_newer_minor(version):
            raise unknown_meta_key(wanted, next(iter(self.meta.extra)))
        if isinstance(self.meta, ChainMeta):
            _check_no_self_edge(self.id, "meta.targets", self.meta.targets)
        if isinstance(self.meta, ExecutorMeta):
            _check_no_self_edge(self.id, "meta.sources", self.meta.sources)

    @classmethod
    def new(
        cls,
        type: NodeType,
        *,
        host: str,
        parent: str | None = None,
        name: str = "",
        meta: Meta | Mapping[str, object] | None = None,
        state: NodeState = NodeState.NONE,
        id: str | None = None,
        updated: float = 0.0,
    ) -> Node:
        """Make a node of the current schema.

        Args:
            type: what the node is.
            host: id of the host whose host doc will hold it.
            parent: id of its parent, or ``None`` for a root.
            name: label for people.
            meta: the meta: ``None`` for the type's defaults, a mapping read like stored meta,
                or an instance of the type's meta class.
            state: initial state.
            id: node id; a fresh uuid4 in hex when ``None``.
            updated: Unix time of the change, in seconds; callers pass ``now``.

        Returns:
            The new node.

        Raises:
            ValidationError: a field breaks its rule, or the type's meta has required fields
                and ``meta`` does not give them.
        """
        node_id = uuid.uuid4().hex if id is None else id
        node_type = _enum_field("type", NodeType, _TYPES, type)
        try:
            meta_value = _read_meta(node_type, {} if meta is None else meta, SCHEMA)
        except ValidationError as err:
            raise _at_node(err, node_id if _is_id(node_id) else "") from None
        return cls(node_id, parent, host, node_type, name, state, meta_value, updated)

    def to_fields(self) -> dict[str, object]:
        """Write the node as plain JSON-compatible data, as a host doc stores it.

        Returns:
            A new dict with exactly the keys of :data:`FIELDS`; enums as their strings and the
            meta as a dict.
        """
        return {
            "id": self.id,
            "parent": self.parent,
            "host": self.host,
            "type": self.type.value,
            "name": self.name,
            "state": self.state.value,
            "meta": self.meta.to_dict(),
            "updated": self.updated,
            "schema": self.schema,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, object]) -> Node:
        """Read a node from its fields, as a host doc or a JSON body holds them.

        The schema is read first: a node of another major is refused before anything else
        of it is looked at. Integral floats are accepted wherever a whole number is expected.

        Args:
            fields: the node's fields.

        Returns:
            The validated node.

        Raises:
            SchemaVersionError: the node was written with a schema major this release cannot
                read.
            ValidationError: ``fields`` is not a mapping, a field is missing, unknown or
                breaks its rule; the error names the field and, once known, the node.
        """
        # Step 1: the shape, and the id if there is a usable one, only to name the node in
        # errors.
        if not isinstance(fields, Mapping):
            raise ValidationError("", "node fields must be an object", type(fields).__name__)
        maybe_id = fields.get("id")
        node_id = maybe_id if isinstance(maybe_id, str) and _is_id(maybe_id) else ""

        # Step 2: the schema, before any other field is read.
        if "schema" not in fields:
            raise ValidationError("schema", "is required", node_id=node_id)
        version = readable_schema(fields["schema"], node_id=node_id)
        schema = cast("str", fields["schema"])

        # Step 3: every field present, and none this schema does not have.
        try:
            missing = _FIELD_SET - fields.keys()
            if missing:
                raise ValidationError(next(k for k in FIELDS if k in missing), "is required")
            unknown = fields.keys() - _FIELD_SET
            if unknown:
                _check_unknown_fields(fields, unknown, is_newer_minor(version))

            # Step 4: the type decides the meta class; then the node checks the rest.
            node_type = _enum_field("type", NodeType, _TYPES, fields["type"])
            meta = _read_meta(node_type, fields["meta"], schema)
            return cls(
                id=_as_str("id", fields["id"]),
                parent=_as_parent(fields["parent"]),
                host=_as_str("host", fields["host"]),
                type=node_type,
                name=_as_str("name", fields["name"]),
                state=_enum_field("state", NodeState, _STATES, fields["state"]),
                meta=meta,
                updated=_timestamp("updated", fields["updated"]),
                schema=schema,
            )
        except ValidationError as err:
            raise _at_node(err, node_id) from None

    def to_json(self) -> bytes:
        """Write the node as JSON.

        Returns:
            UTF-8 JSON of :meth:`to_fields`, with sorted keys so equal nodes give equal bytes.
        """
        return orjson.dumps(self.to_fields(), option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes | str) -> Node:
        """Read a node from JSON.

        Args:
            data: UTF-8 JSON bytes, or the same as a string.

        Returns:
            The validated node.

        Raises:
            ValidationError: ``data`` is larger than :data:`MAX_NODE_JSON_BYTES`, is not valid
                JSON, is not a JSON object, or describes an invalid node (see
                :meth:`from_fields`).
            SchemaVersionError: the node was written with a schema major this release cannot
                read.
        """
        if isinstance(data, str):
            # A string is at least as many bytes as characters: refuse huge ones unencoded.
            if len(data) > MAX_NODE_JSON_BYTES:
                raise _too_large(len(data))
            try:
                data = data.encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError("", "node JSON is not valid Unicode text") from None
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValidationError("", "node JSON must be bytes or str", type(data).__name__)
        if len(data) > MAX_NODE_JSON_BYTES:
            raise _too_large(len(data))

        try:
            fields = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise ValidationError("", f"node JSON is not valid JSON ({err})") from None
        if not isinstance(fields, dict):
            raise ValidationError("", "node JSON must be an object", type(fields).__name__)
        return cls.from_fields(fields)

    def evolve(self, **changes: object) -> Node:
        """Make a validated copy with some fields changed.

        Args:
            **changes: new values by field name. ``meta`` may be an instance of the type's
                meta class or a mapping, which replaces the whole meta and is read against
                the copy's schema.

        Returns:
            The new node; this one is left as it was.

        Raises:
            ValidationError: a name is not a node field, ``type`` would change, or the copy
                breaks a rule.
        """
        for key in changes:
            if key not in FIELDS:
                raise ValidationError(
                    key, f"is not a node field{suggest(key, FIELDS)}", node_id=self.id
                )
        if "type" in changes and changes["type"] != self.type:
            raise ValidationError(
                "type",
                "cannot change; make a new node of the other type instead",
                shown(changes["type"]),
                node_id=self.id,
            )
        meta = changes.get("meta")
        if meta is not None and not isinstance(meta, Meta):
            try:
                schema = changes.get("schema", self.schema)
                changes["meta"] = _read_meta(self.type, meta, schema)
            except ValidationError as err:
                raise _at_node(err, self.id) from None
        fields: dict[str, Any] = changes
        return dataclasses.replace(self, **fields)


def _check_unknown_fields(
    fields: Mapping[str, object], unknown: Collection[object], newer_minor: bool
) -> None:
    # The first unknown key in the mapping's own order, so the error does not vary by run.
    for key in fields:
        if key not in unknown:
            continue
        if not isinstance(key, str):
            raise ValidationError("", "field names must be strings", shown(key))
        # NOTE: top-level fields added by a newer minor are dropped, since a node has nowhere
        # to keep them. New minors therefore add fields in meta only; docs/model.md states
        # that rule.
        if not newer_minor:
            raise ValidationError(short(key), f"is not a node field{suggest(key, FIELDS)}")


def _read_meta(node_type: NodeType, meta: object, schema: object) -> Meta:
    # A meta instance passes through (the node checks its class); anything else is read as
    # stored meta.
    if isinstance(meta, Meta):
        return meta
    if not isinstance(meta, Mapping):
        raise ValidationError("meta", "must be an object", _kind(meta))
    if not isinstance(schema, str):
        raise ValidationError("schema", "must be a string like '1.0'", _kind(schema))
    return CATALOG[node_type].meta.from_dict(meta, schema=schema)


def _enum_field(field: str, enum: type[_E], members: Mapping[str, _E], value: object) -> _E:
    # ``members`` maps each stored string to its member, for a lookup without a scan.
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        found = members.get(value)
        if found is not None:
            return found
        hint = suggest(value, members)
        raise ValidationError(field, f"is not a known {field}{hint}", shown(value))
    raise ValidationError(field, "must be a string", _kind(value))


def _timestamp(field: str, value: object) -> float:
    if isinstance(value, bool):
        raise ValidationError(field, "must be a Unix time in seconds, not a boolean", value)
    if not isinstance(value, (int, float)):
        raise ValidationError(field, "must be a Unix time in seconds", _kind(value))
    try:
        seconds = float(value)
    except OverflowError:
        raise ValidationError(field, "must be a finite number", shown(value)) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValidationError(field, "must be a finite number >= 0", seconds)
    return seconds


def _as_str(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string", _kind(value))
    return value


def _as_parent(value: object) -> str | None:
    return None if value is None else _as_str("parent", value)


def _is_id(value: str) -> bool:
    try:
        check_id("id", value)
    except ValidationError:
        return False
    return True


def _check_no_self_edge(node_id: str, field: str, ids: tuple[str, ...]) -> None:
    # A node that invokes or reads itself is a one-node cycle; refusing it here is cheaper
    # than letting the chain planner find it.
    if node_id in ids:
        raise ValidationError(f"{field}[{ids.index(node_id)}]", "must not name the node itself")


def _kind(value: object) -> str:
    return type(value).__name__


def _too_large(size: int) -> ValidationError:
    return ValidationError("", f"node JSON must be at most {MAX_NODE_JSON_BYTES} bytes", size)
