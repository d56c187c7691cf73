"""Graph walks over the node tree (subtree collection, cycle checks).

Exports the compiled implementation when :data:`krill_crdt._core.COMPILED` is true, the
pure-Python twin otherwise; both behave identically. See ``_graph_py`` for the documentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import implementation

__all__ = ["parent_cycles", "subtree", "would_cycle"]

if TYPE_CHECKING:
    from ._graph_py import parent_cycles, subtree, would_cycle
else:
    _impl = implementation("graph")
    parent_cycles = _impl.parent_cycles
    subtree = _impl.subtree
    would_cycle = _impl.would_cycle
