"""Ingest of remote updates, ours against raw pycrdt: ``pytest bench/test_bench_ingest.py
--benchmark-enable``.

Each round is one batch of ``krill_crdt.benchmarks.ingest``: 1000 updates into a fresh
document (one frame each, or merged by 100); divide the round time by 1000 for the time per
update.
"""

from __future__ import annotations

from typing import Any

import pytest

from krill_crdt.benchmarks import Case
from krill_crdt.benchmarks.ingest import CASES

BY_NAME = {case.name: case for case in CASES}


def _run(benchmark: Any, case: Case, variant: str) -> None:
    factory = case.compiled if variant == "ours" else case.python
    batch = factory()
    benchmark.group = f"{case.name} ({case.unit}, one batch)"
    benchmark.extra_info["ops_per_batch"] = batch()
    benchmark(batch)


@pytest.mark.parametrize("variant", ["ours", "raw-pycrdt"])
def test_ingest(benchmark: Any, variant: str) -> None:
    _run(benchmark, BY_NAME["ingest"], variant)


@pytest.mark.parametrize("variant", ["ours", "raw-pycrdt"])
def test_ingest_batched(benchmark: Any, variant: str) -> None:
    _run(benchmark, BY_NAME["ingest_batched"], variant)
