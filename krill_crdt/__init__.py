"""krill_crdt: keeps a swarm of edge devices in sync through CRDT host documents."""

from __future__ import annotations

import logging

from .errors import KrillError

__all__ = ["KrillError", "__version__"]

__version__ = "0.1.0"

# The package logger tree ("krill", "krill.store", "krill.sync", ...) stays silent unless the
# application configures logging.
logging.getLogger("krill").addHandler(logging.NullHandler())
