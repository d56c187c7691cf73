"""Benchmark cases of the wire codec and the replay window.

``decode`` and ``decode_verify`` decode the same 1000 frames, as a peer receives them: UPDATE
frames from 16 origins about 8 host docs (doc ids of 36 characters, the length of a UUID),
with payloads of 32-256 bytes, the size of small Yjs updates; whole frames are 112-336
bytes, one to three BLAKE2b blocks. ``decode`` skips the MAC, ``decode_verify`` checks it.

``dedup`` feeds a replay window the (origin, seq) stream a peer sees from 64 origins when
every frame reaches it over more than one path: numbers mostly in order, copies of recent
ones, frames arriving late within the window and a few far behind it.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from functools import lru_cache
from types import ModuleType

from krill_crdt.benchmarks import Batch, Case, Variant

__all__ = ["CASES", "KEY", "frame_batch", "seq_stream"]

#: Fixed seed: every run measures the same inputs, so figures are comparable across runs.
SEED = 20_260_101
#: Swarm key of the benchmark frames.
KEY = bytes(range(32))
#: Frames per batch: enough that timer overhead vanishes, few enough to stay in cache.
FRAMES = 1000
#: Checks per dedup batch.
CHECKS = 20_000
#: Origins in the dedup stream: a large LAN swarm.
STREAM_ORIGINS = 64


def _module(name: str, kind: str) -> ModuleType:
    # Imported here, not at the top: a missing compiled module must fail only its variant.
    return importlib.import_module(f"krill_crdt._core._{name}_{kind}")


@lru_cache(maxsize=1)
def frame_batch() -> tuple[bytes, ...]:
    """Return the benchmark frames (encoded once with the twin, shared by both variants)."""
    codec = _module("codec", "py")
    rng = random.Random(SEED)
    origins = [rng.randbytes(16) for _ in range(16)]
    docs = [f"{rng.randbytes(4).hex()}-9d2c-4e5f-8a7b-{rng.randbytes(6).hex()}" for _ in range(8)]
    return tuple(
        codec.encode_frame(
            codec.Kind.UPDATE,
            origins[rng.randrange(16)],
            0x6B72696C,
            i + 1,
            1_767_225_600_000 + 250 * i,
            docs[rng.randrange(8)],
            rng.randbytes(rng.randint(32, 256)),
            KEY,
        )
        for i in range(FRAMES)
    )


@lru_cache(maxsize=1)
def seq_stream() -> tuple[tuple[bytes, int], ...]:
    """Return the dedup benchmark stream of (origin, seq) pairs."""
    rng = random.Random(SEED)
    origins = [rng.randbytes(16) for _ in range(STREAM_ORIGINS)]
    latest = [1_000_000 * (i + 1) for i in range(STREAM_ORIGINS)]
    stream: list[tuple[bytes, int]] = []
    for _ in range(CHECKS):
        who = rng.randrange(STREAM_ORIGINS)
        roll = rng.random()
        if roll < 0.70:  # the next frame of that origin
            latest[who] += 1
            seq = latest[who]
        elif roll < 0.90:  # a copy of a recent frame, over another path
            seq = latest[who] - rng.randrange(8)
        elif roll < 0.99:  # a frame that was overtaken, still inside the window
            seq = latest[who] - rng.randrange(8, 1000)
        else:  # a replay from far behind the window
            seq = latest[who] - rng.randrange(2000, 100_000)
        stream.append((origins[who], seq))
    return tuple(stream)


def _decode(kind: str, verify: bool) -> Variant:
    def factory() -> Batch:
        frames = frame_batch()
        if verify:
            decode: Callable[..., object] = _module("codec", kind).decode_frame

            def batch() -> int:
                for data in frames:
                    decode(data, KEY)
                return len(frames)

        else:
            decode = _module("codec", kind).decode_frame_unverified

            def batch() -> int:
                for data in frames:
                    decode(data)
                return len(frames)

        return batch

    return factory


def _dedup(kind: str) -> Variant:
    def factory() -> Batch:
        window_type = _module("dedup", kind).ReplayWindow
        stream = seq_stream()

        def batch() -> int:
            # A fresh window each batch, so every batch makes the same decisions.
            check_and_mark = window_type().check_and_mark
            for origin, seq in stream:
                check_and_mark(origin, seq)
            return len(stream)

        return batch

    return factory


CASES: list[Case] = [
    Case(
        "decode",
        "frames/s",
        compiled=_decode("c", verify=False),
        python=_decode("py", verify=False),
        note="UPDATE frames of 112-336 B decoded to Frame objects, MAC not checked",
    ),
    Case(
        "decode_verify",
        "frames/s",
        compiled=_decode("c", verify=True),
        python=_decode("py", verify=True),
        note="the same frames, keyed BLAKE2b MAC checked before decoding",
    ),
    Case(
        "dedup",
        "checks/s",
        compiled=_dedup("c"),
        python=_dedup("py"),
        note="replay window check_and_mark, 64 origins, 30% copies, late and replayed frames",
    ),
]
