"""Replay window checks, compiled next to the twin: ``pytest bench/test_bench_dedup.py
--benchmark-enable``.

Each benchmark round is one batch of ``krill_crdt.benchmarks.codec`` (20 000 checks on a
fresh window), the same inputs that ``krill bench`` measures.
"""

from __future__ import annotations

from typing import Any

import pytest

from krill_crdt.benchmarks.codec import CASES

DEDUP = next(case for case in CASES if case.name == "dedup")


@pytest.mark.parametrize("variant", ["compiled", "python"])
def test_dedup(benchmark: Any, variant: str) -> None:
    batch = (DEDUP.compiled if variant == "compiled" else DEDUP.python)()
    benchmark.group = f"dedup ({DEDUP.unit}, one batch)"
    benchmark.extra_info["ops_per_batch"] = batch()
    benchmark(batch)
