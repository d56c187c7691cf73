"""Replay window and seen-cache: the contract, its bounds, and compiled == twin."""

from __future__ import annotations

import os
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import hot_module

#: Examples per property; raise it for a long run (KRILL_FUZZ_EXAMPLES=100000).
EXAMPLES = int(os.environ.get("KRILL_FUZZ_EXAMPLES", "300"))
PROPERTY = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

A = b"a" * 16
B = b"b" * 16
C = b"c" * 16
MAX_SEQ = 2**64 - 1


@pytest.fixture
def dedup(impl_kind: str) -> ModuleType:
    return hot_module("dedup", impl_kind)


@pytest.fixture(scope="module")
def both() -> tuple[ModuleType, ModuleType]:
    return hot_module("dedup", "c"), hot_module("dedup", "py")


def stats(window: object) -> tuple[int, ...]:
    names = ("accepted", "duplicates", "too_old", "evictions")
    return tuple(getattr(window, name) for name in names if hasattr(window, name))


# --- ReplayWindow ---------------------------------------------------------------------------


def test_first_number_of_an_origin_is_accepted_whatever_it_is(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow()
    assert window.check_and_mark(A, 0)
    assert window.check_and_mark(B, MAX_SEQ)
    assert window.check_and_mark(C, 123_456_789)


def test_a_number_is_accepted_once(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow()
    assert window.check_and_mark(A, 5)
    assert not window.check_and_mark(A, 5)
    assert window.duplicates == 1


def test_origins_have_separate_windows(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow()
    assert window.check_and_mark(A, 5)
    assert window.check_and_mark(B, 5)


def test_reordered_numbers_inside_the_window_are_accepted_once(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow(window=64)
    assert window.check_and_mark(A, 100)
    for seq in (99, 37, 70, 98):
        assert window.check_and_mark(A, seq)
        assert not window.check_and_mark(A, seq)
    assert window.highest(A) == 100


def test_window_edge_is_exact(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow(window=128)
    assert window.check_and_mark(A, 1000)
    assert window.check_and_mark(A, 1000 - 127)
    assert not window.check_and_mark(A, 1000 - 128)
    assert window.too_old == 1


def test_numbers_behind_the_window_are_too_old(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow()
    assert window.check_and_mark(A, 5000)
    assert not window.check_and_mark(A, 5000 - dedup.DEFAULT_WINDOW)
    assert not window.check_and_mark(A, 0)
    assert window.too_old == 2


def test_a_replayed_frame_is_refused(dedup: ModuleType) -> None:
    codec = hot_module("codec", "py")
    key = bytes(range(32))
    window = dedup.ReplayWindow()
    sent = [codec.encode_frame(4, A, 1, seq, 0, "host-a", b"\0\0", key) for seq in range(1, 6)]
    for data in sent:
        frame = codec.decode_frame(data, key)
        assert window.check_and_mark(frame.origin, frame.seq)
    for data in reversed(sent):
        frame = codec.decode_frame(data, key)
        assert not window.check_and_mark(frame.origin, frame.seq)
    assert window.duplicates == 5


def test_a_huge_jump_clears_the_window(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow(window=64)
    for seq in range(1, 50):
        assert window.check_and_mark(A, seq)
    assert window.check_and_mark(A, 2**63)
    assert not window.check_and_mark(A, 49)
    assert window.check_and_mark(A, 2**63 - 1)
    assert window.check_and_mark(A, MAX_SEQ)
    assert not window.check_and_mark(A, MAX_SEQ)
    assert not window.check_and_mark(A, 2**63)


def test_jumps_around_a_ring_length_keep_older_marks_exactly(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow(window=128)
    assert window.check_and_mark(A, 63)
    assert window.check_and_mark(A, 64 + 127)
    # 63 is 128 behind: out. 64 is 127 behind: still in, and never seen.
    assert not window.check_and_mark(A, 63)
    assert window.check_and_mark(A, 64)
    assert not window.check_and_mark(A, 64)


def test_check_answers_without_marking(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow()
    assert window.check(A, 9)
    assert window.check(A, 9)
    assert len(window) == 0
    window.check_and_mark(A, 9)
    assert not window.check(A, 9)
    assert window.check(A, 8)
    assert window.check(A, 10)
    assert stats(window) == (1, 0, 0, 0)


def test_least_recently_seen_origin_is_evicted_first(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow(max_origins=2)
    window.check_and_mark(A, 1)
    window.check_and_mark(B, 1)
    window.check_and_mark(A, 2)  # A is now the most recently seen
    window.check_and_mark(C, 1)  # evicts B
    assert A in window
    assert B not in window
    assert C in window
    assert len(window) == 2
    assert window.evictions == 1
    # B's history is gone: its old number is accepted again.
    assert window.check_and_mark(B, 1)
    assert A not in window


def test_a_refused_number_still_counts_as_seeing_the_origin(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow(max_origins=2)
    window.check_and_mark(A, 1)
    window.check_and_mark(B, 1)
    assert not window.check_and_mark(A, 1)
    window.check_and_mark(C, 1)
    assert A in window
    assert B not in window


def test_forget_drops_an_origin(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow(max_origins=2)
    window.check_and_mark(A, 7)
    assert window.forget(A)
    assert not window.forget(A)
    assert window.highest(A) is None
    assert window.check_and_mark(A, 7)
    window.check_and_mark(B, 7)
    window.check_and_mark(C, 7)
    assert window.evictions == 1


def test_memory_stays_bounded_with_many_origins(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow(max_origins=100)
    for i in range(1000):
        window.check_and_mark(i.to_bytes(16, "big"), i)
    assert len(window) == 100
    assert window.evictions == 900
    assert (999).to_bytes(16, "big") in window


@pytest.mark.parametrize(
    ("seq", "error"), [(-1, ValueError), (2**64, ValueError), (1.0, TypeError), ("1", TypeError)]
)
def test_bad_sequence_numbers_are_refused(
    dedup: ModuleType, seq: object, error: type[Exception]
) -> None:
    window = dedup.ReplayWindow()
    with pytest.raises(error):
        window.check_and_mark(A, seq)
    with pytest.raises(error):
        window.check(A, seq)
    assert len(window) == 0


def test_origin_must_be_bytes(dedup: ModuleType) -> None:
    with pytest.raises(TypeError):
        dedup.ReplayWindow().check_and_mark("a" * 16, 1)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_origins": 0}, ValueError),
        ({"window": 0}, ValueError),
        ({"window": 100}, ValueError),
        ({"window": 2**20}, ValueError),
        ({"window": 64.0}, TypeError),
    ],
)
def test_bad_window_settings_are_refused(
    dedup: ModuleType, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        dedup.ReplayWindow(**kwargs)


def test_window_reports_its_settings(dedup: ModuleType) -> None:
    window = dedup.ReplayWindow(max_origins=7, window=256)
    assert (window.max_origins, window.window) == (7, 256)
    assert dedup.ReplayWindow().window == dedup.DEFAULT_WINDOW == 1024


# --- SeenCache ------------------------------------------------------------------------------


def test_seen_key_is_refused_until_its_time_runs_out(dedup: ModuleType) -> None:
    cache = dedup.SeenCache(capacity=8, ttl=10.0)
    assert cache.check_and_mark(b"k", 100.0)
    assert not cache.check_and_mark(b"k", 109.9)
    assert cache.check_and_mark(b"k", 110.0)
    assert (cache.accepted, cache.duplicates) == (2, 1)


def test_copies_do_not_extend_a_keys_time(dedup: ModuleType) -> None:
    cache = dedup.SeenCache(capacity=8, ttl=10.0)
    cache.check_and_mark(b"k", 0)
    assert not cache.check_and_mark(b"k", 9)
    assert cache.check_and_mark(b"k", 10)


def test_full_cache_overwrites_the_oldest_mark(dedup: ModuleType) -> None:
    cache = dedup.SeenCache(capacity=2, ttl=100.0)
    cache.check_and_mark(b"one", 0)
    cache.check_and_mark(b"two", 1)
    cache.check_and_mark(b"three", 2)
    assert len(cache) == 2
    assert cache.evictions == 1
    assert cache.check(b"one", 3)
    assert not cache.check(b"two", 3)


def test_expired_keys_make_room_without_counting_as_evictions(dedup: ModuleType) -> None:
    cache = dedup.SeenCache(capacity=2, ttl=1.0)
    cache.check_and_mark(b"one", 0)
    cache.check_and_mark(b"two", 0)
    cache.check_and_mark(b"three", 5)
    assert cache.evictions == 0


def test_check_does_not_mark(dedup: ModuleType) -> None:
    cache = dedup.SeenCache()
    assert cache.check(b"k", 0)
    assert cache.check(b"k", 0)
    assert len(cache) == 0


def test_time_is_whatever_the_caller_passes(dedup: ModuleType) -> None:
    cache = dedup.SeenCache(capacity=4, ttl=2)
    assert cache.check_and_mark(b"k", 10**6)
    assert not cache.check_and_mark(b"k", 10**6 + 1)
    with pytest.raises(TypeError):
        cache.check_and_mark(b"k", "now")
    with pytest.raises(TypeError):
        cache.check_and_mark("k", 1.0)


@pytest.mark.parametrize(
    "kwargs", [{"capacity": 0}, {"ttl": 0.0}, {"ttl": -1.0}, {"ttl": float("inf")}]
)
def test_bad_cache_settings_are_refused(dedup: ModuleType, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dedup.SeenCache(**kwargs)


# --- compiled == twin -----------------------------------------------------------------------

origins = st.sampled_from([bytes([i]) * 16 for i in range(6)])
seqs = st.one_of(
    st.integers(0, 400),
    st.integers(0, MAX_SEQ),
    st.sampled_from([0, 63, 64, 127, 128, 191, 192, 255, 256, MAX_SEQ, MAX_SEQ - 64]),
)
window_ops = st.lists(
    st.tuples(st.sampled_from(["mark", "mark", "mark", "check", "forget"]), origins, seqs),
    max_size=200,
)


@PROPERTY
@given(
    ops=window_ops,
    max_origins=st.integers(1, 5),
    window=st.sampled_from([64, 128, 192, 1024]),
)
def test_both_windows_decide_alike(
    both: tuple[ModuleType, ModuleType],
    ops: list[tuple[str, bytes, int]],
    max_origins: int,
    window: int,
) -> None:
    compiled, twin = both
    ours = compiled.ReplayWindow(max_origins=max_origins, window=window)
    theirs = twin.ReplayWindow(max_origins=max_origins, window=window)
    for op, origin, seq in ops:
        if op == "mark":
            assert ours.check_and_mark(origin, seq) == theirs.check_and_mark(origin, seq)
        elif op == "check":
            assert ours.check(origin, seq) == theirs.check(origin, seq)
        else:
            assert ours.forget(origin) == theirs.forget(origin)
        assert ours.highest(origin) == theirs.highest(origin)
        assert len(ours) == len(theirs)
    assert stats(ours) == stats(theirs)


@PROPERTY
@given(start=st.integers(0, MAX_SEQ - 5000), steps=st.lists(st.integers(-1100, 1100), max_size=300))
def test_both_windows_agree_on_a_drifting_stream(
    both: tuple[ModuleType, ModuleType], start: int, steps: list[int]
) -> None:
    compiled, twin = both
    ours, theirs = compiled.ReplayWindow(), twin.ReplayWindow()
    seq = start
    for step in steps:
        seq = min(max(seq + step, 0), MAX_SEQ)
        assert ours.check_and_mark(A, seq) == theirs.check_and_mark(A, seq)
    assert stats(ours) == stats(theirs)


@PROPERTY
@given(
    ops=st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from([bytes([i]) for i in range(8)]),
            st.floats(0, 50, allow_nan=False),
        ),
        max_size=200,
    ),
    capacity=st.integers(1, 6),
    ttl=st.floats(0.5, 20),
    monotonic=st.booleans(),
)
def test_both_caches_decide_alike(
    both: tuple[ModuleType, ModuleType],
    ops: list[tuple[bool, bytes, float]],
    capacity: int,
    ttl: float,
    monotonic: bool,
) -> None:
    compiled, twin = both
    ours = compiled.SeenCache(capacity=capacity, ttl=ttl)
    theirs = twin.SeenCache(capacity=capacity, ttl=ttl)
    now = 0.0
    for mark, key, when in ops:
        now = now + when / 10 if monotonic else when
        if mark:
            assert ours.check_and_mark(key, now) == theirs.check_and_mark(key, now)
        else:
            assert ours.check(key, now) == theirs.check(key, now)
        assert len(ours) == len(theirs) <= capacity
    assert stats(ours) == stats(theirs)
