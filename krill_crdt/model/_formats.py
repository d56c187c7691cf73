"""Rules for the structured strings in meta: addresses, URLs, paths, cron lines, topics.

These check *shape* only. Whether a host answers, a serial port exists or a cron line names
real days is for the runtime to find out on the host that runs the node; the model only makes
sure every peer agrees on what is stored and that nothing stored can break a reader.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from ..errors import ValidationError
from ._rules import check_text, shown

__all__ = [
    "MAX_ADDRESS_CHARS",
    "MAX_CRON_CHARS",
    "MAX_EXPRESSION_CHARS",
    "MAX_JSON_PATH_CHARS",
    "MAX_PATTERN_CHARS",
    "MAX_PORT_CHARS",
    "MAX_TOPIC_CHARS",
    "MAX_URL_CHARS",
    "MAX_WEB_PATH_CHARS",
    "SERIAL_URL_SCHEMES",
    "cron_shape",
    "expression",
    "host_address",
    "http_url",
    "json_path",
    "optional_http_url",
    "regex_pattern",
    "serial_port",
    "timezone_name",
    "token_hash",
    "topic_filter",
    "web_path",
]

#: Longest host name: the DNS limit (RFC 1035) for a name written without the final dot.
MAX_ADDRESS_CHARS = 253

#: Longest URL. Browsers and proxies commonly stop somewhere above 2000 characters, so a longer
#: webhook URL would fail somewhere else anyway.
MAX_URL_CHARS = 2048

#: Longest incoming webhook path; it is matched against request lines, which aiohttp bounds at
#: 8190 bytes, and a real route is a few dozen characters.
MAX_WEB_PATH_CHARS = 256

#: Longest cron line. Six fields of ranges and lists fit easily; the bound keeps the runtime's
#: parser off hostile input.
MAX_CRON_CHARS = 256

#: Longest calculation expression. Formulas over a handful of inputs fit in a line; the bound
#: keeps the runtime's expression parser, and every delta that carries the node, small.
MAX_EXPRESSION_CHARS = 1024

#: Longest serial port: a /dev/serial/by-id/... path or a socket:// URL with a host name.
MAX_PORT_CHARS = 512

#: Longest MQTT topic filter kept here. MQTT allows 65535 bytes; our own topics
#: (krill/v1/{swarm}/{doc}/update) stay well under 300 characters.
MAX_TOPIC_CHARS = 512

#: Longest path into a JSON message (``"sensors.0.temp"``). Real payloads nest a few levels;
#: the bound keeps a path from costing more to walk than the message it points into.
MAX_JSON_PATH_CHARS = 256

#: Longest line-parsing regular expression. One capture group around a number needs a few dozen.
MAX_PATTERN_CHARS = 256

#: URL schemes pyserial's ``serial_for_url`` understands, besides plain device paths.
SERIAL_URL_SCHEMES = ("loop", "socket", "rfc2217", "spy", "alt", "hwgrep", "cp2110")

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,?#-]{1,64}")
_TIMEZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}")
_WEB_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]+)+")
_TOKEN_HASH = re.compile(r"[0-9a-f]{64}")
_DEVICE_PATH = re.compile(r"/[^\s\x00-\x1f\x7f-\x9f]+")
_SERIAL_URL = re.compile(r"([a-z][a-z0-9+.-]*)://[^\s\x00-\x1f\x7f-\x9f]*")


def host_address(field: str, value: object) -> str:
    """Check a host name or IP address; ``""`` stands for "not known yet".

    Returns:
        The address.

    Raises:
        ValidationError: neither empty, an IPv4/IPv6 address nor an RFC 1123 host name.
    """
    text = check_text(field, value, MAX_ADDRESS_CHARS + 1)
    if not text or _is_ip(text):
        return text
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if len(text.rstrip(".")) > MAX_ADDRESS_CHARS or not all(
        _HOST_LABEL.fullmatch(label) for label in labels
    ):
        raise ValidationError(field, "must be a host name or an IP address", shown(text))
    return text


def http_url(field: str, value: object) -> str:
    """Check an absolute ``http`` or ``https`` URL with a host.

    Returns:
        The URL.

    Raises:
        ValidationError: too long, holding whitespace or control characters, another scheme,
            no host, or a malformed port or IPv6 literal.
    """
    text = check_text(field, value, MAX_URL_CHARS)
    if any(char.isspace() for char in text):
        raise ValidationError(field, "must not hold whitespace", shown(text))
    try:
        parts = urlsplit(text)
        host, _port = parts.hostname, parts.port
    except ValueError:
        raise ValidationError(field, "must be a well-formed URL", shown(text)) from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError(field, "must be an http:// or https:// URL", shown(text))
    if not host:
        raise ValidationError(field, "must name a host", shown(text))
    return text


def optional_http_url(field: str, value: object) -> str:
    """Check an ``http`` or ``https`` URL, or ``""`` for "not known yet" (see :func:`http_url`).

    Returns:
        The URL or ``""``.

    Raises:
        ValidationError: not empty and not a valid URL.
    """
    return "" if value == "" else http_url(field, value)


def web_path(field: str, value: object) -> str:
    """Check the path an incoming webhook answers on, such as ``/hooks/door-bell``.

    Returns:
        The path.

    Raises:
        ValidationError: not made of ``/``-led segments of unreserved URL characters, or
            holding a ``.`` or ``..`` segment (which clients and proxies rewrite).
    """
    text = check_text(field, value, MAX_WEB_PATH_CHARS)
    if _WEB_PATH.fullmatch(text) is None or any(
        segment in (".", "..") for segment in text.split("/")
    ):
        raise ValidationError(
            field, "must be a path like '/hooks/name' of letters, digits and ._~-", shown(text)
        )
    return text


def token_hash(field: str, value: object) -> str:
    """Check a token hash: 64 lowercase hex digits (SHA-256), or ``""`` for "no token yet".

    Returns:
        The hash.

    Raises:
        ValidationError: anything else. The token itself is never stored, only its hash.
    """
    text = check_text(field, value, 64)
    if text and _TOKEN_HASH.fullmatch(text) is None:
        raise ValidationError(field, "must be 64 lowercase hex digits (SHA-256) or empty")
    return text


def cron_shape(field: str, value: object) -> str:
    """Check that a cron line has the shape of one: 5 or 6 fields of cron characters.

    Returns:
        The line.

    Raises:
        ValidationError: too long, or not 5 or 6 whitespace-separated fields of digits,
            letters and ``* / , - ? #``. The values themselves are left to the runtime's parser.
    """
    text = check_text(field, value, MAX_CRON_CHARS)
    parts = text.split()
    if len(parts) not in (5, 6) or not all(_CRON_FIELD.fullmatch(part) for part in parts):
        raise ValidationError(field, "must be a cron line of 5 or 6 fields", shown(text))
    return text


def expression(field: str, value: object) -> str:
    """Check a one-line formula: not blank, at most :data:`MAX_EXPRESSION_CHARS` characters.

    The grammar is the runtime's business; the model only bounds what it will be handed.

    Returns:
        The formula.

    Raises:
        ValidationError: not a string, blank, too long, or holding control characters.
    """
    text = check_text(field, value, MAX_EXPRESSION_CHARS)
    if not text.strip():
        raise ValidationError(field, "must not be blank", shown(text))
    return text


def timezone_name(field: str, value: object) -> str:
    """Check that a time zone has the shape of an IANA name (``UTC``, ``Europe/Berlin``).

    The name is not looked up: minimal images often lack the time zone database, and the
    runtime that fires the timer is the one that has to resolve it.

    Returns:
        The name.

    Raises:
        ValidationError: not shaped like an IANA time zone name.
    """
    text = check_text(field, value, 64)
    if _TIMEZONE.fullmatch(text) is None:
        raise ValidationError(field, "must be an IANA time zone name like 'UTC'", shown(text))
    return text


def serial_port(field: str, value: object) -> str:
    """Check a serial port: a device path (``/dev/ttyUSB0``) or a pyserial URL (``loop://``).

    Returns:
        The port.

    Raises:
        ValidationError: neither an absolute path nor a URL with a scheme in
            :data:`SERIAL_URL_SCHEMES`.
    """
    text = check_text(field, value, MAX_PORT_CHARS)
    if _DEVICE_PATH.fullmatch(text):
        return text
    url = _SERIAL_URL.fullmatch(text)
    if url is None or url.group(1) not in SERIAL_URL_SCHEMES:
        schemes = ", ".join(f"{scheme}://" for scheme in SERIAL_URL_SCHEMES)
        raise ValidationError(
            field, f"must be a device path like /dev/ttyUSB0 or a URL ({schemes})", shown(text)
        )
    return text


def topic_filter(field: str, value: object) -> str:
    """Check an MQTT topic filter (MQTT 5.0, 4.7): ``+`` and ``#`` only as whole levels.

    Returns:
        The filter.

    Raises:
        ValidationError: empty, too long, with control characters, or with a wildcard that
            is not a whole level (``#`` only as the last level).
    """
    text = check_text(field, value, MAX_TOPIC_CHARS)
    if not text:
        raise ValidationError(field, "must not be empty")
    levels = text.split("/")
    for index, level in enumerate(levels):
        if ("+" in level or "#" in level) and len(level) != 1:
            raise ValidationError(field, "wildcards '+' and '#' must be whole levels", shown(text))
        if level == "#" and index != len(levels) - 1:
            raise ValidationError(field, "'#' may only be the last level", shown(text))
    return text


def json_path(field: str, value: object) -> str:
    """Check a path into a JSON message: keys (or list indexes) joined by ``.``; ``""`` means
    the message itself.

    Returns:
        The path.

    Raises:
        ValidationError: too long, with control characters or spaces, or with an empty key
            (``"a..b"``, a leading or trailing dot).
    """
    text = check_text(field, value, MAX_JSON_PATH_CHARS)
    if not text:
        return text
    if any(c.isspace() for c in text):
        raise ValidationError(field, "must not hold spaces", shown(text))
    if any(not key for key in text.split(".")):
        raise ValidationError(field, "must be keys joined by '.', none of them empty", shown(text))
    return text


def regex_pattern(field: str, value: object) -> str:
    """Check a regular expression that picks a value out of a line; ``""`` means none.

    Returns:
        The pattern.

    Raises:
        ValidationError: too long, does not compile, or has no capture group.
    """
    text = check_text(field, value, MAX_PATTERN_CHARS)
    if not text:
        return text
    try:
        groups = re.compile(text).groups
    except (re.error, OverflowError, RecursionError, ValueError) as err:
        raise ValidationError(field, f"must be a valid regular expression ({err})") from None
    if groups < 1:
        raise ValidationError(field, "must have a capture group around the value", shown(text))
    return text


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
