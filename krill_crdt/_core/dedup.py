"""Duplicate and replay filters for incoming frames (per-origin window, seen-cache).

Exports the compiled implementation when :data:`krill_crdt._core.COMPILED` is true, the
pure-Python twin otherwise; both behave identically. See ``_dedup_py`` for the documentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import implementation

__all__ = [
    "DEFAULT_MAX_ORIGINS",
    "DEFAULT_SEEN_CAPACITY",
    "DEFAULT_SEEN_TTL",
    "DEFAULT_WINDOW",
    "MAX_SEQ",
    "MAX_WINDOW",
    "ReplayWindow",
    "SeenCache",
]

if TYPE_CHECKING:
    from ._dedup_py import (
        DEFAULT_MAX_ORIGINS,
        DEFAULT_SEEN_CAPACITY,
        DEFAULT_SEEN_TTL,
        DEFAULT_WINDOW,
        MAX_SEQ,
        MAX_WINDOW,
        ReplayWindow,
        SeenCache,
    )
else:
    _impl = implementation("dedup")
    globals().update({name: getattr(_impl, name) for name in __all__})
