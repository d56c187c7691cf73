"""The y-protocols message codec: what stock Yjs clients (y-websocket) send over a WebSocket.

Pure functions and frozen values, no I/O. One binary WebSocket message holds exactly one
y-protocols message; its first varint is the message type:

* ``0`` sync, then a varint sub-type and one length-prefixed payload:
  ``0`` step 1 (the sender's state vector), ``1`` step 2 (the update the receiver lacks),
  ``2`` update (a live delta);
* ``1`` awareness, then one length-prefixed awareness update (presence: cursors, names);
* ``2`` auth, then a varint reason kind (``0``: permission denied) and a length-prefixed
  UTF-8 reason;
* ``3`` query-awareness, with nothing after the type.

Varints are lib0's: seven bits per byte, least significant group first, the high bit set on
every byte but the last. Every read is bounds-checked: a message that ends early raises
:class:`~krill_crdt.errors.TruncatedFrameError`, one larger than its limit
:class:`~krill_crdt.errors.OversizedFrameError`, anything else that breaks the layout
:class:`~krill_crdt.errors.MalformedFrameError`. No other exception escapes a decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..errors import MalformedFrameError, OversizedFrameError, TruncatedFrameError

__all__ = [
    "EMPTY_UPDATE",
    "MAX_AWARENESS_ENTRIES",
    "MAX_MESSAGE_SIZE",
    "MAX_VARUINT",
    "MAX_VARUINT_BYTES",
    "Auth",
    "AwarenessEntry",
    "AwarenessUpdate",
    "Message",
    "MessageType",
    "QueryAwareness",
    "SyncStep1",
    "SyncStep2",
    "SyncType",
    "SyncUpdate",
    "decode_awareness",
    "decode_message",
    "decode_state_vector",
    "encode_awareness",
    "encode_message",
    "read_varuint",
    "write_varuint",
]

#: Largest WebSocket message accepted from a client. The biggest message a client sends in
#: normal use is its step 2 after working offline: everything it wrote that the host doc
#: lacks. At the ~315 bytes per node measured for host docs, 16 MiB holds some 50k nodes,
#: far more than a person or script writes between two connections, while it bounds what
#: one socket can make the server buffer (aiohttp's own default is 4 MiB; y-websocket has
#: none).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024

#: Largest value a varint may carry: lib0 numbers are JavaScript numbers, exact up to
#: 2**53 - 1, and lib0 itself refuses anything larger.
MAX_VARUINT = 2**53 - 1

#: Most bytes one varint may take: 53 bits at 7 bits per byte. Bounds the read loop even for
#: a run of continuation bytes.
MAX_VARUINT_BYTES = 8

#: Most entries (client states) one awareness update may carry. A room holds one entry per
#: connected editor; a thousand is far beyond any real room and bounds the decode loop and
#: the state a room remembers.
MAX_AWARENESS_ENTRIES = 1024

#: An update that changes nothing (no structs, empty delete set), as Yjs encodes it: what a
#: client with nothing new sends as its step 2.
EMPTY_UPDATE = b"\x00\x00"


class MessageType(IntEnum):
    """The first varint of a y-protocols message."""

    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncType(IntEnum):
    """The second varint of a sync message."""

    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


@dataclass(frozen=True, slots=True)
class SyncStep1:
    """Sync step 1: "here is what I have", as a Yjs v1 state vector."""

    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    """Sync step 2: the reply to a step 1, the Yjs v1 update the asker lacks (maybe empty)."""

    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    """A live Yjs v1 update, sent as soon as the sender's doc changed."""

    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessUpdate:
    """An awareness update (presence); decode its entries with :func:`decode_awareness`."""

    update: bytes


@dataclass(frozen=True, slots=True)
class Auth:
    """An auth message. y-protocols defines one kind: ``0``, permission denied.

    Attributes:
        kind: the reason kind.
        reason: the reason in words.
    """

    kind: int
    reason: str

    def __post_init__(self) -> None:
        _check_varuint(self.kind)


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    """A request for every awareness state the receiver knows."""


#: One decoded y-protocols message.
Message = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessUpdate | Auth | QueryAwareness


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's presence in an awareness update.

    Attributes:
        client_id: the Yjs client id the state belongs to.
        clock: counts that client's awareness changes; a higher clock replaces a lower one.
        state: the state as JSON text; ``"null"`` means the client left.
    """

    client_id: int
    clock: int
    state: str

    def __post_init__(self) -> None:
        _check_varuint(self.client_id)
        _check_varuint(self.clock)

    @property
    def is_removal(self) -> bool:
        """True when the entry says the client left (its state is JSON ``null``)."""
        return self.state == "null"


# ----------------------------------------------------------------------------------- varints


def write_varuint(value: int) -> bytes:
    """Encode a lib0 varint.

    Returns:
        The varint's bytes.

    Raises:
        MalformedFrameError: ``value`` is negative or above :data:`MAX_VARUINT`.
    """
    _check_varuint(value)
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varuint(data: bytes, offset: int) -> tuple[int, int]:
    """Decode the lib0 varint that starts at ``offset``.

    Returns:
        The value and the offset just after it.

    Raises:
        TruncatedFrameError: the data ends inside the varint.
        MalformedFrameError: the varint is longer than :data:`MAX_VARUINT_BYTES` or its value
            exceeds :data:`MAX_VARUINT`.
    """
    value = 0
    shift = 0
    for position in range(offset, offset + MAX_VARUINT_BYTES):
        if position >= len(data):
            raise TruncatedFrameError("y-protocols message ends inside a varint")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value > MAX_VARUINT:
                raise MalformedFrameError("y-protocols varint exceeds 2**53 - 1")
            return value, position + 1
        shift += 7
    raise MalformedFrameError(f"y-protocols varint longer than {MAX_VARUINT_BYTES} bytes")


def _check_varuint(value: int) -> None:
    if not 0 <= value <= MAX_VARUINT:
        raise MalformedFrameError(f"varint value must be 0..2**53-1, got {value}")


def _read_bytes(data: bytes, offset: int, limit: int) -> tuple[bytes, int]:
    """Read one length-prefixed byte string; return it and the offset after it."""
    length, offset = read_varuint(data, offset)
    if length > limit:
        raise OversizedFrameError(f"y-protocols payload of {length} bytes exceeds {limit}")
    end = offset + length
    if end > len(data):
        raise TruncatedFrameError(
            f"y-protocols payload announces {length} bytes, {len(data) - offset} remain"
        )
    return bytes(data[offset:end]), end


def _read_text(data: bytes, offset: int, limit: int) -> tuple[str, int]:
    raw, offset = _read_bytes(data, offset, limit)
    try:
        return raw.decode("utf-8"), offset
    except UnicodeDecodeError:
        raise MalformedFrameError("y-protocols string is not valid UTF-8") from None


def _with_length(payload: bytes) -> bytes:
    return write_varuint(len(payload)) + payload


# ---------------------------------------------------------------------------------- messages


def decode_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> Message:
    """Decode one binary WebSocket message.

    Args:
        data: the whole message.
        max_size: largest message (and payload) accepted.

    Returns:
        The typed message. Payloads are copied out; ``data`` is not kept.

    Raises:
        OversizedFrameError: the message, or the length its payload announces, exceeds
            ``max_size``.
        TruncatedFrameError: the message ends before its type, sub-type or payload is whole.
        MalformedFrameError: an unknown type or sub-type, a bad varint, invalid UTF-8, or
            bytes left over after the message.
    """
    # Step 1: the size, before any byte is looked at.
    if len(data) > max_size:
        raise OversizedFrameError(f"y-protocols message of {len(data)} bytes exceeds {max_size}")

    # Step 2: the type, then the body that type defines.
    kind, offset = read_varuint(data, 0)
    message: Message
    if kind == MessageType.SYNC:
        sub, offset = read_varuint(data, offset)
        if sub not in (SyncType.STEP1, SyncType.STEP2, SyncType.UPDATE):
            raise MalformedFrameError(f"unknown y-protocols sync message type {sub}")
        payload, offset = _read_bytes(data, offset, max_size)
        if sub == SyncType.STEP1:
            message = SyncStep1(payload)
        elif sub == SyncType.STEP2:
            message = SyncStep2(payload)
        else:
            message = SyncUpdate(payload)
    elif kind == MessageType.AWARENESS:
        payload, offset = _read_bytes(data, offset, max_size)
        message = AwarenessUpdate(payload)
    elif kind == MessageType.AUTH:
        reason_kind, offset = read_varuint(data, offset)
        reason, offset = _read_text(data, offset, max_size)
        message = Auth(reason_kind, reason)
    elif kind == MessageType.QUERY_AWARENESS:
        message = QueryAwareness()
    else:
        raise MalformedFrameError(f"unknown y-protocols message type {kind}")

    # Step 3: one WebSocket message is one y-protocols message; trailing bytes mean the
    # sender and this decoder disagree about the layout.
    if offset != len(data):
        raise MalformedFrameError(
            f"{len(data) - offset} byte(s) left over after a y-protocols message"
        )
    return message


def encode_message(message: Message) -> bytes:
    """Encode one message as a binary WebSocket message.

    Returns:
        The message's bytes.

    Raises:
        TypeError: ``message`` is not one of the :data:`Message` types.
    """
    if isinstance(message, SyncStep1):
        return bytes((MessageType.SYNC, SyncType.STEP1)) + _with_length(message.state_vector)
    if isinstance(message, SyncStep2):
        return bytes((MessageType.SYNC, SyncType.STEP2)) + _with_length(message.update)
    if isinstance(message, SyncUpdate):
        return bytes((MessageType.SYNC, SyncType.UPDATE)) + _with_length(message.update)
    if isinstance(message, AwarenessUpdate):
        return bytes((MessageType.AWARENESS,)) + _with_length(message.update)
    if isinstance(message, Auth):
        return (
            bytes((MessageType.AUTH,))
            + write_varuint(message.kind)
            + _with_length(message.reason.encode("utf-8"))
        )
    if isinstance(message, QueryAwareness):
        return bytes((MessageType.QUERY_AWARENESS,))
    raise TypeError(f"not a y-protocols message: {message!r}")


# --------------------------------------------------------------------------------- awareness


def decode_awareness(update: bytes) -> list[AwarenessEntry]:
    """Decode the entries of an awareness update (the payload of an awareness message).

    Returns:
        The entries, in the order sent.

    Raises:
        OversizedFrameError: more than :data:`MAX_AWARENESS_ENTRIES` entries.
        TruncatedFrameError: the update ends inside an entry.
        MalformedFrameError: a bad varint, a state that is not UTF-8, or bytes left over.
    """
    count, offset = read_varuint(update, 0)
    if count > MAX_AWARENESS_ENTRIES:
        raise OversizedFrameError(
            f"awareness update with {count} entries exceeds {MAX_AWARENESS_ENTRIES}"
        )
    entries = []
    for _ in range(count):
        client_id, offset = read_varuint(update, offset)
        clock, offset = read_varuint(update, offset)
        state, offset = _read_text(update, offset, len(update))
        entries.append(AwarenessEntry(client_id, clock, state))
    if offset != len(update):
        raise MalformedFrameError(
            f"{len(update) - offset} byte(s) left over in an awareness update"
        )
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    """Encode entries as an awareness update (an empty list gives a valid, empty update).

    Returns:
        The update's bytes, to wrap in an :class:`AwarenessUpdate`.

    Raises:
        OversizedFrameError: more than :data:`MAX_AWARENESS_ENTRIES` entries.
    """
    if len(entries) > MAX_AWARENESS_ENTRIES:
        raise OversizedFrameError(
            f"awareness update with {len(entries)} entries exceeds {MAX_AWARENESS_ENTRIES}"
        )
    parts = [write_varuint(len(entries))]
    for entry in entries:
        parts.append(write_varuint(entry.client_id))
        parts.append(write_varuint(entry.clock))
        parts.append(_with_length(entry.state.encode("utf-8")))
    return b"".join(parts)


# ------------------------------------------------------------------------------ state vectors


def decode_state_vector(state_vector: bytes) -> dict[int, int]:
    """Decode a Yjs v1 state vector.

    Returns:
        Client id -> the number of structs of that client the holder has (its next clock).

    Raises:
        TruncatedFrameError: the vector ends inside an entry.
        MalformedFrameError: a bad varint, an entry count the bytes cannot hold, or bytes
            left over.
    """
    count, offset = read_varuint(state_vector, 0)
    # Every entry takes at least two bytes; checking first bounds the loop by the input.
    if count > (len(state_vector) - offset) // 2:
        raise MalformedFrameError(f"state vector announces {count} entries its bytes cannot hold")
    clocks: dict[int, int] = {}
    for _ in range(count):
        client_id, offset = read_varuint(state_vector, offset)
        clock, offset = read_varuint(state_vector, offset)
        clocks[client_id] = clock
    if offset != len(state_vector):
        raise MalformedFrameError(
            f"{len(state_vector) - offset} byte(s) left over in a state vector"
        )
    return clocks
