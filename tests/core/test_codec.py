"""The wire codec: frame layout, every error and limit, beacons, and compiled == twin."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krill_crdt.errors import (
    BadMacError,
    FrameError,
    MalformedFrameError,
    OversizedFrameError,
    TruncatedFrameError,
    UnknownVersionError,
)
from tests.conftest import hot_module

#: Examples per property; raise it for a long run (KRILL_FUZZ_EXAMPLES=100000).
EXAMPLES = int(os.environ.get("KRILL_FUZZ_EXAMPLES", "300"))
PROPERTY = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

WIRE_DOC = Path(__file__).resolve().parents[2] / "docs" / "wire.md"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ORIGIN = bytes.fromhex("8f3a61c2d49e4b07a5e2c3b1f0d98e17")


@pytest.fixture
def codec(impl_kind: str) -> ModuleType:
    return hot_module("codec", impl_kind)


@pytest.fixture(scope="module")
def both() -> tuple[ModuleType, ModuleType]:
    return hot_module("codec", "c"), hot_module("codec", "py")


def update_frame(codec: ModuleType, payload: object = b"\x00\x00", **fields: object) -> bytes:
    args: dict[str, object] = {
        "kind": codec.Kind.UPDATE,
        "origin": ORIGIN,
        "swarm": 0x6B72696C,
        "seq": 42,
        "ts_ms": 1_767_225_600_000,
        "doc": "host-a",
        "payload": payload,
        "key": KEY,
    }
    args.update(fields)
    return bytes(codec.encode_frame(**args))


def fields(frame: object) -> tuple[object, ...]:
    names = ("kind", "flags", "origin", "swarm", "seq", "ts_ms", "doc", "payload")
    return tuple(getattr(frame, name) for name in names)


def outcome(call: object, *args: object) -> tuple[str, object]:
    """What a call does: ("ok", result fields) or ("error type", message)."""
    try:
        result = call(*args)  # type: ignore[operator]
    except Exception as exc:
        return type(exc).__name__, str(exc)
    if hasattr(result, "payload"):
        return "ok", fields(result)
    return "ok", tuple(result)


# --- the documented worked example ----------------------------------------------------------


def doc_block(marker: str) -> str:
    text = WIRE_DOC.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->(.*?)<!-- /{marker} -->", text, re.S)
    assert match, f"docs/wire.md has no {marker} block"
    return match.group(1)


def test_encoder_produces_the_worked_example_of_the_wire_doc(codec: ModuleType) -> None:
    expected = bytes.fromhex(doc_block("frame-hex").replace("```text", "").replace("```", ""))
    assert update_frame(codec) == expected


def test_worked_example_mac_is_plain_keyed_blake2b(codec: ModuleType) -> None:
    frame = update_frame(codec)
    mac = hashlib.blake2b(frame[:-16], key=KEY, digest_size=16, person=b"krill frame v1")
    assert frame[-16:] == mac.digest()


def test_worked_example_decodes_to_its_fields(codec: ModuleType) -> None:
    frame = codec.decode_frame(update_frame(codec), KEY)
    assert fields(frame) == (
        codec.Kind.UPDATE,
        0,
        ORIGIN,
        0x6B72696C,
        42,
        1_767_225_600_000,
        "host-a",
        b"\x00\x00",
    )


def test_state_vector_digest_matches_the_wire_doc_for_both_entry_orders(
    codec: ModuleType,
) -> None:
    expected = bytes.fromhex(doc_block("sv-digest").strip("` "))
    assert codec.state_vector_digest(bytes.fromhex("02ac02010703")) == expected
    assert codec.state_vector_digest(bytes.fromhex("020703ac0201")) == expected


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [1, 2, 3, 4, 5, 6])
def test_every_kind_round_trips(codec: ModuleType, kind: int) -> None:
    data = update_frame(codec, b"payload", kind=kind, flags=codec.FLAG_RELAYED)
    frame = codec.decode_frame(data, KEY)
    assert frame.kind == kind
    assert frame.kind is codec.Kind(kind)
    assert frame.flags == codec.FLAG_RELAYED
    assert frame.payload == b"payload"


def test_field_extremes_round_trip(codec: ModuleType) -> None:
    data = update_frame(
        codec,
        b"",
        swarm=codec.MAX_SWARM,
        seq=codec.MAX_SEQ,
        ts_ms=codec.MAX_TS_MS,
        doc="é" * 32,
        flags=codec.KNOWN_FLAGS,
    )
    frame = codec.decode_frame(data, KEY)
    assert (frame.swarm, frame.seq, frame.ts_ms) == (2**32 - 1, 2**64 - 1, 2**48 - 1)
    assert frame.doc == "é" * 32
    assert len(data) == codec.FRAME_OVERHEAD + 64


def test_beacon_and_presence_frames_may_have_no_doc(codec: ModuleType) -> None:
    for kind in (codec.Kind.BEACON, codec.Kind.PRESENCE):
        assert codec.decode_frame(update_frame(codec, kind=kind, doc=""), KEY).doc == ""


def test_decoder_accepts_bytearray_and_memoryview(codec: ModuleType) -> None:
    data = update_frame(codec)
    expected = codec.decode_frame(data, KEY)
    assert codec.decode_frame(bytearray(data), KEY) == expected
    assert codec.decode_frame(memoryview(data), KEY) == expected
    assert codec.decode_frame_unverified(bytearray(data)) == expected


def test_frame_encode_gives_the_same_bytes_as_encode_frame(codec: ModuleType) -> None:
    data = update_frame(codec, flags=codec.FLAG_RESPONSE)
    assert codec.decode_frame(data, KEY).encode(KEY) == data


def test_unverified_decode_ignores_the_mac(codec: ModuleType) -> None:
    data = update_frame(codec)
    assert codec.decode_frame_unverified(data) == codec.decode_frame(data, KEY)
    forged = data[:-1] + bytes([data[-1] ^ 1])
    assert codec.decode_frame_unverified(forged) == codec.decode_frame(data, KEY)


def test_peek_header_reads_the_fixed_fields_from_the_first_44_bytes(codec: ModuleType) -> None:
    data = update_frame(codec, b"x" * 100, seq=7)
    header = codec.peek_header(data[: codec.HEADER_SIZE])
    assert header == (codec.Kind.UPDATE, 0, ORIGIN, 0x6B72696C, 7, 1_767_225_600_000, len(data))
    assert header.size == len(data)
    assert header.seq == 7
    with pytest.raises(TruncatedFrameError):
        codec.peek_header(data[: codec.HEADER_SIZE - 1])


# --- the Frame value ------------------------------------------------------------------------


def test_frames_compare_and_hash_by_value(codec: ModuleType) -> None:
    one = codec.decode_frame(update_frame(codec), KEY)
    two = codec.Frame(
        codec.Kind.UPDATE, ORIGIN, 0x6B72696C, 42, 1_767_225_600_000, "host-a", b"\0\0"
    )
    assert one == two
    assert hash(one) == hash(two)
    assert one != codec.decode_frame(update_frame(codec, seq=43), KEY)
    assert one != "not a frame"


def test_frames_are_immutable(codec: ModuleType) -> None:
    frame = codec.decode_frame(update_frame(codec), KEY)
    with pytest.raises(AttributeError):
        frame.seq = 1


def test_frames_pickle(codec: ModuleType) -> None:
    frame = codec.decode_frame(update_frame(codec), KEY)
    assert pickle.loads(pickle.dumps(frame)) == frame


def test_frame_repr_gives_the_payload_size_not_its_bytes(codec: ModuleType) -> None:
    frame = codec.decode_frame(update_frame(codec, b"SECRET-PAYLOAD"), KEY)
    text = repr(frame)
    assert "SECRET" not in text
    assert b"SECRET-PAYLOAD".hex() not in text
    assert "<14 bytes>" in text


def test_hash_is_the_same_in_both_implementations(both: tuple[ModuleType, ModuleType]) -> None:
    compiled, twin = both
    data = update_frame(twin)
    assert hash(compiled.decode_frame(data, KEY)) == hash(twin.decode_frame(data, KEY))


# --- each error type ------------------------------------------------------------------------


def test_wrong_key_is_bad_mac(codec: ModuleType) -> None:
    with pytest.raises(BadMacError):
        codec.decode_frame(update_frame(codec), OTHER_KEY)


def test_unknown_version_is_its_own_error(codec: ModuleType) -> None:
    data = bytearray(update_frame(codec))
    data[2] = 2
    with pytest.raises(UnknownVersionError):
        codec.decode_frame(bytes(data), KEY)


def test_unknown_version_is_reported_even_when_the_rest_is_short(codec: ModuleType) -> None:
    with pytest.raises(UnknownVersionError):
        codec.decode_frame(b"KR\x09", KEY)


def test_bad_magic_is_malformed(codec: ModuleType) -> None:
    with pytest.raises(MalformedFrameError, match="magic"):
        codec.decode_frame(b"XX" + update_frame(codec)[2:], KEY)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 43, 44, 59])
def test_frame_shorter_than_header_and_mac_is_truncated(codec: ModuleType, size: int) -> None:
    with pytest.raises(TruncatedFrameError):
        codec.decode_frame(update_frame(codec)[:size], KEY)


def test_frame_shorter_than_announced_is_truncated(codec: ModuleType) -> None:
    with pytest.raises(TruncatedFrameError, match="announces"):
        codec.decode_frame(update_frame(codec, b"abcdef")[:-1], KEY)


def test_trailing_bytes_are_malformed(codec: ModuleType) -> None:
    with pytest.raises(MalformedFrameError, match="more than its header"):
        codec.decode_frame(update_frame(codec) + b"\0", KEY)


@pytest.mark.parametrize("kind", [0, 7, 255])
def test_unknown_kind_is_malformed(codec: ModuleType, kind: int) -> None:
    data = bytearray(update_frame(codec))
    data[3] = kind
    with pytest.raises(MalformedFrameError, match="kind"):
        codec.decode_frame_unverified(bytes(data))


@pytest.mark.parametrize("flags", [0x04, 0x80, 0xFF])
def test_unknown_flag_bits_are_malformed(codec: ModuleType, flags: int) -> None:
    data = bytearray(update_frame(codec))
    data[4] = flags
    with pytest.raises(MalformedFrameError, match="flag"):
        codec.decode_frame_unverified(bytes(data))


def test_doc_kind_without_doc_is_malformed(codec: ModuleType) -> None:
    beacon = bytearray(update_frame(codec, kind=codec.Kind.BEACON, doc=""))
    beacon[3] = codec.Kind.UPDATE
    with pytest.raises(MalformedFrameError, match="needs a doc id"):
        codec.decode_frame_unverified(bytes(beacon))


def test_doc_id_that_is_not_utf8_is_malformed(codec: ModuleType) -> None:
    data = bytearray(update_frame(codec, doc="host-a"))
    data[44] = 0xFF
    with pytest.raises(MalformedFrameError, match="UTF-8"):
        codec.decode_frame_unverified(bytes(data))
    # With the key the MAC check comes first: the change is caught as tampering.
    with pytest.raises(BadMacError):
        codec.decode_frame(bytes(data), KEY)


def test_non_buffer_input_is_a_type_error(codec: ModuleType) -> None:
    with pytest.raises(TypeError):
        codec.decode_frame("not bytes", KEY)


@pytest.mark.parametrize("key", [b"", b"k" * 15, b"k" * 65])
def test_key_of_wrong_length_is_refused(codec: ModuleType, key: bytes) -> None:
    with pytest.raises(ValueError, match="key must be"):
        codec.decode_frame(update_frame(codec), key)
    with pytest.raises(ValueError, match="key must be"):
        update_frame(codec, key=key)


def test_key_that_is_not_bytes_is_a_type_error(codec: ModuleType) -> None:
    with pytest.raises(TypeError):
        codec.decode_frame(update_frame(codec), "k" * 32)


@pytest.mark.parametrize("key_size", [16, 17, 63, 64])
def test_every_allowed_key_size_works(codec: ModuleType, key_size: int) -> None:
    key = bytes(range(key_size))
    assert codec.decode_frame(update_frame(codec, key=key), key).seq == 42


# --- limits ---------------------------------------------------------------------------------


def test_doc_id_at_the_limit_passes_and_one_more_is_oversized(codec: ModuleType) -> None:
    assert codec.decode_frame(update_frame(codec, doc="d" * codec.MAX_DOC_ID_LEN), KEY)
    with pytest.raises(OversizedFrameError):
        update_frame(codec, doc="d" * (codec.MAX_DOC_ID_LEN + 1))
    data = bytearray(update_frame(codec, doc="d" * codec.MAX_DOC_ID_LEN))
    data[5] = codec.MAX_DOC_ID_LEN + 1
    with pytest.raises(OversizedFrameError, match="doc id length"):
        codec.decode_frame_unverified(bytes(data))


def test_payload_length_over_the_limit_is_oversized(codec: ModuleType) -> None:
    data = bytearray(update_frame(codec))
    data[6:10] = (codec.MAX_PAYLOAD_SIZE + 1).to_bytes(4, "big")
    with pytest.raises(OversizedFrameError, match="payload length"):
        codec.decode_frame(bytes(data), KEY)
    data[6:10] = b"\xff\xff\xff\xff"
    with pytest.raises(OversizedFrameError, match="payload length"):
        codec.peek_header(bytes(data))


def test_frame_over_the_size_limit_is_oversized_before_anything_else(codec: ModuleType) -> None:
    with pytest.raises(OversizedFrameError, match="limit"):
        codec.decode_frame(bytes(codec.MAX_FRAME_SIZE + 1), KEY)


def test_largest_frame_round_trips(both: tuple[ModuleType, ModuleType]) -> None:
    compiled, twin = both
    payload = b"\x5a" * (twin.MAX_PAYLOAD_SIZE)
    data = update_frame(compiled, payload, doc="d" * 64)
    assert len(data) == twin.MAX_FRAME_SIZE
    assert update_frame(twin, payload, doc="d" * 64) == data
    assert compiled.decode_frame(data, KEY).payload == payload
    assert twin.decode_frame(data, KEY).payload == payload
    with pytest.raises(OversizedFrameError):
        update_frame(compiled, payload + b"!")
    with pytest.raises(OversizedFrameError):
        update_frame(twin, payload + b"!")


def test_limit_constants_hold_together(codec: ModuleType) -> None:
    assert codec.HEADER_SIZE == 44
    assert codec.FRAME_OVERHEAD == codec.HEADER_SIZE + codec.MAC_SIZE
    largest = codec.FRAME_OVERHEAD + codec.MAX_DOC_ID_LEN + codec.MAX_PAYLOAD_SIZE
    assert largest == codec.MAX_FRAME_SIZE
    assert codec.MAX_DOC_ID_LEN <= 255


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("kind", 0, ValueError),
        ("kind", 7, ValueError),
        ("kind", "4", TypeError),
        ("flags", 4, ValueError),
        ("flags", -1, ValueError),
        ("origin", b"short", ValueError),
        ("origin", "x" * 16, TypeError),
        ("swarm", 2**32, ValueError),
        ("seq", -1, ValueError),
        ("seq", 2**64, ValueError),
        ("seq", 1.5, TypeError),
        ("ts_ms", 2**48, ValueError),
        ("doc", b"host-a", TypeError),
        ("doc", "", ValueError),
        ("doc", "\ud800", UnicodeEncodeError),
        ("payload", "text", TypeError),
    ],
)
def test_encoder_refuses_bad_fields(
    codec: ModuleType, field: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        update_frame(codec, **{field: value})
    frame_args = {"kind": 4, "origin": ORIGIN, "swarm": 1, "seq": 1, "ts_ms": 1}
    frame_args.update({"doc": "d", "payload": b"", field: value})
    with pytest.raises(error):
        codec.Frame(**frame_args)


# --- tampering ------------------------------------------------------------------------------


def test_a_changed_byte_anywhere_is_refused(codec: ModuleType) -> None:
    data = update_frame(codec, b"some payload bytes")
    for position in range(len(data)):
        for flip in (0x01, 0x80):
            changed = bytearray(data)
            changed[position] ^= flip
            with pytest.raises(FrameError) as caught:
                codec.decode_frame(bytes(changed), KEY)
            if position >= 10:
                # Past the lengths and codes, only the MAC can notice the change.
                assert caught.type is BadMacError, position


def test_errors_never_quote_the_frame(codec: ModuleType) -> None:
    marker = b"TOP-SECRET-CONTENT"
    data = update_frame(codec, marker * 3, doc="SECRET-DOC")
    inputs = [data[:-1], data + b"x", data[:-1] + b"\0"]
    for cut in (3, 30, 59):
        inputs.append(data[:cut])
    for bad in inputs:
        with pytest.raises(FrameError) as caught:
            codec.decode_frame(bad, KEY)
        message = str(caught.value)
        assert "SECRET" not in message
        assert marker.hex() not in message


# --- beacons --------------------------------------------------------------------------------


def test_beacon_round_trips(codec: ModuleType) -> None:
    digests = {"host-a": b"\x01" * 8, "host-b": b"\x02" * 8}
    payload = codec.encode_beacon(["http://10.0.0.7:8442"], digests, ("host-a", b"\0\0"))
    beacon = codec.decode_beacon(payload)
    assert beacon.endpoints == ("http://10.0.0.7:8442",)
    assert beacon.digests == digests
    assert beacon.delta == ("host-a", b"\0\0")
    assert beacon == codec.Beacon(["http://10.0.0.7:8442"], digests, ("host-a", b"\0\0"))


def test_beacon_of_the_wire_doc(codec: ModuleType) -> None:
    expected = bytes.fromhex(doc_block("beacon-hex").replace("```text", "").replace("```", ""))
    digest = codec.state_vector_digest(bytes.fromhex("020703ac0201"))
    assert codec.encode_beacon(["http://10.0.0.7:8442"], {"host-a": digest}) == expected
    assert codec.decode_beacon(expected).digests == {"host-a": digest}


def test_beacon_with_delta_must_fit_the_datagram_budget(codec: ModuleType) -> None:
    room = codec.DATAGRAM_BUDGET - codec.FRAME_OVERHEAD - (1 + 1 + 1 + 1 + 2)
    payload = codec.encode_beacon([], {}, ("d", b"u" * room))
    frame = update_frame(codec, payload, kind=codec.Kind.BEACON, doc="")
    assert len(frame) == codec.DATAGRAM_BUDGET
    with pytest.raises(OversizedFrameError):
        codec.encode_beacon([], {}, ("d", b"u" * (room + 1)))
    # A beacon without a delta may be larger.
    many = {f"host-{i:03d}-{'x' * 50}": b"\0" * 8 for i in range(codec.MAX_BEACON_DOCS)}
    assert len(codec.encode_beacon([], many)) > codec.DATAGRAM_BUDGET


def test_beacon_limits(codec: ModuleType) -> None:
    with pytest.raises(OversizedFrameError):
        codec.encode_beacon(["http://a"] * (codec.MAX_ENDPOINTS + 1), {})
    with pytest.raises(OversizedFrameError):
        codec.encode_beacon(["h" * (codec.MAX_ENDPOINT_LEN + 1)], {})
    with pytest.raises(OversizedFrameError):
        codec.encode_beacon([], {str(i): b"\0" * 8 for i in range(codec.MAX_BEACON_DOCS + 1)})
    with pytest.raises(ValueError):
        codec.encode_beacon([], {"host-a": b"short"})
    with pytest.raises(ValueError):
        codec.encode_beacon([""], {})


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", TruncatedFrameError),
        (b"\x05", OversizedFrameError),
        (b"\x01\x00", MalformedFrameError),
        (b"\x01\x05ab", TruncatedFrameError),
        (b"\x01\x02\xff\xfe\x00\x00", MalformedFrameError),
        (b"\x00\xff", OversizedFrameError),
        (b"\x00\x02\x01a" + b"\0" * 8 + b"\x01a" + b"\0" * 8 + b"\x00", MalformedFrameError),
        (b"\x00\x00\x00\x00", MalformedFrameError),
        (b"\x00\x00\x01d\x00\x05abc", TruncatedFrameError),
        (b"\x00\x00\x01d" + (1200).to_bytes(2, "big") + b"u" * 1200, OversizedFrameError),
    ],
)
def test_bad_beacons_raise_their_error(codec: ModuleType, payload: bytes, error: type) -> None:
    with pytest.raises(error):
        codec.decode_beacon(payload)


def test_state_vector_digest_ignores_zero_clocks(codec: ModuleType) -> None:
    plain = codec.state_vector_digest(bytes.fromhex("010703"))
    with_zero = codec.state_vector_digest(bytes.fromhex("0207030900"))
    assert plain == with_zero
    assert len(plain) == codec.DIGEST_SIZE


def test_state_vector_digest_of_pycrdt_states_ignores_entry_order(codec: ModuleType) -> None:
    pycrdt = pytest.importorskip("pycrdt")
    writers = [pycrdt.Doc() for _ in range(6)]
    for i, writer in enumerate(writers):
        writer.get("nodes", type=pycrdt.Map)[str(i)] = i
    forward, backward = pycrdt.Doc(), pycrdt.Doc()
    for writer in writers:
        forward.apply_update(writer.get_update())
    for writer in reversed(writers):
        backward.apply_update(writer.get_update())
    assert codec.state_vector_digest(forward.get_state()) == codec.state_vector_digest(
        backward.get_state()
    )


@pytest.mark.parametrize(
    "sv", ["", "02", "0107", "01ffffffffffffffffffff01", "020701070203", "01070300", "05070103"]
)
def test_malformed_state_vector_is_refused(codec: ModuleType, sv: str) -> None:
    with pytest.raises(MalformedFrameError):
        codec.state_vector_digest(bytes.fromhex(sv))


# --- compiled == twin -----------------------------------------------------------------------

frame_args = st.fixed_dictionaries(
    {
        "kind": st.integers(1, 6),
        "origin": st.binary(min_size=16, max_size=16),
        "swarm": st.integers(0, 2**32 - 1),
        "seq": st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**64 - 1])),
        "ts_ms": st.integers(0, 2**48 - 1),
        "doc": st.text(max_size=20).filter(lambda d: len(d.encode()) <= 64),
        "payload": st.binary(max_size=300),
        "key": st.binary(min_size=16, max_size=64),
        "flags": st.integers(0, 3),
    }
)


@PROPERTY
@given(args=frame_args)
def test_both_encode_the_same_bytes_and_decode_the_same_fields(
    both: tuple[ModuleType, ModuleType], args: dict[str, object]
) -> None:
    compiled, twin = both
    encoded = outcome(lambda: compiled.encode_frame(**args))
    assert encoded == outcome(lambda: twin.encode_frame(**args))
    if encoded[0] != "ok":
        return
    data = compiled.encode_frame(**args)
    key = args["key"]
    assert outcome(compiled.decode_frame, data, key) == outcome(twin.decode_frame, data, key)
    assert outcome(compiled.decode_frame, data, key)[0] == "ok"
    assert outcome(compiled.peek_header, data) == outcome(twin.peek_header, data)


@st.composite
def damaged_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with some bytes changed, cut or appended."""
    args = draw(frame_args)
    args["key"] = KEY
    twin = hot_module("codec", "py")
    try:
        data = bytearray(twin.encode_frame(**args))
    except ValueError:
        data = bytearray(b"KR\x01")
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["flip", "cut", "append", "set"]))
        if action == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        elif action == "set" and len(data) >= 10:
            data[draw(st.integers(0, 9))] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[draw(st.integers(0, len(data))) :]
        else:
            data += draw(st.binary(max_size=4))
    return bytes(data)


@PROPERTY
@given(data=st.one_of(st.binary(max_size=120), damaged_frames()))
def test_both_answer_any_input_the_same_way(
    both: tuple[ModuleType, ModuleType], data: bytes
) -> None:
    compiled, twin = both
    for name, args in (
        ("decode_frame", (data, KEY)),
        ("decode_frame_unverified", (data,)),
        ("peek_header", (data,)),
    ):
        ours, theirs = outcome(getattr(compiled, name), *args), outcome(getattr(twin, name), *args)
        assert ours == theirs, name
        assert ours[0] in {"ok", *(cls.__name__ for cls in FrameError.__subclasses__())}


@PROPERTY
@given(
    endpoints=st.lists(st.text(min_size=1, max_size=30), max_size=4),
    digests=st.dictionaries(st.text(min_size=1, max_size=20), st.binary(min_size=8, max_size=8)),
    delta=st.one_of(st.none(), st.tuples(st.text(min_size=1, max_size=10), st.binary())),
)
def test_beacons_round_trip_or_raise_the_same_error(
    both: tuple[ModuleType, ModuleType],
    endpoints: list[str],
    digests: dict[str, bytes],
    delta: tuple[str, bytes] | None,
) -> None:
    compiled, twin = both
    try:
        payload = twin.encode_beacon(endpoints, digests, delta)
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)):
            compiled.encode_beacon(endpoints, digests, delta)
        return
    assert compiled.encode_beacon(endpoints, digests, delta) == payload
    assert twin.decode_beacon(payload) == twin.Beacon(endpoints, digests, delta)


@PROPERTY
@given(data=st.binary(max_size=80))
def test_beacon_decoder_raises_only_frame_errors(
    both: tuple[ModuleType, ModuleType], data: bytes
) -> None:
    compiled, twin = both
    result = outcome(twin.decode_beacon, data)
    assert result[0] in {"ok", *(cls.__name__ for cls in FrameError.__subclasses__())}
    assert outcome(compiled.decode_beacon, data)[0] == result[0]


@PROPERTY
@given(
    entries=st.dictionaries(st.integers(0, 2**53), st.integers(0, 2**32 - 1), max_size=8),
    order=st.randoms(use_true_random=False),
)
def test_state_vector_digest_depends_only_on_the_state(
    both: tuple[ModuleType, ModuleType], entries: dict[int, int], order: object
) -> None:
    compiled, twin = both

    def varuint(value: int) -> bytes:
        out = bytearray()
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
        return bytes(out)

    items = list(entries.items())
    order.shuffle(items)  # type: ignore[attr-defined]
    shuffled = varuint(len(items)) + b"".join(varuint(c) + varuint(k) for c, k in items)
    ordered = sorted(entries.items())
    canonical = varuint(len(ordered)) + b"".join(varuint(c) + varuint(k) for c, k in ordered)
    assert twin.state_vector_digest(shuffled) == twin.state_vector_digest(canonical)
    assert compiled.state_vector_digest(shuffled) == twin.state_vector_digest(canonical)


def test_compiled_module_shares_the_twins_kinds_and_limits(
    both: tuple[ModuleType, ModuleType],
) -> None:
    compiled, twin = both
    assert compiled.Kind is twin.Kind
    for name in twin.__all__:
        if name.isupper():
            assert getattr(compiled, name) == getattr(twin, name), name
    assert sorted(compiled.__all__) == sorted(twin.__all__)
