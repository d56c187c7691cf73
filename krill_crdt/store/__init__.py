"""The store layer: host docs, their change streams, the durable update log, time series."""

from __future__ import annotations

from .changes import Change, ChangeKind, ChangeStream
from .hostdoc import NODES_ROOT, Create, Delete, HostDoc, Operation, Update
from .log import LogOptions, UpdateLog
from .origin import LOAD, LOCAL, SWEEP, Origin
from .series import SeriesStore
from .store import Store

__all__ = [
    "LOAD",
    "LOCAL",
    "NODES_ROOT",
    "SWEEP",
    "Change",
    "ChangeKind",
    "ChangeStream",
    "Create",
    "Delete",
    "HostDoc",
    "LogOptions",
    "Operation",
    "Origin",
    "SeriesStore",
    "Store",
    "Update",
    "UpdateLog",
]
