"""Chain planner: execution plans in waves over the node graph's successor edges.

Exports the compiled implementation when :data:`krill_crdt._core.COMPILED` is true, the
pure-Python twin otherwise; both behave identically. See ``_planner_py`` for the documentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import implementation

__all__ = ["MAX_CHAIN_DEPTH", "MAX_FAN_OUT", "MAX_NODES", "ChainGraph"]

if TYPE_CHECKING:
    from ._planner_py import MAX_CHAIN_DEPTH, MAX_FAN_OUT, MAX_NODES, ChainGraph
else:
    _impl = implementation("planner")
    ChainGraph = _impl.ChainGraph
    MAX_CHAIN_DEPTH = _impl.MAX_CHAIN_DEPTH
    MAX_FAN_OUT = _impl.MAX_FAN_OUT
    MAX_NODES = _impl.MAX_NODES
