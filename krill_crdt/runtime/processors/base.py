"""What a processor is and what it may use while it runs.

A *processor* is the behaviour of one node type: it runs on the node's host only, when the
node is invoked as part of a chain, and its results are ordinary writes to the host doc.
The executor (``krill_crdt.runtime.executor``) plans the chain with the hot-path planner,
runs each node at most once per invocation, wave after wave, and gives every processor a
:class:`Context`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ...errors import KrillError
from ...model import Node, NodeType

__all__ = ["Context", "Outcome", "Processor", "ProcessorError", "ProcessorHost"]


class ProcessorError(KrillError):
    """A processor failed; the executor puts its node in ERROR with this message."""


class ProcessorHost(Protocol):
    """What the running peer offers processors. Tests use an in-memory stand-in."""

    def get(self, node_id: str) -> Node:
        """The node as it is now (NodeNotFoundError if absent)."""
        ...

    async def update(self, node_id: str, changes: Mapping[str, Any]) -> Node:
        """Write some fields of a node durably (and to the swarm); return it as stored."""
        ...

    def now(self) -> float:
        """Unix time in seconds."""
        ...

    def resource(self, name: str) -> Any:
        """A shared resource by name: ``"series"`` (SeriesStore), ``"http"`` (an
        aiohttp.ClientSession), ``"gpio"`` (the pin backend), ``"serial"`` (the serial
        device manager), ``"mqtt"`` (the broker connection, when ``[mqtt] url`` is set).
        KeyError if this peer has none."""
        ...


@dataclass(frozen=True, slots=True)
class Context:
    """Everything one run of one processor sees.

    Attributes:
        node: the node being run, as it is at the start of the run.
        host: the running peer's services.
        inputs: results of this invocation's earlier nodes that lead to this one (node id ->
            the value they passed on); empty for the node the chain started at.
        value: a value handed in with the invocation (a new sample for a DataPoint, a
            webhook's body); None otherwise.
    """

    node: Node
    host: ProcessorHost
    inputs: Mapping[str, Any] = field(default_factory=dict)
    value: Any = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a processor run decided.

    Attributes:
        proceed: whether the node's targets run in this invocation (a threshold that did not
            cross, a filter that discarded the sample: False).
        value: what the node passes on to its targets (a data point's accepted value, a gate's
            output).
    """

    proceed: bool = True
    value: Any = None


class Processor(Protocol):
    """The behaviour of one node type.

    Two optional members tell the executor how to run it; a processor without them runs in a
    task of its own under the executor's timeout:

    * ``inline: ClassVar[bool]``: True when ``run`` waits on nothing but the host's own
      writes. The executor then steps the coroutine in place, without a task or a timer,
      and moves it to a task only if it does suspend. Such a processor must not arm a
      timeout or start network I/O (``asyncio.timeout``, an aiohttp request) before its first
      suspension: those bind to the task current at that moment, which is the chain's.
    * ``timeout(node) -> float | None``: seconds this node's run may take, when the
      executor's ``node_timeout`` does not fit it (an outgoing webhook with its retries); None
      keeps the executor's.
    """

    #: The node type this processor runs.
    type: ClassVar[NodeType]

    async def run(self, ctx: Context) -> Outcome:
        """Do the node's work.

        Raises:
            ProcessorError: with a message that tells the user what is wrong (it becomes the
                node's error).
        """
        ...
