"""Host-local time series: bounds, types, retention and bad input."""

from __future__ import annotations

import math
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from krill_crdt.errors import CorruptStoreError, StoreClosedError, ValidationError
from krill_crdt.store.series import MAX_TEXT_LENGTH, SCHEMA_VERSION, SeriesStore, Value


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "series.sqlite3"


@pytest.fixture
def series(path: Path) -> Iterator[SeriesStore]:
    with SeriesStore(path, max_age_s=None, max_per_node=None) as store:
        yield store


def fill(series: SeriesStore, node_id: str, times: range) -> None:
    series.append_many((node_id, float(t), float(t) * 10) for t in times)


# Ranges.


def test_range_bounds_are_inclusive_and_results_ascend(series: SeriesStore) -> None:
    fill(series, "temp", range(10, 0, -1))
    assert series.range("temp", since=3, until=5) == [(3.0, 30.0), (4.0, 40.0), (5.0, 50.0)]


def test_range_without_bounds_returns_everything(series: SeriesStore) -> None:
    fill(series, "temp", range(5))
    assert [ts for ts, _ in series.range("temp")] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_range_limit_returns_the_oldest_of_the_window(series: SeriesStore) -> None:
    fill(series, "temp", range(10))
    assert [ts for ts, _ in series.range("temp", since=2, limit=3)] == [2.0, 3.0, 4.0]
    assert series.range("temp", limit=0) == []


def test_range_of_one_node_excludes_other_nodes(series: SeriesStore) -> None:
    fill(series, "temp", range(3))
    fill(series, "hum", range(3))
    series.delete_node("hum")
    assert len(series.range("temp")) == 3
    assert series.range("hum") == []


def test_range_of_an_unknown_node_is_empty(series: SeriesStore) -> None:
    assert series.range("nobody") == []
    assert series.latest("nobody") is None


def test_range_uses_the_primary_key_not_a_scan(series: SeriesStore, path: Path) -> None:
    fill(series, "temp", range(100))
    with sqlite3.connect(path) as conn:
        plan = " ".join(
            row[-1]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT ts, value FROM samples "
                "WHERE node = 1 AND ts >= 5 AND ts <= 9 ORDER BY ts"
            )
        )
    assert "USING PRIMARY KEY" in plan
    assert "TEMP B-TREE" not in plan


def test_latest_returns_the_newest_sample(series: SeriesStore) -> None:
    series.append("temp", 5.0, 1.5)
    series.append("temp", 9.0, 2.5)
    series.append("temp", 7.0, 3.5)
    assert series.latest("temp") == (9.0, 2.5)


def test_same_timestamp_replaces_the_earlier_sample(series: SeriesStore) -> None:
    series.append("temp", 5.0, 1.0)
    series.append("temp", 5.0, 2.0)
    assert series.range("temp") == [(5.0, 2.0)]


# Types.


def test_values_keep_their_type_across_a_reopen(path: Path) -> None:
    values: list[Value] = [1.0, True, False, "on", 0.0, -2.5, ""]
    with SeriesStore(path) as series:
        series.append_many(("p", float(i), v) for i, v in enumerate(values))
    with SeriesStore(path) as series:
        read = [value for _, value in series.range("p")]
    assert read == values
    assert [type(v) for v in read] == [type(v) for v in values]


def test_an_int_value_reads_back_as_a_float(series: SeriesStore) -> None:
    series.append("p", 1.0, 3)
    ((_, value),) = series.range("p")
    assert value == 3.0 and type(value) is float


@settings(max_examples=60, deadline=None)
@given(
    samples=st.dictionaries(
        st.floats(-1e9, 1e9, allow_nan=False),
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
            st.text(max_size=20),
        ),
        max_size=30,
    ),
    since=st.floats(-1e9, 1e9) | st.none(),
    width=st.floats(0, 2e9) | st.none(),
)
def test_range_matches_a_sorted_filter_of_what_was_appended(
    samples: dict[float, Value], since: float | None, width: float | None
) -> None:
    until = None if since is None or width is None else since + width
    with tempfile.TemporaryDirectory() as tmp, SeriesStore(Path(tmp) / "s.sqlite3") as series:
        series.append_many(("p", ts, value) for ts, value in samples.items())
        got = series.range("p", since=since, until=until)
    expected = sorted(
        (ts, value)
        for ts, value in samples.items()
        if (since is None or ts >= since) and (until is None or ts <= until)
    )
    assert got == expected
    assert [type(v) for _, v in got] == [type(v) for _, v in expected]


# Retention.


def test_prune_by_age_drops_samples_older_than_max_age(path: Path) -> None:
    with SeriesStore(path, max_age_s=100.0, max_per_node=None) as series:
        fill(series, "temp", range(0, 1000, 50))
        dropped = series.prune(now=1000.0)
        assert [ts for ts, _ in series.range("temp")] == [900.0, 950.0]
    assert dropped == 18


def test_prune_by_count_keeps_each_nodes_newest(path: Path) -> None:
    with SeriesStore(path, max_age_s=None, max_per_node=3) as series:
        fill(series, "temp", range(10))
        fill(series, "hum", range(2))
        assert series.prune(now=0.0) == 7
        assert [ts for ts, _ in series.range("temp")] == [7.0, 8.0, 9.0]
        assert [ts for ts, _ in series.range("hum")] == [0.0, 1.0]


def test_prune_applies_age_and_count_together(path: Path) -> None:
    with SeriesStore(path, max_age_s=5.0, max_per_node=2) as series:
        fill(series, "temp", range(10))
        series.prune(now=10.0)
        assert [ts for ts, _ in series.range("temp")] == [8.0, 9.0]


def test_delete_node_drops_its_samples(series: SeriesStore) -> None:
    fill(series, "temp", range(4))
    assert series.delete_node("temp") == 4
    assert series.range("temp") == []
    assert series.delete_node("temp") == 0
    assert series.nodes() == []


# Bad input and bad files.


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", 1.0, 1.0), "node_id"),
        (("p", math.nan, 1.0), "ts"),
        (("p", math.inf, 1.0), "ts"),
        (("p", True, 1.0), "ts"),
        (("p", "1.0", 1.0), "ts"),
        (("p", 1.0, math.nan), "value"),
        (("p", 1.0, None), "value"),
        (("p", 1.0, b"raw"), "value"),
        (("p", 1.0, "x" * (MAX_TEXT_LENGTH + 1)), "value"),
    ],
)
def test_append_rejects_bad_input_naming_the_argument(
    series: SeriesStore, args: tuple[object, object, object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        series.append(*args)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert series.nodes() == []


def test_append_many_writes_nothing_if_one_sample_is_bad(series: SeriesStore) -> None:
    with pytest.raises(ValidationError):
        series.append_many([("p", 1.0, 1.0), ("p", 2.0, object())])  # type: ignore[list-item]
    assert series.range("p") == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"since": 5.0, "until": 4.0}, "since"),
        ({"since": math.nan}, "since"),
        ({"until": -math.inf}, "until"),
        ({"limit": -1}, "limit"),
    ],
)
def test_range_rejects_bad_bounds_naming_the_argument(
    series: SeriesStore, kwargs: dict[str, float], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        series.range("p", **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_age_s": 0.0}, "max_age_s"), ({"max_per_node": 0}, "max_per_node")],
)
def test_retention_limits_must_be_positive(
    path: Path, kwargs: dict[str, float], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SeriesStore(path, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_garbage_file_is_refused_as_corrupt(path: Path) -> None:
    path.write_bytes(b"\x13" * 8192)
    with pytest.raises(CorruptStoreError) as caught:
        SeriesStore(path)
    assert caught.value.doc == ""


def test_newer_schema_version_is_refused(path: Path) -> None:
    SeriesStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(CorruptStoreError, match="newer"):
        SeriesStore(path)


def test_every_call_after_close_raises_store_closed(path: Path) -> None:
    series = SeriesStore(path)
    series.close()
    series.close()  # idempotent
    for call in (
        lambda: series.append("p", 1.0, 1.0),
        lambda: series.range("p"),
        lambda: series.latest("p"),
        lambda: series.prune(1.0),
        lambda: series.delete_node("p"),
    ):
        with pytest.raises(StoreClosedError):
            call()


def test_calls_from_several_threads_are_serialised(series: SeriesStore) -> None:
    def writer(node: str) -> None:
        for i in range(200):
            series.append(node, float(i), float(i))

    threads = [threading.Thread(target=writer, args=(f"n{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [len(series.range(f"n{k}")) for k in range(4)] == [200] * 4
