"""Doc digests for anti-entropy: 8 bytes that are equal exactly when two replicas are equal.

A Yjs state vector counts inserted items per client but says nothing about deletions, so two
replicas that differ only by a delete (a lost "delete node" datagram) have equal state
vectors. The digest therefore covers the state vector *and* the delete set. Yrs encodes both
in hash-map order, so each is brought into a canonical form first: clients sorted, empty
entries dropped, delete ranges sorted and merged.

Both inputs are nothing but lib0 varints, so each is read in one pass over its bytes
(:func:`_read_varints`) rather than one call per number: a digest walks every client that
ever wrote to the doc, and the sync engine takes one after every change it compares.
"""

from __future__ import annotations

import hashlib

from ..errors import MalformedFrameError

__all__ = ["DIGEST_SIZE", "doc_digest", "read_state_vector", "update_start"]

#: Bytes of a doc digest: 64 bits make an accidental match between two different replicas
#: of one doc (the only comparison ever made) vanishingly unlikely.
DIGEST_SIZE = 8

_PERSON = b"krill doc v1"
#: A varint longer than this cannot hold a 64-bit number.
_MAX_VARINT_BYTES = 10
_MAX_SHIFT = 7 * _MAX_VARINT_BYTES


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, _MAX_SHIFT, 7):
        if pos >= len(data):
            raise MalformedFrameError("a varint runs past the end of the buffer")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise MalformedFrameError("a varint is longer than 10 bytes")


def _read_varints(data: bytes) -> list[int]:
    """Return every varint of ``data`` in order; the buffer must end with a whole one."""
    values: list[int] = []
    append = values.append
    value = shift = 0
    for byte in data:
        if byte < 0x80:
            append(value | (byte << shift) if shift else byte)
            value = shift = 0
        else:
            value |= (byte & 0x7F) << shift
            shift += 7
            if shift >= _MAX_SHIFT:
                raise MalformedFrameError("a varint is longer than 10 bytes")
    if shift:
        raise MalformedFrameError("a varint runs past the end of the buffer")
    return values


def _put_all(out: bytearray, values: list[int]) -> None:
    for value in values:
        if value < 0x80:
            out.append(value)
            continue
        rest = value
        while rest >= 0x80:
            out.append((rest & 0x7F) | 0x80)
            rest >>= 7
        out.append(rest)


def read_state_vector(sv: bytes) -> dict[int, int]:
    """Decode a Yjs v1 state vector into client id -> clock.

    Raises:
        MalformedFrameError: the bytes are not a well-formed state vector.
    """
    values = _read_varints(sv)
    if not values:
        raise MalformedFrameError("a varint runs past the end of the buffer")
    count = values[0]
    if count > len(sv):
        raise MalformedFrameError("a state vector announces more entries than it holds")
    if len(values) < 1 + 2 * count:
        raise MalformedFrameError("a varint runs past the end of the buffer")
    if len(values) > 1 + 2 * count:
        raise MalformedFrameError("a state vector has trailing bytes")
    return dict(zip(values[1::2], values[2::2], strict=True))


def _read_delete_set(update: bytes) -> dict[int, list[tuple[int, int]]]:
    # A diff against the doc's own state vector holds no structs ("0 clients"), only the
    # delete set: clients, then per client its (clock, length) ranges.
    values = _read_varints(update)
    if len(values) < 2:
        raise MalformedFrameError("a varint runs past the end of the buffer")
    if values[0] != 0:
        raise MalformedFrameError("expected an update without structs")
    ranges: dict[int, list[tuple[int, int]]] = {}
    pos = 2
    for _ in range(min(values[1], len(update))):
        if pos + 2 > len(values):
            raise MalformedFrameError("a varint runs past the end of the buffer")
        client, count = values[pos], values[pos + 1]
        pos += 2
        end = pos + 2 * min(count, len(update))
        if end > len(values):
            raise MalformedFrameError("a varint runs past the end of the buffer")
        found = ranges.setdefault(client, [])
        found.extend(zip(values[pos:end:2], values[pos + 1 : end : 2], strict=True))
        pos = end
    return ranges


def doc_digest(state_vector: bytes, delete_set_update: bytes) -> bytes:
    """Return the digest of a replica.

    Args:
        state_vector: the replica's state vector (``HostDoc.state_vector()``).
        delete_set_update: the replica's diff against its own state vector, which carries
            only its delete set (``HostDoc.diff(HostDoc.state_vector())``).

    Raises:
        MalformedFrameError: either input is not what it should be.
    """
    clocks = read_state_vector(state_vector)
    entries = sorted((c, k) for c, k in clocks.items() if k)
    numbers = [len(entries)]
    for client, clock in entries:
        numbers.append(client)
        numbers.append(clock)

    deletes = _read_delete_set(delete_set_update)
    merged: list[tuple[int, list[tuple[int, int]]]] = []
    for client in sorted(deletes):
        spans: list[tuple[int, int]] = []
        for start, length in sorted(deletes[client]):
            if length == 0:
                continue
            if spans and start <= spans[-1][0] + spans[-1][1]:
                first, size = spans[-1]
                spans[-1] = (first, max(size, start + length - first))
            else:
                spans.append((start, length))
        if spans:
            merged.append((client, spans))
    numbers.append(len(merged))
    for client, spans in merged:
        numbers.append(client)
        numbers.append(len(spans))
        for start, length in spans:
            numbers.append(start)
            numbers.append(length)

    canonical = bytearray()
    _put_all(canonical, numbers)
    return hashlib.blake2b(canonical, digest_size=DIGEST_SIZE, person=_PERSON).digest()


def update_start(update: bytes) -> tuple[int, int] | None:
    """Return the client and clock a Yjs v1 update's first section begins at (None if the
    update holds no structs).

    A clock past what a replica holds of that client means the update depends on structs
    the replica lacks: Yrs would integrate it anyway and paper over the gap, so a caller
    should fetch a full diff instead. Only the first section is read (finding the next
    would mean decoding every struct); updates of one peer's transaction have one section.

    Raises:
        MalformedFrameError: the update's header cannot be read.
    """
    sections, pos = _varint(update, 0)
    if sections == 0:
        return None
    _structs, pos = _varint(update, pos)
    client, pos = _varint(update, pos)
    first_clock, pos = _varint(update, pos)
    return client, first_clock
