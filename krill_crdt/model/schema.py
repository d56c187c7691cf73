"""The node schema version: what it is, how it is read, and what this release can read.

A node records the schema it was written with as ``"MAJOR.MINOR"``. The two numbers promise
different things:

* a new **minor** only adds meta fields. A reader on an older minor keeps the fields it does
  not know verbatim, so writing the node back does not erase them;
* a new **major** may change anything. A reader refuses a node of another major outright,
  before it reads any other field, rather than guess at its meaning.
"""

from __future__ import annotations

import functools
import re

from ..errors import SchemaVersionError, ValidationError
from ._rules import shown

__all__ = ["SCHEMA", "SCHEMA_VERSION", "is_newer_minor", "parse_schema", "readable_schema"]

#: The schema this release writes, as stored in every node. Minor 1 added the status and
#: result fields the runtime writes (server, client, project and peer status, a pin's level,
#: a threshold's armed flag) and the MqttBridge's direction, value path and retain flag.
SCHEMA: str = "1.1"

# NOTE: a node created under "1.0" keeps that schema string when a host later writes 1.1
# NOTE: fields into it (an edit keeps a node's schema), and a 1.0 reader refuses those keys.
# NOTE: This matters only in a swarm that mixes 1.0 and 1.1 releases.

#: :data:`SCHEMA` as numbers, for comparisons.
SCHEMA_VERSION: tuple[int, int] = (1, 1)

# Canonical decimal numbers only ("1.0", never "01.0" or "1.00"), so one version has one
# spelling and comparing the strings of two equal versions never disagrees. Four digits per part
# is far more than any schema will need and keeps the parse trivially bounded.
_SCHEMA_FORMAT = re.compile(r"(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})")


def parse_schema(schema: object) -> tuple[int, int]:
    """Read a schema string into numbers.

    Args:
        schema: the value of a node's ``schema`` field.

    Returns:
        ``(major, minor)``.

    Raises:
        ValidationError: ``schema`` is not a string of the form ``"MAJOR.MINOR"``.
    """
    if not isinstance(schema, str):
        raise ValidationError("schema", "must be a string like '1.0'", type(schema).__name__)
    return _parse(schema)


# Every node read parses its schema, and nearly all nodes carry the same one or two versions.
# The format allows at most 10^8 distinct valid strings, and the cache keeps the last few.
@functools.lru_cache(maxsize=16)
def _parse(schema: str) -> tuple[int, int]:
    found = _SCHEMA_FORMAT.fullmatch(schema)
    if found is None:
        raise ValidationError("schema", "must be 'MAJOR.MINOR' in plain decimal", shown(schema))
    return int(found.group(1)), int(found.group(2))


def readable_schema(schema: object, *, node_id: str = "") -> tuple[int, int]:
    """Read a schema string and make sure this release can read nodes written with it.

    Args:
        schema: the value of a node's ``schema`` field.
        node_id: the node it belongs to, named in the error.

    Returns:
        ``(major, minor)``; the major is always ours.

    Raises:
        ValidationError: ``schema`` is malformed.
        SchemaVersionError: ``schema`` has another major than :data:`SCHEMA_VERSION`.
    """
    try:
        version = parse_schema(schema)
    except ValidationError as err:
        raise ValidationError(err.field, err.rule, err.got, node_id=node_id) from None
    if version[0] != SCHEMA_VERSION[0]:
        raise SchemaVersionError(
            "schema",
            f"this release reads schema {SCHEMA_VERSION[0]}.x only",
            schema,
            node_id=node_id,
        )
    return version


def is_newer_minor(version: tuple[int, int]) -> bool:
    """Tell whether a readable schema version is a newer minor than ours.

    Args:
        version: a version returned by :func:`readable_schema`.

    Returns:
        True when nodes of that version may hold meta fields this release does not know.
    """
    return version[0] == SCHEMA_VERSION[0] and version[1] > SCHEMA_VERSION[1]
