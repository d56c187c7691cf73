"""Fuzz target: what a serial device sends, cut into lines and parsed as a Serial Device node
says (``LineSplitter`` and ``LineParser`` of ``krill_crdt.runtime.hardware.serial``).

Properties, for any bytes and any way they are split into reads:

* the lines and overlong-line marks do not depend on how the bytes were split into reads
  (a mark's head may hold fewer bytes when they came in small reads);
* no line is longer than the limit or holds the terminator, and the splitter never buffers
  more than the limit plus a terminator's length;
* each line parses to a value or raises LineParseError, nothing else, the way the link reads
  it; a number is finite and a text value has no control characters.

The first two bytes pick the parse rule (and pattern), the terminator, the line limit and
how the rest is split into reads; the rest is the byte stream.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project and fuzz/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.common import ContractError, Target, expect
from krill_crdt.runtime.hardware.serial import (
    MAX_LINE_BYTES,
    LineParseError,
    LineParser,
    LineSplitter,
    OverlongLine,
)

TERMINATORS = (b"\n", b"\r\n", b"\r")
LIMITS = (MAX_LINE_BYTES, 1, 2, 8, 64)
#: Parsers as Serial Device nodes configure them: the number and text rules, and patterns
#: of the kind the regex rule is given (none with nested repeats: those are a documented
#: limit of the rule, not a parsing fault).
PARSERS = (
    LineParser("number"),
    LineParser("text"),
    LineParser("regex", r"T=(-?\d+(?:\.\d+)?)"),
    LineParser("regex", r"^(?P<value>[A-Z]+):"),
    LineParser("regex", r"(\w*)"),
    LineParser("regex", r"\$GPGGA,([^,]*),"),
)


def _split(stream: bytes, sizes: int) -> list[bytes]:
    """Cut ``stream`` into reads whose sizes cycle through a pattern picked by ``sizes``."""
    pattern = [1 + (sizes >> shift) % 7 for shift in (0, 3, 5)]
    reads, pos, i = [], 0, 0
    while pos < len(stream):
        size = pattern[i % 3] if sizes & 0x80 else len(stream)
        reads.append(stream[pos : pos + size])
        pos += size
        i += 1
    return reads


def _feed(splitter: LineSplitter, reads: list[bytes], term: bytes) -> list[bytes | OverlongLine]:
    out: list[bytes | OverlongLine] = []
    for chunk in reads:
        out.extend(splitter.feed(chunk))
        if splitter.buffered > splitter.max_bytes + len(term):
            raise ContractError(f"the splitter holds more than a line\n{splitter.buffered}")
    return out


def _same_item(one: bytes | OverlongLine, other: bytes | OverlongLine) -> bool:
    """Equal lines, or two marks of the same overlong line. A mark shows the bytes that had
    arrived when the line crossed the limit, so only one head need be a prefix of the other."""
    if isinstance(one, OverlongLine) and isinstance(other, OverlongLine):
        return one.head.startswith(other.head) or other.head.startswith(one.head)
    return one == other


def _parse(parser: LineParser, raw: bytes) -> None:
    """Parse one line the way the link does: decode, skip blank lines, then the rule."""
    text, _ = expect(lambda: parser.decode(raw), (LineParseError,))
    if text is None or not text.strip():
        return
    value, _ = expect(lambda: parser.parse(text), (LineParseError,))
    if isinstance(value, float) and not math.isfinite(value):
        raise ContractError(f"a number line gave a value that is not finite\n{value!r}")
    if parser.rule == "text" and isinstance(value, str) and any(ord(c) < 0x20 for c in value):
        raise ContractError(f"a text line kept a control character\n{value!r}")


def check_one(data: bytes) -> None:
    """Split and parse one byte stream; raise on a finding."""
    setup, sizes, stream = (data[0], data[1], data[2:]) if len(data) > 1 else (0, 0, data)
    parser = PARSERS[setup % len(PARSERS)]
    term = TERMINATORS[(setup >> 3) % len(TERMINATORS)]
    limit = LIMITS[(setup >> 5) % len(LIMITS)]

    whole = _feed(LineSplitter(term, limit), [stream], term)
    pieces = _feed(LineSplitter(term, limit), _split(stream, sizes), term)
    if len(whole) != len(pieces) or not all(map(_same_item, whole, pieces)):
        raise ContractError("the lines depend on how the bytes were split into reads")
    for item in whole:
        if isinstance(item, OverlongLine):
            continue
        if len(item) > limit or term in item:
            raise ContractError("a line is over the limit or holds the terminator")
        _parse(parser, item)
    # Parse the stream as one line too: the parser alone sees every byte then.
    _parse(parser, stream[:MAX_LINE_BYTES])


def seeds() -> list[bytes]:
    """Readings of every rule, with each terminator and a device that never ends a line."""
    return [
        bytes([0, 0x81]) + b"21.5\n-3 \xc2\xb0C\n1013.2hPa\n\n55 %\n",
        bytes([1 | 1 << 3, 0x92]) + b"status ok\r\nready\r\n",
        bytes([2 | 2 << 3, 0x83]) + b"T=21.5\rT=-4\r",
        bytes([3, 0x80]) + b"TEMP: 22\nHUM: 40\n",
        bytes([5, 0x85]) + b"$GPGGA,123519,4807.038,N\n",
        bytes([0 | 3 << 5, 0x84]) + b"123456789\n12\n",
        bytes([1, 0x00]) + b"x" * 1500 + b"\nok\n",
    ]


TARGET = Target("serial", check_one, seeds, max_len=4096)

if __name__ == "__main__":
    from fuzz.run import main

    sys.exit(main(["serial", *sys.argv[1:]]))
