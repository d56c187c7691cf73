"""The daemon's TOML config: read a file, apply ``KRILL_SECTION_KEY`` overrides, validate.

    config = load_config(Path("/etc/krill/krill.toml"))       # file, then the environment
    config = load_config(None)                                 # embedded defaults + env

The schema is not written down here: the sections are the fields of
:class:`~krill_crdt.runtime.config.PeerConfig` and the keys are the fields of each section's
dataclass, so a key added there is at once readable from TOML and from the environment.

How a value is read depends on the key's annotated type:

=====================  ============================  =======================================
type                   in TOML                       in the environment
=====================  ============================  =======================================
``str``                a string                      the text as it is
``int``                an integer                    decimal digits
``bool``               ``true`` / ``false``          ``true|false|1|0|yes|no|on|off``
``Path``               a string; relative paths are  a string; relative to the working
                       relative to the file's folder directory
``tuple[str, ...]``    an array of strings           comma-separated, blanks dropped
``X | None``           ``""`` leaves it unset        ``""`` leaves it unset
=====================  ============================  =======================================

The environment wins over the file. Every error is a :class:`ConfigError` that names where the
value came from (the file or the variable), the key, and the rule it broke.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KrillError, ValidationError
from ..runtime.config import PeerConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "Key",
    "env_name",
    "load_config",
    "schema",
]

#: Every environment variable that sets a config key starts with this.
ENV_PREFIX = "KRILL_"

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class ConfigError(KrillError, ValueError):
    """The config cannot be used: unreadable, not TOML, an unknown name or a bad value.

    Attributes:
        source: where the offending value came from: the file's path or the variable's name.
        section: the section concerned, or ``""``.
        key: the key concerned, or ``""``.
    """

    def __init__(self, source: str, message: str, *, section: str = "", key: str = "") -> None:
        self.source = source
        self.section = section
        self.key = key
        super().__init__(f"{source}: {message}")


@dataclass(frozen=True, slots=True)
class Key:
    """One key of the schema.

    Attributes:
        section: the TOML table (``"http"``).
        name: the key inside it (``"listen"``).
        kind: how values are read: ``str``, ``int``, ``bool``, ``path`` or ``list``.
        optional: ``None`` (``""`` in TOML) is allowed and means "not set".
        default: the dataclass default, or ``None`` when it is computed at run time.
    """

    section: str
    name: str
    kind: str
    optional: bool
    default: object

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"


def _kind_of(annotation: Any) -> tuple[str, bool]:
    """Map a field's annotation to (kind, optional)."""
    optional = False
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        (annotation,) = rest
    if annotation is bool:
        return "bool", optional
    if annotation is int:
        return "int", optional
    if annotation is str:
        return "str", optional
    if annotation is Path:
        return "path", optional
    if typing.get_origin(annotation) is tuple:
        return "list", optional
    raise TypeError(f"no config reader for annotation {annotation!r}")


def schema() -> dict[str, dict[str, Key]]:
    """Return every section and key, read from the config dataclasses, in their order."""
    sections: dict[str, dict[str, Key]] = {}
    for section in dataclasses.fields(PeerConfig):
        cls = typing.get_type_hints(PeerConfig)[section.name]
        hints = typing.get_type_hints(cls)
        keys: dict[str, Key] = {}
        for f in dataclasses.fields(cls):
            kind, optional = _kind_of(hints[f.name])
            default = None if f.default is dataclasses.MISSING else f.default
            keys[f.name] = Key(section.name, f.name, kind, optional, default)
        sections[section.name] = keys
    return sections


def env_name(key: Key) -> str:
    """The environment variable that sets ``key``: ``KRILL_HTTP_LISTEN``."""
    return f"{ENV_PREFIX}{key.section}_{key.name}".upper()


def _did_you_mean(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ------------------------------------------------------------------------------ reading values


def _from_toml(key: Key, value: object, base: Path) -> object:
    """Turn a TOML value into the field's value; raise ValueError with the rule."""
    if key.optional and value == "":
        return None
    if key.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if key.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        return value
    if key.kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be an array of strings")
        return tuple(value)
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if key.kind == "path":
        path = _expand(value)
        return path if path.is_absolute() else base / path
    return value


def _expand(text: str) -> Path:
    """``~`` and ``~user`` expanded; ValueError for a user this machine does not have."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise ValueError("starts with ~ of a user this machine does not know") from None


def _from_env(key: Key, text: str) -> object:
    """Turn an environment variable's text into the field's value; raise ValueError."""
    if key.optional and text == "":
        return None
    if key.kind == "bool":
        folded = text.strip().lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        raise ValueError("must be true, false, 1, 0, yes, no, on or off")
    if key.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("must be an integer") from None
    if key.kind == "list":
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if key.kind == "path":
        return _expand(text)
    return text


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}..."


# ------------------------------------------------------------------------------ the loader


def _read_file(path: Path) -> dict[str, Any]:
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise ConfigError(str(path), "reading TOML needs Python >= 3.11 or the tomli package")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(str(path), "no such file") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "not valid TOML: not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(str(path), "not valid TOML: nested too deeply") from None
    except ValueError as exc:
        # An integer too long to convert (Python caps them at 4300 digits).
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None


def _file_values(path: Path, known: dict[str, dict[str, Key]]) -> dict[str, dict[str, object]]:
    """Read and check a config file: every section and key known, every value well typed."""
    data = _read_file(path)
    source = str(path)
    base = path.parent.resolve()
    values: dict[str, dict[str, object]] = {}
    for section, table in data.items():
        if section not in known:
            raise ConfigError(
                source,
                f"[{section}]: unknown section{_did_you_mean(section, list(known))}",
                section=section,
            )
        if not isinstance(table, dict):
            raise ConfigError(source, f"[{section}] must be a table", section=section)
        keys = known[section]
        for name, value in table.items():
            if name not in keys:
                raise ConfigError(
                    source,
                    f"[{section}] {name}: unknown key{_did_you_mean(name, list(keys))}",
                    section=section,
                    key=name,
                )
            try:
                values.setdefault(section, {})[name] = _from_toml(keys[name], value, base)
            except ValueError as exc:
                raise ConfigError(
                    source,
                    f"[{section}] {name}: {exc}, got {_shown(value)}",
                    section=section,
                    key=name,
                ) from None
    return values


def _env_values(
    environ: Mapping[str, str],
    known: dict[str, dict[str, Key]],
    values: dict[str, dict[str, object]],
    sources: dict[str, str],
) -> None:
    """Apply ``KRILL_SECTION_KEY`` variables over ``values``; note each key's source."""
    by_section = {f"{ENV_PREFIX}{section.upper()}_": section for section in known}
    for var in sorted(environ):
        prefix = next((p for p in by_section if var.startswith(p)), None)
        if prefix is None:
            # Other KRILL_ variables (KRILL_NO_EXTENSIONS, ...) are not config keys.
            continue
        section = by_section[prefix]
        keys = known[section]
        name = var[len(prefix) :].lower()
        if name not in keys:
            names = [env_name(k) for k in keys.values()]
            raise ConfigError(
                var,
                f"unknown config variable{_did_you_mean(var, names)}",
                section=section,
                key=name,
            )
        try:
            values.setdefault(section, {})[name] = _from_env(keys[name], environ[var])
        except ValueError as exc:
            raise ConfigError(
                var,
                f"{section}.{name}: {exc}, got {_shown(environ[var])}",
                section=section,
                key=name,
            ) from None
        sources[f"{section}.{name}"] = var


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> PeerConfig:
    """Build the peer's config from a TOML file (or the defaults) and the environment.

    Args:
        path: the TOML file; ``None`` for the embedded defaults.
        environ: the environment to read ``KRILL_SECTION_KEY`` overrides from
            (``os.environ`` by default).

    Returns:
        The validated config.

    Raises:
        ConfigError: the file cannot be read or parsed, a section, key or variable is
            unknown (with the closest known name), or a value breaks its key's rule (the
            message names the key, the rule and where the value came from).
    """
    known = schema()
    values = _file_values(path, known) if path is not None else {}
    file_source = str(path) if path is not None else "defaults"
    sources: dict[str, str] = {}
    _env_values(os.environ if environ is None else environ, known, values, sources)

    # Each section validates itself; a rule broken names its key, to which we add its source.
    sections: dict[str, object] = {}
    for section, cls in typing.get_type_hints(PeerConfig).items():
        try:
            sections[section] = cls(**values.get(section, {}))
        except ValidationError as exc:
            source = sources.get(exc.field, file_source)
            key = exc.field.partition(".")[2]
            raise ConfigError(source, str(exc), section=section, key=key) from None
    return PeerConfig(**sections)  # type: ignore[arg-type]
