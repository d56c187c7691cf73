"""Wire codec for krill frames and beacons: pure-Python twin of ``_codec_c.pyx``.

Every krill transport carries the same binary frame (version 1)::

    offset  size  field
         0     2  magic b"KR"
         2     1  version (1)
         3     1  kind (see Kind)
         4     1  flags (see FLAG_*)
         5     1  doc id length d
         6     4  payload length p
        10    16  origin peer id
        26     4  swarm id
        30     8  sequence number
        38     6  timestamp, ms since the Unix epoch
        44     d  doc id, UTF-8
      44+d     p  payload
    44+d+p    16  MAC: keyed BLAKE2b-128 over every byte before it

Integers are unsigned big-endian. ``docs/wire.md`` explains each width and has a worked
example. Decoding checks size, magic, version, every bound and then the MAC, in that order,
before any payload is handed out; each kind of bad input raises its own
:class:`~krill_crdt.errors.FrameError` subclass, and no message ever quotes frame bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import NamedTuple, NoReturn, TypeAlias

from krill_crdt.errors import (
    BadMacError,
    MalformedFrameError,
    OversizedFrameError,
    TruncatedFrameError,
    UnknownVersionError,
)

__all__ = [
    "DATAGRAM_BUDGET",
    "DIGEST_SIZE",
    "FLAG_RELAYED",
    "FLAG_RESPONSE",
    "FRAME_OVERHEAD",
    "HEADER_SIZE",
    "KNOWN_FLAGS",
    "MAC_SIZE",
    "MAGIC",
    "MAX_BEACON_DOCS",
    "MAX_DOC_ID_LEN",
    "MAX_ENDPOINTS",
    "MAX_ENDPOINT_LEN",
    "MAX_FRAME_SIZE",
    "MAX_KEY_SIZE",
    "MAX_PAYLOAD_SIZE",
    "MAX_SEQ",
    "MAX_SWARM",
    "MAX_TS_MS",
    "MIN_KEY_SIZE",
    "ORIGIN_SIZE",
    "VERSION",
    "Beacon",
    "Frame",
    "FrameHeader",
    "Kind",
    "decode_beacon",
    "decode_frame",
    "decode_frame_unverified",
    "encode_beacon",
    "encode_frame",
    "peek_header",
    "state_vector_digest",
]

#: Anything :func:`decode_frame` reads: bytes, bytearray or a contiguous memoryview.
Buffer: TypeAlias = bytes | bytearray | memoryview

# --- Frame layout -------------------------------------------------------------------------

#: First two bytes of every frame. Stray datagrams on the discovery port (other software,
#: port scans) are turned away here before any length is trusted.
MAGIC = b"KR"
#: The only frame format version this release reads and writes.
VERSION = 1
#: Size of the fixed header, which holds every fixed-width field; the doc id follows it.
HEADER_SIZE = 44
#: Truncated BLAKE2b output. 128 bits leave a forger a 2**-128 chance per try, the same
#: margin as AES-GCM's tag, at 16 bytes of every frame.
MAC_SIZE = 16
#: Bytes every frame spends besides its doc id and payload.
FRAME_OVERHEAD = HEADER_SIZE + MAC_SIZE
#: Random 128-bit peer ids (the size of a UUID) never collide in a swarm, with no
#: coordination between peers.
ORIGIN_SIZE = 16

# --- Limits -------------------------------------------------------------------------------

#: Largest frame accepted or written. A sync step 2 carries a whole host doc, and a host doc
#: of 100k nodes encodes to about 31.5 MB, so 64 MiB holds twice that; the cap bounds what
#: one frame can make a peer hash and copy.
# NOTE: a host doc whose diff exceeds this cannot travel in one frame; it must go over the
# NOTE: HTTP /sync route, which matters only beyond roughly 200k nodes in one host doc.
MAX_FRAME_SIZE = 64 * 1024 * 1024
#: Longest doc id. Host doc ids are host ids (a UUID is 36 characters); 64 leaves room while
#: keeping beacons, which list every followed doc, and MQTT topic names short.
MAX_DOC_ID_LEN = 64
#: Largest payload: what is left of MAX_FRAME_SIZE with the longest doc id.
MAX_PAYLOAD_SIZE = MAX_FRAME_SIZE - FRAME_OVERHEAD - MAX_DOC_ID_LEN
#: The swarm id is a 32-bit tag that lets a peer drop frames of another swarm sharing its
#: multicast group before paying for the MAC; the MAC, not the tag, keeps swarms apart.
MAX_SWARM = 2**32 - 1
#: 64-bit sequence numbers never wrap: at a million frames a second they last 584k years,
#: so a replay window never has to handle wrap-around.
MAX_SEQ = 2**64 - 1
#: 48-bit millisecond timestamps reach the year 10889; 64 bits would spend 2 more bytes.
MAX_TS_MS = 2**48 - 1
#: Shortest swarm key: 128 bits, below which brute force becomes thinkable.
MIN_KEY_SIZE = 16
#: Longest swarm key: BLAKE2b takes keys of at most 64 bytes.
MAX_KEY_SIZE = 64

# --- Flags --------------------------------------------------------------------------------

#: The sender forwards a frame that another peer originated.
FLAG_RELAYED = 0x01
#: The frame answers a request of its receiver (a sync step 2, the result of an invoke).
FLAG_RESPONSE = 0x02
#: Every flag this version defines; frames with other bits set are malformed, so a later
#: version can give those bits a meaning without being misread by this one.
KNOWN_FLAGS = FLAG_RELAYED | FLAG_RESPONSE

#: BLAKE2b personalisation of the frame MAC: a swarm key used for something else as well
#: can never produce a valid frame MAC by accident.
MAC_PERSON = b"krill frame v1"
#: BLAKE2b personalisation of the state vector digest.
DIGEST_PERSON = b"krill sv v1"

# --- Beacons ------------------------------------------------------------------------------

#: Largest frame that carries a beacon with an inline delta: the datagram size that passes
#: unfragmented through the usual 1280-1500 byte MTUs with IP and UDP headers added
#: (QUIC picks 1200 for the same reason). Beacons without a delta may be larger.
# NOTE: a beacon listing many docs with long ids (more than about 15 of 64 bytes) exceeds
# NOTE: this budget and is sent as a fragmented datagram, which a lossy LAN drops more
# NOTE: often; a sender that follows that many docs may split its digests over beacons.
DATAGRAM_BUDGET = 1200
#: Bytes of a state vector digest: a false "in sync" needs a 2**-64 collision and only
#: delays anti-entropy until the doc changes again.
DIGEST_SIZE = 8
#: Endpoints one beacon may list: a peer rarely listens on more than IPv4, IPv6 and TLS.
MAX_ENDPOINTS = 4
#: Longest endpoint URL in bytes; "https://" + a full IPv6 literal + port is under 60.
MAX_ENDPOINT_LEN = 128
#: Docs one beacon may list. A LAN swarm has tens of hosts; 128 keeps a full beacon
#: (at most about 9.4 KB) well within one UDP datagram.
MAX_BEACON_DOCS = 128


class Kind(IntEnum):
    """What a frame carries."""

    #: Discovery and anti-entropy: endpoints, state vector digests, maybe an inline delta.
    BEACON = 1
    #: The sender's state vector of a doc, asking for what it lacks (y-protocols step 1).
    SYNC_STEP1 = 2
    #: The diff that answers a step 1 (y-protocols step 2).
    SYNC_STEP2 = 3
    #: A Yjs v1 update of a doc.
    UPDATE = 4
    #: Presence of a peer (online, offline, what it follows).
    PRESENCE = 5
    #: A request to run a node's chain on the node's host.
    INVOKE = 6


#: Frame kind by wire value; index 0 and anything past the end are not kinds.
_KINDS: tuple[Kind | None, ...] = (None, *Kind)
#: Kinds that concern one doc and so must name it.
_DOC_KINDS = frozenset({Kind.SYNC_STEP1, Kind.SYNC_STEP2, Kind.UPDATE, Kind.INVOKE})


class FrameHeader(NamedTuple):
    """The fixed fields of a frame, read by :func:`peek_header` without checking the MAC."""

    kind: Kind
    flags: int
    origin: bytes
    swarm: int
    seq: int
    ts_ms: int
    #: Total frame size that the header announces, MAC included.
    size: int


class Frame:
    """One decoded frame, or one to encode. Immutable; equal when all fields are equal.

    Attributes:
        kind: what the frame carries.
        flags: a combination of ``FLAG_*``.
        origin: the 16-byte id of the peer that wrote it.
        swarm: the 32-bit swarm id.
        seq: the origin's sequence number (0..2**64-1).
        ts_ms: the origin's clock when it wrote the frame, in ms since the Unix epoch.
        doc: the doc id, ``""`` for frames that concern no doc.
        payload: the frame's content.
    """

    __slots__ = ("doc", "flags", "kind", "origin", "payload", "seq", "swarm", "ts_ms")

    kind: Kind
    flags: int
    origin: bytes
    swarm: int
    seq: int
    ts_ms: int
    doc: str
    payload: bytes

    def __init__(  # noqa: PLR0917 - positional in wire order, as encode_frame takes them
        self,
        kind: int,
        origin: bytes,
        swarm: int,
        seq: int,
        ts_ms: int,
        doc: str,
        payload: Buffer,
        flags: int = 0,
    ) -> None:
        """Build a frame from its fields.

        Raises:
            TypeError: a field has the wrong type.
            ValueError: a field is out of range (:class:`OversizedFrameError` for a doc id or
                payload over its limit).
        """
        _check_fields(kind, origin, swarm, seq, ts_ms, doc, payload, flags)
        _init_frame(self, _KINDS[kind], flags, origin, swarm, seq, ts_ms, doc, bytes(payload))

    def encode(self, key: bytes) -> bytes:
        """Return this frame's wire form, MAC computed with ``key``.

        Raises:
            TypeError, ValueError: the key is not 16..64 bytes.
        """
        return encode_frame(
            self.kind,
            self.origin,
            self.swarm,
            self.seq,
            self.ts_ms,
            self.doc,
            self.payload,
            key,
            self.flags,
        )

    def _fields(self) -> tuple[Kind, int, bytes, int, int, int, str, bytes]:
        return (
            self.kind,
            self.flags,
            self.origin,
            self.swarm,
            self.seq,
            self.ts_ms,
            self.doc,
            self.payload,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        # The payload is summarised by its size: frames end up in logs, their content must not.
        return (
            f"Frame(kind={self.kind.name}, flags=0x{self.flags:02x}, origin={self.origin.hex()}, "
            f"swarm={self.swarm}, seq={self.seq}, ts_ms={self.ts_ms}, doc={self.doc!r}, "
            f"payload=<{len(self.payload)} bytes>)"
        )

    def __reduce__(self) -> tuple[type[Frame], tuple[int, bytes, int, int, int, str, bytes, int]]:
        return (
            Frame,
            (
                self.kind,
                self.origin,
                self.swarm,
                self.seq,
                self.ts_ms,
                self.doc,
                self.payload,
                self.flags,
            ),
        )

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Frame is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Frame is immutable: cannot delete {name!r}")


_set = object.__setattr__


def _init_frame(  # noqa: PLR0917 - one argument per field, in wire order
    frame: Frame,
    kind: Kind | None,
    flags: int,
    origin: bytes,
    swarm: int,
    seq: int,
    ts_ms: int,
    doc: str,
    payload: bytes,
) -> None:
    _set(frame, "kind", kind)
    _set(frame, "flags", flags)
    _set(frame, "origin", origin)
    _set(frame, "swarm", swarm)
    _set(frame, "seq", seq)
    _set(frame, "ts_ms", ts_ms)
    _set(frame, "doc", doc)
    _set(frame, "payload", payload)


# --- Argument checks (encoding side) ------------------------------------------------------


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes):
        raise TypeError("key must be bytes")
    if not MIN_KEY_SIZE <= len(key) <= MAX_KEY_SIZE:
        # The length only: a key never appears in a message.
        raise ValueError(f"key must be {MIN_KEY_SIZE}..{MAX_KEY_SIZE} bytes, got {len(key)}")


def _check_uint(name: str, value: int, limit: int) -> None:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if not 0 <= value <= limit:
        raise ValueError(f"{name} must be 0..{limit}, got {value}")


def _check_fields(  # noqa: PLR0917 - one argument per field, in wire order
    kind: int,
    origin: bytes,
    swarm: int,
    seq: int,
    ts_ms: int,
    doc: str,
    payload: Buffer,
    flags: int,
) -> tuple[bytes, int]:
    """Check every field of a frame to write; return the encoded doc id and payload size."""
    if not isinstance(kind, int):
        raise TypeError("kind must be an int")
    if not 0 < kind < len(_KINDS):
        raise ValueError(f"unknown frame kind {kind}")
    if not isinstance(flags, int):
        raise TypeError("flags must be an int")
    if flags < 0 or flags & ~KNOWN_FLAGS:
        raise ValueError(f"flags must combine the FLAG_ constants, got {flags}")
    if not isinstance(origin, bytes):
        raise TypeError("origin must be bytes")
    if len(origin) != ORIGIN_SIZE:
        raise ValueError(f"origin must be {ORIGIN_SIZE} bytes, got {len(origin)}")
    _check_uint("swarm", swarm, MAX_SWARM)
    _check_uint("seq", seq, MAX_SEQ)
    _check_uint("ts_ms", ts_ms, MAX_TS_MS)
    if not isinstance(doc, str):
        raise TypeError("doc must be a str")
    doc_bytes = doc.encode()
    if len(doc_bytes) > MAX_DOC_ID_LEN:
        raise OversizedFrameError(
            f"doc id length {len(doc_bytes)} is over the {MAX_DOC_ID_LEN}-byte limit"
        )
    if not doc_bytes and kind in _DOC_KINDS:
        raise ValueError(f"a {Kind(kind).name} frame needs a doc id")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError("payload must be bytes-like")
    size = memoryview(payload).nbytes
    if size > MAX_PAYLOAD_SIZE:
        raise OversizedFrameError(
            f"payload length {size} is over the {MAX_PAYLOAD_SIZE}-byte limit"
        )
    return doc_bytes, size


# --- MAC ----------------------------------------------------------------------------------

# The keyed hash state of the last key used: cloning it skips hashing the key block again.
# Swapping the whole tuple keeps it consistent under threads.
_mac_base: tuple[bytes, hashlib.blake2b] | None = None


def _mac(key: bytes, body: Buffer) -> bytes:
    global _mac_base  # noqa: PLW0603 - a one-entry cache of the keyed state
    base = _mac_base
    if base is None or base[0] != key:
        base = (key, hashlib.blake2b(digest_size=MAC_SIZE, key=key, person=MAC_PERSON))
        _mac_base = base
    state = base[1].copy()
    state.update(body)
    return state.digest()


# --- Encoding -----------------------------------------------------------------------------


def encode_frame(  # noqa: PLR0917 - the fields in wire order, then the key
    kind: int,
    origin: bytes,
    swarm: int,
    seq: int,
    ts_ms: int,
    doc: str,
    payload: Buffer,
    key: bytes,
    flags: int = 0,
) -> bytes:
    """Return the wire form of a frame, MAC computed with the swarm ``key``.

    Raises:
        TypeError: a field or the key has the wrong type.
        ValueError: a field is out of range, the key is not 16..64 bytes, or a kind that
            concerns a doc has an empty ``doc``.
        OversizedFrameError: the doc id or payload is over its limit.
    """
    _check_key(key)
    doc_bytes, size = _check_fields(kind, origin, swarm, seq, ts_ms, doc, payload, flags)
    header = b"".join(
        (
            MAGIC,
            bytes((VERSION, kind, flags, len(doc_bytes))),
            size.to_bytes(4, "big"),
            origin,
            swarm.to_bytes(4, "big"),
            seq.to_bytes(8, "big"),
            ts_ms.to_bytes(6, "big"),
            doc_bytes,
        )
    )
    body = header + bytes(payload)
    return body + _mac(key, body)


# --- Decoding -----------------------------------------------------------------------------


#: The fields after the lengths: origin, swarm, seq, and the timestamp as 16 + 32 bits.
_FIELDS = struct.Struct(">16sIQHI")


def _byte_view(data: Buffer) -> memoryview:
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def _read_header(view: memoryview, minimum: int) -> tuple[Kind, int, int, int]:
    """Check the fixed header (steps 2-4 of decoding); return kind, flags, doc id length and
    the frame size it announces."""
    n = len(view)

    # Step 2: magic and version first, since a later version may lay out the rest otherwise.
    if n < 3:
        raise TruncatedFrameError(f"frame is {n} bytes, too short for its magic and version")
    if view[0] != MAGIC[0] or view[1] != MAGIC[1]:
        raise MalformedFrameError("frame does not start with the krill magic")
    if view[2] != VERSION:
        raise UnknownVersionError(
            f"frame format version {view[2]} is not supported (this release reads {VERSION})"
        )

    # Step 3: the whole fixed header must be there before any field is read.
    if n < minimum:
        raise TruncatedFrameError(f"frame is {n} bytes, shorter than the {minimum}-byte minimum")

    # Step 4: kind, flags and the two lengths, each against its limit.
    kind = _KINDS[view[3]] if view[3] < len(_KINDS) else None
    if kind is None:
        raise MalformedFrameError(f"unknown frame kind {view[3]}")
    flags = view[4]
    if flags & ~KNOWN_FLAGS:
        raise MalformedFrameError(f"unknown flag bits 0x{flags & ~KNOWN_FLAGS:02x}")
    doc_len = view[5]
    if doc_len > MAX_DOC_ID_LEN:
        raise OversizedFrameError(
            f"doc id length {doc_len} is over the {MAX_DOC_ID_LEN}-byte limit"
        )
    payload_len = int.from_bytes(view[6:10], "big")
    if payload_len > MAX_PAYLOAD_SIZE:
        raise OversizedFrameError(
            f"payload length {payload_len} is over the {MAX_PAYLOAD_SIZE}-byte limit"
        )
    return kind, flags, doc_len, FRAME_OVERHEAD + doc_len + payload_len


def _decode(data: Buffer, key: bytes | None) -> Frame:
    with _byte_view(data) as view:
        # Step 1: the size, before anything inside the frame is trusted.
        n = len(view)
        if n > MAX_FRAME_SIZE:
            raise OversizedFrameError(f"frame is {n} bytes, over the {MAX_FRAME_SIZE}-byte limit")

        # Steps 2-4: the fixed header.
        kind, flags, doc_len, size = _read_header(view, FRAME_OVERHEAD)

        # Step 5: the frame is exactly as long as its header says.
        if n < size:
            raise TruncatedFrameError(f"frame is {n} bytes, its header announces {size}")
        if n > size:
            raise MalformedFrameError(
                f"frame is {n} bytes, {n - size} more than its header announces"
            )
        if doc_len == 0 and kind in _DOC_KINDS:
            raise MalformedFrameError(f"a {kind.name} frame needs a doc id")

        # Step 6: the MAC, before any field is handed out.
        body_end = size - MAC_SIZE
        if key is not None and not hmac.compare_digest(_mac(key, view[:body_end]), view[body_end:]):
            raise BadMacError("frame MAC does not match the swarm key")

        # Step 7: the fields.
        doc_end = HEADER_SIZE + doc_len
        try:
            doc = str(view[HEADER_SIZE:doc_end], "utf-8")
        except UnicodeDecodeError:
            raise MalformedFrameError("doc id is not valid UTF-8") from None
        origin, swarm, seq, ts_high, ts_low = _FIELDS.unpack_from(view, 10)
        frame = Frame.__new__(Frame)
        _init_frame(
            frame,
            kind,
            flags,
            origin,
            swarm,
            seq,
            ts_high << 32 | ts_low,
            doc,
            bytes(view[doc_end:body_end]),
        )
        return frame


def decode_frame(data: Buffer, key: bytes) -> Frame:
    """Decode one frame and check its MAC against the swarm ``key``.

    The checks run in a fixed order (size, magic, version, header fields, length, MAC, doc
    id encoding), so one input always raises the same error. Nothing is kept on error.

    Raises:
        TypeError, ValueError: ``key`` is not 16..64 bytes (checked first).
        OversizedFrameError: the frame, its doc id or its payload is over its limit.
        TruncatedFrameError: the frame is shorter than its header or its announced size.
        MalformedFrameError: bad magic, kind or flags, trailing bytes, a missing doc id or
            a doc id that is not UTF-8.
        UnknownVersionError: the format version is not 1.
        BadMacError: the MAC does not match ``key``.
    """
    _check_key(key)
    return _decode(data, key)


def decode_frame_unverified(data: Buffer) -> Frame:
    """Decode one frame WITHOUT checking its MAC.

    Only for frames whose origin is already trusted (benchmarks, inspecting a capture,
    tests). Never use it on input from the network: anyone can forge what it accepts.

    Raises:
        The errors of :func:`decode_frame`, except :class:`BadMacError`.
    """
    return _decode(data, None)


def peek_header(data: Buffer) -> FrameHeader:
    """Read the fixed header of a frame without checking its MAC or its total length.

    Cheap: a transport can drop a duplicate (origin, seq) or another swarm's frame before
    paying for the MAC, and a stream reader learns how many bytes the frame spans. Only
    the first ``HEADER_SIZE`` bytes are needed. Nothing read here is authenticated.

    Raises:
        TruncatedFrameError: fewer than ``HEADER_SIZE`` bytes.
        MalformedFrameError, UnknownVersionError, OversizedFrameError: as in
            :func:`decode_frame`, for the fixed header only.
    """
    with _byte_view(data) as view:
        kind, flags, _, size = _read_header(view, HEADER_SIZE)
        origin, swarm, seq, ts_high, ts_low = _FIELDS.unpack_from(view, 10)
        return FrameHeader(kind, flags, origin, swarm, seq, ts_high << 32 | ts_low, size)


# --- State vector digest ------------------------------------------------------------------

#: A lib0 variable-length unsigned integer takes at most 10 bytes for 64 bits.
_MAX_VARUINT_BYTES = 10


def _read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(_MAX_VARUINT_BYTES):
        if pos >= len(data):
            raise MalformedFrameError("state vector ends inside a number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value, pos
    raise MalformedFrameError("state vector holds a number longer than 64 bits")


def _write_varuint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def state_vector_digest(sv: bytes) -> bytes:
    """Return the 8-byte digest of a Yjs v1 encoded state vector, as beacons carry it.

    Yrs writes state vector entries in hash map order, so two peers with the same state can
    encode it differently. The digest is taken over a canonical form instead: entries sorted
    by client id, entries with clock 0 left out, numbers in their shortest encoding. Equal
    states give equal digests.

    Raises:
        MalformedFrameError: ``sv`` is not a well-formed state vector.
    """
    sv = bytes(sv)
    count, pos = _read_varuint(sv, 0)
    # Each entry takes at least two bytes; a larger count cannot be honest.
    if count > (len(sv) - pos) // 2:
        raise MalformedFrameError("state vector announces more entries than it holds")
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = _read_varuint(sv, pos)
        clock, pos = _read_varuint(sv, pos)
        if client in clocks:
            raise MalformedFrameError("state vector lists a client twice")
        clocks[client] = clock
    if pos != len(sv):
        raise MalformedFrameError("state vector has trailing bytes")

    canonical = bytearray()
    entries = sorted((client, clock) for client, clock in clocks.items() if clock)
    _write_varuint(canonical, len(entries))
    for client, clock in entries:
        _write_varuint(canonical, client)
        _write_varuint(canonical, clock)
    return hashlib.blake2b(canonical, digest_size=DIGEST_SIZE, person=DIGEST_PERSON).digest()


# --- Beacon payload -----------------------------------------------------------------------


class Beacon:
    """The payload of a BEACON frame.

    Attributes:
        endpoints: URLs where the peer serves HTTP, best first.
        digests: per followed doc id, the :func:`state_vector_digest` of its state vector.
        delta: an inline ``(doc id, Yjs update)`` for a small change, or None.
    """

    __slots__ = ("delta", "digests", "endpoints")

    def __init__(
        self,
        endpoints: Sequence[str],
        digests: Mapping[str, bytes],
        delta: tuple[str, bytes] | None = None,
    ) -> None:
        self.endpoints: tuple[str, ...] = tuple(endpoints)
        self.digests: dict[str, bytes] = dict(digests)
        self.delta: tuple[str, bytes] | None = delta

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Beacon):
            return NotImplemented
        return (self.endpoints, self.digests, self.delta) == (
            other.endpoints,
            other.digests,
            other.delta,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        delta = (
            "None" if self.delta is None else f"({self.delta[0]!r}, <{len(self.delta[1])} bytes>)"
        )
        return f"Beacon(endpoints={self.endpoints!r}, docs={len(self.digests)}, delta={delta})"


def _short_str(out: bytearray, value: str, what: str, limit: int) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str")
    raw = value.encode()
    if not raw:
        raise ValueError(f"{what} must not be empty")
    if len(raw) > limit:
        raise OversizedFrameError(f"{what} is {len(raw)} bytes, over the {limit}-byte limit")
    out.append(len(raw))
    out += raw


def encode_beacon(
    endpoints: Sequence[str],
    digests: Mapping[str, bytes],
    delta: tuple[str, bytes] | None = None,
) -> bytes:
    """Return a beacon payload (see ``docs/wire.md`` for its layout).

    A beacon with a delta must fit, as a whole frame, in ``DATAGRAM_BUDGET`` bytes. When it
    does not, send the beacon without the delta and the delta as an UPDATE frame.

    Raises:
        TypeError: a value has the wrong type.
        ValueError: an empty endpoint or doc id, or a digest not ``DIGEST_SIZE`` bytes.
        OversizedFrameError: too many endpoints or docs, a value over its length limit, or
            a delta that does not fit the datagram budget.
    """
    out = bytearray()
    if len(endpoints) > MAX_ENDPOINTS:
        raise OversizedFrameError(f"{len(endpoints)} endpoints, over the limit of {MAX_ENDPOINTS}")
    out.append(len(endpoints))
    for endpoint in endpoints:
        _short_str(out, endpoint, "endpoint", MAX_ENDPOINT_LEN)

    if len(digests) > MAX_BEACON_DOCS:
        raise OversizedFrameError(f"{len(digests)} docs, over the limit of {MAX_BEACON_DOCS}")
    out.append(len(digests))
    for doc, digest in digests.items():
        _short_str(out, doc, "doc id", MAX_DOC_ID_LEN)
        if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
            raise ValueError(f"a digest must be {DIGEST_SIZE} bytes")
        out += digest

    if delta is None:
        out.append(0)
        return bytes(out)
    doc, update = delta
    _short_str(out, doc, "doc id", MAX_DOC_ID_LEN)
    if not isinstance(update, bytes):
        raise TypeError("a delta must be bytes")
    total = len(out) + 2 + len(update) + FRAME_OVERHEAD
    if total > DATAGRAM_BUDGET:
        raise OversizedFrameError(
            f"a beacon with this delta takes {total} bytes, "
            f"over the {DATAGRAM_BUDGET}-byte datagram budget"
        )
    out += len(update).to_bytes(2, "big")
    out += update
    return bytes(out)


class _Reader:
    """Bounds-checked reads from a beacon payload."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise TruncatedFrameError("beacon ends inside a field")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def short_str(self, what: str, limit: int) -> str:
        size = self.byte()
        if size == 0:
            raise MalformedFrameError(f"beacon has an empty {what}")
        if size > limit:
            raise OversizedFrameError(f"beacon {what} is {size} bytes, over the {limit}-byte limit")
        try:
            return self.take(size).decode()
        except UnicodeDecodeError:
            raise MalformedFrameError(f"beacon {what} is not valid UTF-8") from None


def decode_beacon(payload: Buffer) -> Beacon:
    """Decode the payload of a BEACON frame (whose MAC was already checked).

    Raises:
        TruncatedFrameError: the payload ends inside a field.
        OversizedFrameError: a count or length over its limit, or a delta in a beacon over
            the datagram budget.
        MalformedFrameError: an empty or non-UTF-8 string, a doc listed twice, or trailing
            bytes.
    """
    data = bytes(payload)
    reader = _Reader(data)

    count = reader.byte()
    if count > MAX_ENDPOINTS:
        raise OversizedFrameError(
            f"beacon lists {count} endpoints, over the limit of {MAX_ENDPOINTS}"
        )
    endpoints = tuple(reader.short_str("endpoint", MAX_ENDPOINT_LEN) for _ in range(count))

    count = reader.byte()
    if count > MAX_BEACON_DOCS:
        raise OversizedFrameError(f"beacon lists {count} docs, over the limit of {MAX_BEACON_DOCS}")
    digests: dict[str, bytes] = {}
    for _ in range(count):
        doc = reader.short_str("doc id", MAX_DOC_ID_LEN)
        if doc in digests:
            raise MalformedFrameError("beacon lists a doc twice")
        digests[doc] = reader.take(DIGEST_SIZE)

    delta: tuple[str, bytes] | None = None
    if reader.take(1) != b"\x00":
        reader.pos -= 1
        doc = reader.short_str("doc id", MAX_DOC_ID_LEN)
        size = int.from_bytes(reader.take(2), "big")
        delta = (doc, reader.take(size))
        if len(data) + FRAME_OVERHEAD > DATAGRAM_BUDGET:
            raise OversizedFrameError("beacon with a delta is over the datagram budget")
    if reader.pos != len(data):
        raise MalformedFrameError(f"beacon has {len(data) - reader.pos} trailing bytes")
    return Beacon(endpoints, digests, delta)
