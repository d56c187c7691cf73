"""Value rules shared by node fields and meta fields.

Every rule checks one value and hands it back in canonical form, so a value read back from a
host doc (where an integer comes back as ``1.0`` and a list as a list) compares equal to the
value that was written. Every refusal is a :class:`~krill_crdt.errors.ValidationError` that
names the field, says the rule and shows what it got.

Two habits hold throughout: a boolean is never taken for a number (``True == 1`` in Python,
but a switch state in a threshold field is a bug, not a value), and a type is checked before
anything hashes or compares the value, so arbitrary input can only ever raise
``ValidationError``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from ..errors import ValidationError

__all__ = [
    "MAX_CHAIN_IDS",
    "MAX_EXTRA_BYTES",
    "MAX_EXTRA_DEPTH",
    "MAX_HOST_ID_BYTES",
    "MAX_ID_CHARS",
    "Flag",
    "IdList",
    "IntIn",
    "Maybe",
    "OneOf",
    "Real",
    "Rule",
    "Text",
    "check_host_id",
    "check_id",
    "check_id_or_empty",
    "check_int",
    "check_real",
    "check_text",
    "freeze_json",
    "short",
    "shown",
    "suggest",
    "thaw_json",
]

#: A rule takes the field's dotted path and a value, and returns the value in canonical form.
Rule = Callable[[str, object], object]

#: Longest node id or host id. A uuid4 in hex is 32; 128 leaves room for readable ids such as
#: ``"greenhouse-pi.pin-17"`` without letting one id dominate a beacon or a topic.
MAX_ID_CHARS = 128

#: Most node ids in one ``targets`` or ``sources`` list. Wider fan-out than this is a
#: configuration mistake, and the bound keeps one node's meta, and one chain wave, small.
MAX_CHAIN_IDS = 256

#: Deepest nesting kept in meta fields from a newer schema minor. Real meta is one or two levels
#: deep; the bound keeps every walk over such a value far from Python's recursion limit.
MAX_EXTRA_DEPTH = 32

#: Largest encoded size of the meta fields kept from a newer schema minor. It bounds how much an
#: unknown writer can make this release carry along while still preserving ordinary additions.
MAX_EXTRA_BYTES = 64 * 1024

# orjson encodes integers in the signed and unsigned 64-bit ranges only.
_JSON_INT_MIN = -(2**63)
_JSON_INT_MAX = 2**64 - 1

# Ids appear in URL paths (/node/{id}) and host ids in MQTT topic levels, so besides whitespace
# and control characters they may not hold "/" (a separator in both) or "+" and "#" (MQTT
# wildcards). Lone surrogates are refused everywhere: they cannot be encoded as UTF-8 JSON.
_ID_FORMAT = re.compile(rf"[^\s\x00-\x1f\x7f-\x9f\ud800-\udfff/+#]{{1,{MAX_ID_CHARS}}}")
_ID_RULE = f"must be 1..{MAX_ID_CHARS} characters, none of them whitespace, control, /, + or #"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Multi-line text (descriptions) may hold line feeds and tabs, nothing else below U+0020.
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

# How much of an offending string an error message repeats: enough to recognise it, not enough
# to turn a log line into a copy of a hostile payload.
_SHOWN_CHARS = 64


def shown(value: object) -> object:
    """Shorten a value for an error message.

    Args:
        value: the offending value.

    Returns:
        Short strings and scalars unchanged, long strings cut with ``"..."``, and containers or
        other objects as their type name.
    """
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str):
        return short(value)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        # Python refuses to print integers of more than 4300 digits; none of them is useful.
        return f"an integer of {value.bit_length()} bits"
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return type(value).__name__


def short(text: str) -> str:
    """Cut a string for an error message or a field path.

    Returns:
        ``text`` when it is short, else its start followed by ``"..."``.
    """
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def suggest(word: str, known: Iterable[str]) -> str:
    """Offer the closest known word for a misspelt one.

    Args:
        word: what was given.
        known: what would have been accepted.

    Returns:
        ``" (did you mean 'x'?)"`` when something is close enough, else ``""``.
    """
    if len(word) > _SHOWN_CHARS:
        return ""  # no known name is that long, and difflib's work grows with the length
    # Compared without case, so "NONE" still finds "none".
    by_folded = {item.casefold(): item for item in known}
    close = difflib.get_close_matches(word.casefold(), list(by_folded), n=1)
    return f" (did you mean {by_folded[close[0]]!r}?)" if close else ""


def check_id(field: str, value: object) -> str:
    """Check a node id or host id.

    Returns:
        The id.

    Raises:
        ValidationError: not a string, empty, longer than :data:`MAX_ID_CHARS`, or holding
            whitespace, a control character, ``/``, ``+`` or ``#``.
    """
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string", type(value).__name__)
    if _ID_FORMAT.fullmatch(value) is None:
        raise ValidationError(field, _ID_RULE, shown(value))
    return value


#: A host id names its host doc, and the wire format carries doc ids of at most 64 UTF-8
#: bytes; a longer host id could be stored but never synced, so it is refused up front.
MAX_HOST_ID_BYTES = 64


def check_host_id(field: str, value: object) -> str:
    """Check a host id: an id (see :func:`check_id`) of at most 64 UTF-8 bytes.

    Returns:
        The host id.

    Raises:
        ValidationError: not a valid id, or longer than :data:`MAX_HOST_ID_BYTES` in UTF-8.
    """
    host = check_id(field, value)
    size = len(host.encode("utf-8"))
    if size > MAX_HOST_ID_BYTES:
        raise ValidationError(field, f"must be at most {MAX_HOST_ID_BYTES} UTF-8 bytes", size)
    return host


def check_id_or_empty(field: str, value: object) -> str:
    """Check an optional reference to an id, where ``""`` means "none".

    Returns:
        The id or ``""``.

    Raises:
        ValidationError: neither ``""`` nor a valid id (see :func:`check_id`).
    """
    return "" if value == "" else check_id(field, value)


def check_int(field: str, value: object, lo: int, hi: int) -> int:
    """Check a whole number in ``lo..hi``; an integral float (``4.0``) counts as whole.

    Returns:
        The number as an ``int``.

    Raises:
        ValidationError: a boolean, not a number, fractional, not finite, or out of range.
    """
    if isinstance(value, bool):
        raise ValidationError(field, "must be a whole number, not a boolean", value)
    if not isinstance(value, (int, float)):
        raise ValidationError(field, "must be a whole number", type(value).__name__)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValidationError(field, "must be a whole number", value)
        value = int(value)
    if not lo <= value <= hi:
        raise ValidationError(field, f"must be {lo}..{hi}", shown(value))
    return value


def check_real(
    field: str, value: object, lo: float | None = None, hi: float | None = None
) -> float:
    """Check a finite number, optionally bounded on either side (bounds included).

    Returns:
        The number as a ``float``.

    Raises:
        ValidationError: a boolean, not a number, not finite, or out of range.
    """
    if isinstance(value, bool):
        raise ValidationError(field, "must be a number, not a boolean", value)
    if not isinstance(value, (int, float)):
        raise ValidationError(field, "must be a number", type(value).__name__)
    try:
        number = float(value)
    except OverflowError:
        raise ValidationError(field, "must be a finite number", shown(value)) from None
    if not math.isfinite(number):
        raise ValidationError(field, "must be a finite number", number)
    if lo is not None and number < lo:
        raise ValidationError(field, f"must be >= {lo:g}", number)
    if hi is not None and number > hi:
        raise ValidationError(field, f"must be <= {hi:g}", number)
    return number


def check_text(field: str, value: object, max_chars: int, *, multiline: bool = False) -> str:
    """Check free text of bounded length.

    Args:
        field: dotted path of the field.
        value: the value to check.
        max_chars: most characters allowed.
        multiline: also allow line feeds and tabs.

    Returns:
        The text.

    Raises:
        ValidationError: not a string, too long, or holding a control character.
    """
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string", type(value).__name__)
    if len(value) > max_chars:
        raise ValidationError(field, f"must be at most {max_chars} characters", len(value))
    control = (_CONTROL_BUT_LINES if multiline else _CONTROL).search(value)
    if control is not None:
        raise ValidationError(field, "must not hold control characters", control.group())
    return value


@dataclass(frozen=True, slots=True)
class IntIn:
    """A whole number in ``lo..hi`` (see :func:`check_int`)."""

    lo: int
    hi: int

    def __call__(self, field: str, value: object) -> int:
        return check_int(field, value, self.lo, self.hi)


@dataclass(frozen=True, slots=True)
class Real:
    """A finite number, bounded where a bound is given (see :func:`check_real`)."""

    lo: float | None = None
    hi: float | None = None

    def __call__(self, field: str, value: object) -> float:
        return check_real(field, value, self.lo, self.hi)


@dataclass(frozen=True, slots=True)
class Flag:
    """A boolean; ``0`` and ``1`` are refused, since no writer of ours stores flags as numbers."""

    def __call__(self, field: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(field, "must be true or false", shown(value))
        return value


@dataclass(frozen=True, slots=True)
class Text:
    """Free text of at most ``max_chars`` characters (see :func:`check_text`)."""

    max_chars: int
    multiline: bool = False

    def __call__(self, field: str, value: object) -> str:
        return check_text(field, value, self.max_chars, multiline=self.multiline)


@dataclass(frozen=True, slots=True)
class OneOf:
    """One of a fixed set of strings or numbers; the canonical spelling is the one listed."""

    choices: tuple[str | float, ...]

    def __call__(self, field: str, value: object) -> str | float:
        # Types are matched before values are compared: "1" is not 1, and True is not 1.
        for choice in self.choices:
            if isinstance(choice, str):
                if isinstance(value, str) and value == choice:
                    return choice
            elif _is_number(value) and value == choice:
                return choice
        listed = ", ".join(repr(choice) for choice in self.choices)
        hint = suggest(value, [str(c) for c in self.choices]) if isinstance(value, str) else ""
        raise ValidationError(field, f"must be one of {listed}{hint}", shown(value))


@dataclass(frozen=True, slots=True)
class IdList:
    """Node ids: at most :data:`MAX_CHAIN_IDS` of them, each valid, none repeated."""

    def __call__(self, field: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)):
            raise ValidationError(field, "must be a list of node ids", type(value).__name__)
        if len(value) > MAX_CHAIN_IDS:
            raise ValidationError(field, f"must hold at most {MAX_CHAIN_IDS} ids", len(value))
        seen: set[str] = set()
        for index, item in enumerate(value):
            node_id = check_id(f"{field}[{index}]", item)
            if node_id in seen:
                raise ValidationError(f"{field}[{index}]", "must not repeat an id", node_id)
            seen.add(node_id)
        return tuple(value)


@dataclass(frozen=True, slots=True)
class Maybe:
    """``None``, or a value that passes ``rule``."""

    rule: Rule

    def __call__(self, field: str, value: object) -> object:
        return None if value is None else self.rule(field, value)


def freeze_json(field: str, value: object, depth: int = 0) -> object:
    """Check that a value is plain JSON and make a read-only copy of it.

    Args:
        field: dotted path of the value, for errors.
        value: the value.
        depth: how deep ``value`` already sits; callers leave the default.

    Returns:
        The value with lists turned into tuples and objects into read-only mappings.

    Raises:
        ValidationError: the value holds something JSON cannot carry (a non-string key, a
            number that is not finite or beyond 64 bits, a lone surrogate, another type), or
            nests deeper than :data:`MAX_EXTRA_DEPTH`.
    """
    if depth > MAX_EXTRA_DEPTH:
        raise ValidationError(field, f"must nest at most {MAX_EXTRA_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _JSON_INT_MIN <= value <= _JSON_INT_MAX:
            raise ValidationError(field, "must fit in 64 bits", shown(value))
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field, "must be a finite number", value)
        return value
    if isinstance(value, str):
        if _has_surrogate(value):
            raise ValidationError(field, "must be valid Unicode text", shown(value))
        return value
    if isinstance(value, (list, tuple)):
        return tuple(
            freeze_json(f"{field}[{index}]", item, depth + 1) for index, item in enumerate(value)
        )
    if isinstance(value, Mapping):
        frozen: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str) or _has_surrogate(key):
                raise ValidationError(field, "object keys must be strings", shown(key))
            frozen[key] = freeze_json(f"{field}.{short(key)}", item, depth + 1)
        return MappingProxyType(frozen)
    raise ValidationError(field, "must be a JSON value", type(value).__name__)


def thaw_json(value: object) -> object:
    """Turn a value made by :func:`freeze_json` back into fresh, mutable JSON data.

    Returns:
        The value with tuples as lists and read-only mappings as dicts.
    """
    if isinstance(value, tuple):
        return [thaw_json(item) for item in value]
    if isinstance(value, Mapping):
        return {key: thaw_json(item) for key, item in value.items()}
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
