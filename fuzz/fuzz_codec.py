"""Fuzz target for the frame and beacon decoders, run outside CI.

Property: for any input, the compiled codec and its twin give the same outcome (the same
fields, or the same error type and message), and the only errors are FrameError subclasses.

With atheris installed (``pip install atheris``) this is a coverage-guided libFuzzer target;
the twin's Python code is instrumented, so coverage follows the checks the decoders make::

    .venv/bin/python fuzz/fuzz_codec.py -runs=1000000 fuzz/corpus

Without atheris it falls back to a seeded mutation loop over valid frames::

    .venv/bin/python fuzz/fuzz_codec.py --runs 1000000 [--seed N]

The first input byte picks a mode, so the fuzzer also gets past the MAC check: mode bit 0
set re-signs the rest with the fuzzing key before decoding, letting mutated headers, doc ids
and payloads reach every step after the MAC.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from krill_crdt.errors import FrameError

try:
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError:  # the fallback loop below needs nothing else
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from krill_crdt._core import _codec_py as twin
else:
    from krill_crdt._core import _codec_py as twin
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
        raise AssertionError(f"{name}: compiled {ours!r} != twin {theirs!r}")
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


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(6)
        if action == 0 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif action == 1 and out:
            out[rng.randrange(len(out))] = rng.choice((0, 1, 0x3F, 0x40, 0x7F, 0x80, 0xFF))
        elif action == 2:
            del out[rng.randint(0, len(out)) :]
        elif action == 3:
            out += rng.randbytes(rng.randint(1, 16))
        elif action == 4 and len(out) > 10:
            # Lengths live at offsets 5..9: aim at them often.
            out[rng.randint(5, 9)] = rng.randrange(256)
        elif out:
            start = rng.randrange(len(out))
            del out[start : start + rng.randint(1, 8)]
    if out:
        out[0] = rng.randrange(4)
    return bytes(out)


def run_fallback(runs: int, seed: int) -> None:
    rng = random.Random(seed)
    pool = seeds()
    start = time.perf_counter()
    for i in range(1, runs + 1):
        if rng.random() < 0.05:
            data = rng.randbytes(rng.randint(0, 80))
        else:
            data = _mutate(rng, rng.choice(pool))
        check_one(data)
        if i % 200_000 == 0:
            print(f"{i} inputs, {time.perf_counter() - start:.1f} s", flush=True)
    print(f"done: {runs} inputs in {time.perf_counter() - start:.1f} s, no disagreement")


def main() -> None:
    if atheris is not None and "--runs" not in sys.argv:
        corpus = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
        for directory in corpus:
            path = Path(directory)
            path.mkdir(parents=True, exist_ok=True)
            for i, seed in enumerate(seeds()):
                (path / f"seed-{i:03d}").write_bytes(seed)
        atheris.Setup(sys.argv, check_one)
        atheris.Fuzz()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run_fallback(args.runs, args.seed)


if __name__ == "__main__":
    main()
