"""Doc digests for anti-entropy: 8 bytes that are equal exactly when two replicas are equal.

A Yjs state vector counts inserted items per client but says nothing about deletions, so two
replicas that differ only by a delete (a lost "delete node" datagram) have equal state
vectors. The digest therefore covers the state vector *and* the delete set. Yrs encodes both
in hash-map order, so each is brought into a canonical form first: clients sorted, empty
entries dropped, delete ranges sorted and merged.
"""

from __future__ import annotations

import hashlib

from ..errors import MalformedFrameError

__all__ = ["DIGEST_SIZE", "doc_digest", "read_state_vector", "starts_after"]

#: Bytes of a doc digest: 64 bits make an accidental match between two different replicas
#: of one doc (the only comparison ever made) vanishingly unlikely.
DIGEST_SIZE = 8

_PERSON = b"krill doc v1"
#: A varint longer than this cannot hold a 64-bit number.
_MAX_VARINT_BYTES = 10


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
        if pos >= len(data):
            raise MalformedFrameError("a varint runs past the end of the buffer")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise MalformedFrameError("a varint is longer than 10 bytes")


def _put(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def read_state_vector(sv: bytes) -> dict[int, int]:
    """Decode a Yjs v1 state vector into client id -> clock.

    Raises:
        MalformedFrameError: the bytes are not a well-formed state vector.
    """
    count, pos = _varint(sv, 0)
    if count > len(sv):
        raise MalformedFrameError("a state vector announces more entries than it holds")
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = _varint(sv, pos)
        clock, pos = _varint(sv, pos)
        clocks[client] = clock
    if pos != len(sv):
        raise MalformedFrameError("a state vector has trailing bytes")
    return clocks


def _read_delete_set(update: bytes) -> dict[int, list[tuple[int, int]]]:
    # A diff against the doc's own state vector holds no structs ("0 clients"), only the
    # delete set: clients, then per client its (clock, length) ranges.
    structs, pos = _varint(update, 0)
    if structs != 0:
        raise MalformedFrameError("expected an update without structs")
    clients, pos = _varint(update, pos)
    ranges: dict[int, list[tuple[int, int]]] = {}
    for _ in range(min(clients, len(update))):
        client, pos = _varint(update, pos)
        count, pos = _varint(update, pos)
        found = ranges.setdefault(client, [])
        for _ in range(min(count, len(update))):
            clock, pos = _varint(update, pos)
            length, pos = _varint(update, pos)
            found.append((clock, length))
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
    canonical = bytearray()
    clocks = sorted((c, k) for c, k in read_state_vector(state_vector).items() if k)
    _put(canonical, len(clocks))
    for client, clock in clocks:
        _put(canonical, client)
        _put(canonical, clock)

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
    _put(canonical, len(merged))
    for client, spans in merged:
        _put(canonical, client)
        _put(canonical, len(spans))
        for start, length in spans:
            _put(canonical, start)
            _put(canonical, length)
    return hashlib.blake2b(canonical, digest_size=DIGEST_SIZE, person=_PERSON).digest()


def starts_after(update: bytes, clocks: dict[int, int]) -> bool:
    """Tell whether an update begins past what a replica holds of its first client.

    A Yjs v1 update lists, per client, a run of structs and the clock of the first. If that
    clock is beyond the replica's clock for the client, the update depends on structs the
    replica lacks. Yrs would integrate it anyway and paper over the gap, which leaves the
    doc's change events unreliable; the caller should fetch a full diff instead.

    Only the first client section is read: finding the next would mean decoding every
    struct. Updates made by one peer's transaction have a single section.

    Raises:
        MalformedFrameError: the update's header cannot be read.
    """
    sections, pos = _varint(update, 0)
    if sections == 0:
        return False
    _structs, pos = _varint(update, pos)
    client, pos = _varint(update, pos)
    first_clock, pos = _varint(update, pos)
    return first_clock > clocks.get(client, 0)
