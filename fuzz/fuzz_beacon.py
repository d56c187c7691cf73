"""Fuzz target: beacon payloads and the state vector digests they carry.

Property: ``decode_beacon`` and ``state_vector_digest`` of the compiled codec and of its twin
give the same outcome for any input, refuse only with FrameError subclasses, and a beacon
that decodes encodes back to exactly its input bytes.

The first byte picks what the rest is: 0 a beacon payload as such, 1 a state vector for the
digest, 2 a beacon payload that arrives inside a BEACON frame signed with the fuzzing key
(the path a multicast datagram takes).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):  # run as a script: make the project and fuzz/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.common import ContractError, Target
from krill_crdt._core import _codec_py as twin
from krill_crdt.errors import FrameError

compiled = importlib.import_module("krill_crdt._core._codec_c")

KEY = bytes(range(32))
ORIGIN = bytes(range(16))

PAYLOAD, DIGEST, IN_FRAME = 0, 1, 2


def _beacon(impl: object, payload: bytes) -> tuple[str, object]:
    try:
        beacon = impl.decode_beacon(payload)  # type: ignore[attr-defined]
    except FrameError as exc:
        return type(exc).__name__, str(exc)
    return "ok", (beacon.endpoints, beacon.digests, beacon.delta)


def _digest(impl: object, sv: bytes) -> tuple[str, object]:
    try:
        return "ok", impl.state_vector_digest(sv)  # type: ignore[attr-defined]
    except FrameError as exc:
        return type(exc).__name__, str(exc)


def _check_beacon(payload: bytes) -> None:
    ours, theirs = _beacon(compiled, payload), _beacon(twin, payload)
    if ours != theirs:
        raise ContractError(f"decode_beacon: compiled and twin disagree\n{ours!r} != {theirs!r}")
    if ours[0] != "ok":
        return
    endpoints, digests, delta = cast("tuple[Any, ...]", ours[1])
    again = twin.encode_beacon(endpoints, digests, delta)
    if again != payload:
        raise ContractError("a decoded beacon does not encode back to its bytes")


def check_one(data: bytes) -> None:
    """Decode one input as the mode in its first byte says; raise on a broken property."""
    mode, rest = (data[0] % 3, data[1:]) if data else (PAYLOAD, b"")
    if mode == DIGEST:
        ours, theirs = _digest(compiled, rest), _digest(twin, rest)
        if ours != theirs:
            raise ContractError(
                f"state_vector_digest: compiled and twin disagree\n{ours!r} != {theirs!r}"
            )
        return
    if mode == IN_FRAME:
        frame = twin.encode_frame(twin.Kind.BEACON, ORIGIN, 7, 1, 1, "", rest[:60000], KEY)
        payload = compiled.decode_frame(frame, KEY).payload
        if payload != rest[:60000]:
            raise ContractError("a signed beacon frame does not give back its payload")
        rest = payload
    _check_beacon(rest)


def seeds() -> list[bytes]:
    """Beacons with and without endpoints, docs and an inline delta; state vectors."""
    beacons = [
        twin.encode_beacon([], {}),
        twin.encode_beacon(["http://127.0.0.1:8442"], {"host-a": b"\x01" * 8}),
        twin.encode_beacon(
            ["http://10.0.0.7:8442", "https://[fe80::1]:8442"],
            {"host-a": b"\x01" * 8, "host-b": b"\x02" * 8, "ü-host": b"\xff" * 8},
            ("host-a", b"\x01\x01\x9a\x02\x00"),
        ),
        twin.encode_beacon(["http://x:1"], {}, ("host-z", b"")),
    ]
    vectors = [b"\x00", b"\x01\x05\x03", b"\x02\x9a\x02\x07\x01\x00", b"\x01\xff\xff\x03\x01"]
    return (
        [bytes([PAYLOAD]) + b for b in beacons]
        + [bytes([IN_FRAME]) + b for b in beacons]
        + [bytes([DIGEST]) + v for v in vectors]
    )


TARGET = Target("beacon", check_one, seeds, max_len=2048)

if __name__ == "__main__":
    from fuzz.run import main

    sys.exit(main(["beacon", *sys.argv[1:]]))
