"""How a meta value checks, reads and writes itself; the meta of each node type is in ``meta``.

A meta class is a frozen, slotted dataclass whose fields carry their rule in the annotation::

    pin: Annotated[int, IntIn(0, 53)] = 0

On construction every field is run through its rule and stored in canonical form, so a meta
value that exists is a valid one, however it was made (directly, from a dict read out of a
host doc, or from JSON).

Meta fields a newer schema minor added are not known here. :meth:`Meta.from_dict` keeps them in
:attr:`Meta.extra` and :meth:`Meta.to_dict` writes them back untouched, so a peer on an older
release does not erase what a newer one wrote. For our own minor or an older one an unknown key
is a mistake and is refused.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import orjson

from ..errors import ValidationError
from ._rules import MAX_EXTRA_BYTES, Rule, freeze_json, short, suggest, thaw_json
from .schema import SCHEMA, is_newer_minor, readable_schema

if TYPE_CHECKING:
    from typing import Self

__all__ = ["Meta", "unknown_meta_key"]


def _no_extra() -> Mapping[str, object]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """Base of the typed meta of every node type.

    Attributes:
        extra: meta fields written by a newer schema minor and unknown to this release, kept
            verbatim (read-only). Empty for any node of our minor or an older one.
    """

    # Left out of the hash: it may hold JSON objects, and equal values still hash equal.
    extra: Mapping[str, object] = field(default_factory=_no_extra, hash=False)

    def __post_init__(self) -> None:
        """Check every field against its rule and store it in canonical form.

        Raises:
            ValidationError: a field breaks its rule (the error names it as ``meta.<field>``),
                an ``extra`` key is not JSON or shadows a known field, or fields disagree.
        """
        rules = _rules_of(type(self))
        for name, rule in rules.items():
            object.__setattr__(self, name, rule(f"meta.{name}", getattr(self, name)))
        object.__setattr__(self, "extra", _checked_extra(self.extra, rules))
        self._check_together()

    def _check_together(self) -> None:
        """Check rules that tie several fields together; each type overrides as needed.

        Raises:
            ValidationError: the fields disagree.
        """

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, schema: str = SCHEMA) -> Self:
        """Read meta from plain data, as found in a host doc or in JSON.

        A key that is missing takes the field's default; a field without a default is
        required.

        Args:
            data: the meta mapping.
            schema: the schema of the node the meta belongs to. It decides what happens to
                unknown keys: kept in :attr:`extra` for a newer minor, refused otherwise.

        Returns:
            The validated meta.

        Raises:
            SchemaVersionError: ``schema`` has a major this release cannot read.
            ValidationError: ``schema`` is malformed, ``data`` is not a mapping, a key is
                unknown (with the closest known key as a hint), a required key is missing, or
                a value breaks its rule.
        """
        keep_unknown = is_newer_minor(readable_schema(schema))
        if not isinstance(data, Mapping):
            raise ValidationError("meta", "must be an object", type(data).__name__)

        rules = _rules_of(cls)
        known: dict[str, Any] = {}
        extra: dict[str, object] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise ValidationError("meta", "keys must be strings", type(key).__name__)
            if key in rules:
                known[key] = value
            elif keep_unknown:
                extra[key] = value
            else:
                raise unknown_meta_key(cls, key)

        for name in _required_of(cls):
            if name not in known:
                raise ValidationError(f"meta.{name}", "is required")
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, object]:
        """Write the meta as plain JSON-compatible data.

        Returns:
            A new dict: every field (tuples as lists), then the :attr:`extra` keys verbatim.
        """
        data: dict[str, object] = {}
        for name in _rules_of(type(self)):
            value = getattr(self, name)
            data[name] = list(value) if isinstance(value, tuple) else value
        for key, value in self.extra.items():
            data[key] = thaw_json(value)
        return data


def unknown_meta_key(cls: type[Meta], key: str) -> ValidationError:
    """Build the error for a meta key the node's schema does not allow.

    Args:
        cls: the meta class.
        key: the unknown key.

    Returns:
        A :class:`ValidationError` naming the key and the closest known one, if any.
    """
    known = _rules_of(cls)
    hint = suggest(key, known)
    return ValidationError(f"meta.{short(key)}", f"is not a field of {cls.__name__}{hint}")


# Rules are read from the annotations once per class. A race between two threads only computes
# the same table twice.
_RULES: dict[type[Meta], dict[str, Rule]] = {}
_REQUIRED: dict[type[Meta], tuple[str, ...]] = {}


def _rules_of(cls: type[Meta]) -> dict[str, Rule]:
    rules = _RULES.get(cls)
    if rules is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        rules = {}
        for item in dataclasses.fields(cls):
            if item.name == "extra":
                continue
            found = [arg for arg in getattr(hints[item.name], "__metadata__", ()) if callable(arg)]
            if len(found) != 1:
                raise TypeError(f"{cls.__name__}.{item.name} needs exactly one rule")
            rules[item.name] = found[0]
        _RULES[cls] = rules
    return rules


def _required_of(cls: type[Meta]) -> tuple[str, ...]:
    required = _REQUIRED.get(cls)
    if required is None:
        required = tuple(
            item.name
            for item in dataclasses.fields(cls)
            if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
        )
        _REQUIRED[cls] = required
    return required


def _checked_extra(extra: object, rules: Mapping[str, Rule]) -> Mapping[str, object]:
    if not isinstance(extra, Mapping):
        raise ValidationError("meta", "unknown fields must be a mapping", type(extra).__name__)
    if not extra:
        return _no_extra()

    frozen = cast("Mapping[str, object]", freeze_json("meta", extra))
    for key in frozen:
        if key in rules:
            raise ValidationError(f"meta.{key}", "is a known field and cannot also be unknown")
    size = len(orjson.dumps(thaw_json(frozen)))
    if size > MAX_EXTRA_BYTES:
        raise ValidationError(
            "meta", f"unknown fields must encode to at most {MAX_EXTRA_BYTES} bytes", size
        )
    return frozen
