"""What every fuzz target shares: the target record, input drawing, findings and two engines.

A target is a ``check_one(data)`` function plus seed inputs. ``check_one`` returns when the
decoder either accepted the input or refused it with an error of the krill family and left
every document as it was; anything else (another exception, a :class:`ContractError` raised by the
target's own checks, a hang) is a finding.

Two engines run a target for a set number of inputs:

* atheris (coverage-guided libFuzzer), when it is installed: ``fuzz.run`` starts one child
  process per target, since libFuzzer ends the process when it is done;
* a seeded mutation loop over the seeds, in process, when atheris is missing.

Both record each distinct finding once (by exception type and the line that raised it),
keeping its shortest input as the reproducer, and go on fuzzing.
"""

from __future__ import annotations

import hashlib
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TypeVar

__all__ = [
    "ContractError",
    "Draw",
    "HangError",
    "Recorder",
    "Target",
    "expect",
    "mutate",
    "run_loop",
    "signature",
]

T = TypeVar("T")

#: Seconds one input may take before it counts as a hang. Every decoder here is linear in
#: its input and inputs stay under a few KiB, so a second is already far beyond normal.
HANG_SECONDS = 10.0


class ContractError(AssertionError):
    """A target's own check failed: the decoder broke the bad-input contract."""


class HangError(Exception):
    """One input ran longer than :data:`HANG_SECONDS` (raised by the loop engine's alarm)."""


@dataclass(frozen=True)
class Target:
    """One fuzz target.

    Attributes:
        name: what ``fuzz.run`` calls it.
        check: runs one input; returns, or raises on a finding.
        seeds: valid inputs to start from, built in code.
        max_len: longest input the engines make.
        per_process: most inputs one atheris process runs before a fresh one takes over
            (with the corpus so far), or 0 for no limit.
    """

    name: str
    check: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    max_len: int = 4096
    per_process: int = 0


def expect(
    call: Callable[[], T], allowed: tuple[type[BaseException], ...]
) -> tuple[T | None, BaseException | None]:
    """Run ``call``; return ``(result, None)``, or ``(None, error)`` for an allowed error.

    Any other exception propagates: that is a finding.
    """
    try:
        return call(), None
    except allowed as exc:
        return None, exc


# --------------------------------------------------------------------------- drawing choices


class Draw:
    """Reads choices from fuzz input bytes, so a structure can be built from any input.

    Reading past the end gives zeros: every input, however short, builds something, and the
    same input always builds the same thing.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        """A number in ``0..n-1`` (``n`` at most 65536)."""
        if n <= 256:
            return self.byte() % n
        return (self.byte() << 8 | self.byte()) % n

    def flag(self) -> bool:
        return self.byte() & 1 == 1

    def choice(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def blob(self, max_len: int) -> bytes:
        size = self.below(max_len + 1)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    def text(self, max_len: int, *, unicode_only: bool = False) -> str:
        """Text of up to ``max_len`` bytes: UTF-8 mostly, sometimes raw code points (controls
        included, and lone surrogates unless ``unicode_only``)."""
        raw = self.blob(max_len)
        if raw[:1] == b"\xff" and not unicode_only:
            points = (
                int.from_bytes(raw[i : i + 3], "big") % 0x110000 for i in range(1, len(raw), 3)
            )
            return "".join(map(chr, points))
        return raw.decode("utf-8", "replace")

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


# --------------------------------------------------------------------------------- mutation

_INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x3F, 0x40, 0x22, 0x5B, 0x7B, 0x0A, 0x0D)


def mutate(rng: random.Random, data: bytes, max_len: int = 4096) -> bytes:
    """A few random edits of ``data``: bit flips, interesting bytes, cuts, inserts, copies."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(7)
        if action == 0 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif action == 1 and out:
            out[rng.randrange(len(out))] = rng.choice(_INTERESTING)
        elif action == 2:
            del out[rng.randint(0, len(out)) :]
        elif action == 3:
            at = rng.randint(0, len(out))
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif action == 4 and out:
            start = rng.randrange(len(out))
            del out[start : start + rng.randint(1, 8)]
        elif action == 5 and out:
            # Copy a run of the input elsewhere: repeats fields, nests structures.
            start = rng.randrange(len(out))
            run = out[start : start + rng.randint(1, 32)]
            at = rng.randint(0, len(out))
            out[at:at] = run
        elif out:
            out[0] = rng.randrange(256)
    return bytes(out[:max_len])


# ---------------------------------------------------------------------------------- findings


def signature(exc: BaseException) -> str:
    """A short name for a finding: what was raised and where, so repeats count once."""
    if isinstance(exc, ContractError):
        return f"ContractError: {str(exc).splitlines()[0][:120]}"
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "krill_crdt" in f.filename] or frames
    where = f" at {Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else ""
    return f"{type(exc).__name__}{where}"


class Recorder:
    """Keeps each distinct finding once, with its shortest input, under ``directory``."""

    def __init__(self, target: str, directory: Path) -> None:
        self.target = target
        self.directory = directory
        self.found: dict[str, int] = {}

    def record(self, exc: BaseException, data: bytes) -> None:
        sig = signature(exc)
        known = self.found.get(sig)
        if known is not None and known <= len(data):
            return
        first = known is None
        self.found[sig] = len(data)
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = self.directory / f"{self.target}-{hashlib.sha1(sig.encode()).hexdigest()[:10]}"
        stem.with_suffix(".bin").write_bytes(data)
        text = "".join(traceback.format_exception(exc))
        stem.with_suffix(".txt").write_text(f"{sig}\ninput: {data!r}\n\n{text}")
        if first:
            print(f"[{self.target}] finding: {sig} -> {stem}.bin", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- engines


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def ring(signum: int, frame: FrameType | None) -> None:
        raise HangError(f"one input ran over {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Report:
    """What one engine run did."""

    target: str
    inputs: int
    seconds: float
    findings: dict[str, int]
    engine: str


def run_loop(target: Target, runs: int, seed: int, findings_dir: Path) -> Report:
    """Run ``target`` on ``runs`` inputs mutated from its seeds, in this process."""
    rng = random.Random(seed)
    pool = target.seeds()
    recorder = Recorder(target.name, findings_dir)
    start = time.perf_counter()
    with _alarm(HANG_SECONDS):
        for i in range(runs):
            if i < len(pool):
                data = pool[i]
            elif rng.random() < 0.05:
                data = rng.randbytes(rng.randint(0, 64))
            else:
                data = mutate(rng, rng.choice(pool), target.max_len)
                if rng.random() < 0.3:
                    data = mutate(rng, data, target.max_len)
            signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
            try:
                target.check(data)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                recorder.record(exc, data)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if (i + 1) % 100_000 == 0:
                took = time.perf_counter() - start
                print(f"[{target.name}] {i + 1} inputs, {took:.1f} s", file=sys.stderr, flush=True)
    return Report(target.name, runs, time.perf_counter() - start, recorder.found, "loop")


def guarded(target: Target, recorder: Recorder) -> Callable[[bytes], None]:
    """``target.check`` that records findings instead of ending the run (for libFuzzer)."""

    def one_input(data: bytes) -> None:
        try:
            target.check(data)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            recorder.record(exc, data)

    return one_input
