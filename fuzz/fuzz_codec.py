"""Fuzz target: the frame decoders (``decode_frame``, ``decode_frame_unverified``,
``peek_header``), compiled and twin.

Property: for any input, the compiled codec and its twin give the same outcome (the same
fields, or the same error type and message), the only errors are FrameError subclasses, and a
frame that decodes with the key encodes back to exactly its input bytes.

Run it through the common runner (coverage-guided under atheris when installed)::

    .venv/bin/python -m fuzz.run codec --runs 1000000

The first input byte picks a mode, so the fuzzer also gets past the MAC check: mode bit 0
set re-signs the rest with the fuzzing key before decoding, letting mutated headers, doc ids
and payloads reach every step after the MAC.
"""

from __future__ import annotations

import hashlib
import importlib
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):  # run as a script: make the project and fuzz/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.common import ContractError, Target
from krill_crdt._core import _codec_py as twin
from krill_crdt.errors import FrameError

compiled = importlib.import_module("krill_crdt._core._codec_c")

KEY = bytes(range(32))
#: Mode bit: re-sign the input so it passes the MAC.
RESIGN = 0x01
#: Mode bit: also decode the payload of a frame that decodes as a beacon.
BEACON = 0x02


def _outcome(call: Callable[..., object], *args: object) -> tuple[str, object]:
    try:
        result = call(*args)
    except FrameError as exc:
        return type(exc).__name__, str(exc)
    if isinstance(result, tuple):
        return "ok", tuple(result)
    names = ("kind", "flags", "origin", "swarm", "seq", "ts_ms", "doc", "payload")
    if all(hasattr(result, name) for name in names):
        return "ok", tuple(getattr(result, name) for name in names)
    return "ok", (getattr(result, "endpoints", None), getattr(result, "digests", None))


def _same(name: str, *args: object) -> tuple[str, object]:
    ours = _outcome(getattr(compiled, name), *args)
    theirs = _outcome(getattr(twin, name), *args)
    if ours != theirs:
        raise ContractError(f"{name}: compiled and twin disagree\n{ours!r} != {theirs!r}")
    return ours


def _resign(body: bytes) -> bytes:
    if len(body) < twin.MAC_SIZE:
        return body
    signed = body[: -twin.MAC_SIZE]
    mac = hashlib.blake2b(signed, key=KEY, digest_size=twin.MAC_SIZE, person=twin.MAC_PERSON)
    return signed + mac.digest()


def check_one(data: bytes) -> None:
    """Run every decoder of both implementations on one input; raise on any disagreement."""
    if not data:
        _same("decode_frame", data, KEY)
        return
    mode, data = data[0], data[1:]
    if mode & RESIGN:
        data = _resign(data)
    verdict = _same("decode_frame", data, KEY)
    if verdict[0] == "ok":
        kind, flags, origin, swarm, seq, ts_ms, doc, payload = cast("tuple[Any, ...]", verdict[1])
        again = twin.encode_frame(kind, origin, swarm, seq, ts_ms, doc, payload, KEY, flags)
        if again != data:
            raise ContractError("a decoded frame does not encode back to its bytes")
    _same("decode_frame_unverified", data)
    _same("peek_header", data)
    if mode & BEACON:
        if verdict[0] == "ok":
            _same("decode_beacon", verdict[1][-1])  # type: ignore[index]
        else:
            _same("decode_beacon", data)


def seeds() -> list[bytes]:
    """Valid frames of every kind plus beacons, each under every mode."""
    rng = random.Random(7)
    frames = []
    beacon = twin.encode_beacon(
        ["http://10.0.0.7:8442", "http://[fe80::1]:8442"],
        {"host-a": b"\x01" * 8, "host-b": b"\x02" * 8},
        ("host-a", b"\0\0"),
    )
    for kind in twin.Kind:
        doc = "" if kind in (twin.Kind.BEACON, twin.Kind.PRESENCE) else "host-a"
        payload = beacon if kind is twin.Kind.BEACON else rng.randbytes(rng.randint(0, 200))
        frames.append(twin.encode_frame(kind, rng.randbytes(16), 7, kind, 1, doc, payload, KEY))
    return [bytes([mode]) + frame for frame in frames for mode in range(4)]


TARGET = Target("codec", check_one, seeds, max_len=2048)

if __name__ == "__main__":
    from fuzz.run import main

    sys.exit(main(["codec", *sys.argv[1:]]))
