"""``krill bench`` runs the propagation and ingest cases end to end and writes their entries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from krill_crdt.benchmarks.runner import compiled_unavailable
from krill_crdt.cli import main

pytestmark = pytest.mark.timeout(120)

CONTRACT_FIELDS = {"name", "compiled_ops_s", "python_ops_s", "ratio", "unit"}


def test_latency_and_ingest_entries_carry_positive_figures(tmp_path: Path) -> None:
    if compiled_unavailable():
        pytest.skip(f"our column needs the compiled hot path: {compiled_unavailable()}")
    out = tmp_path / "bench.json"

    status = main(
        [
            "bench",
            "--only",
            "ws_latency_p50_ms",
            "--only",
            "ingest",
            "--budget",
            "0.2",
            "--json",
            str(out),
        ]
    )

    assert status == 0
    entries: dict[str, dict[str, Any]] = {e["name"]: e for e in json.loads(out.read_text())}
    assert set(entries) == {"ws_latency_p50_ms", "ingest"}
    for entry in entries.values():
        assert set(entry) >= CONTRACT_FIELDS
        assert entry["compiled_ops_s"] > 0
        # A baseline that is not installed here is reported as not run, with the reason.
        if entry["python_ops_s"] is None:
            assert entry["python_skipped"]
        else:
            assert entry["python_ops_s"] > 0 and entry["ratio"] > 0
    assert entries["ingest"]["unit"] == "updates/s"


def test_latency_entries_are_in_milliseconds_with_percentiles() -> None:
    from krill_crdt.benchmarks.propagation import CASES, LatencyCase

    case = next(c for c in CASES if c.name == "ws_latency_p50_ms")
    assert isinstance(case, LatencyCase)

    entry = case.measure(0.05).to_json()

    assert entry["unit"] == "ms"
    assert 0 < entry["compiled_ops_s"] <= entry["compiled_p99_ms"]
    assert entry["compiled_samples"] >= 200 and entry["compiled_warmup_worst_ms"] > 0
    if entry["python_ops_s"] is not None:
        assert entry["ratio"] == pytest.approx(entry["python_ops_s"] / entry["compiled_ops_s"])
