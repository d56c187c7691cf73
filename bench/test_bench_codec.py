"""Frame decoding, compiled next to the twin: ``pytest bench/test_bench_codec.py
--benchmark-enable``.

Each benchmark round is one batch of ``krill_crdt.benchmarks.codec`` (1000 frames), the same
inputs that ``krill bench`` measures; divide the batch time by 1000 for the time per frame.
"""

from __future__ import annotations

from typing import Any

import pytest

from krill_crdt.benchmarks import Case
from krill_crdt.benchmarks.codec import CASES

BY_NAME = {case.name: case for case in CASES}


def _run(benchmark: Any, case: Case, variant: str) -> None:
    factory = case.compiled if variant == "compiled" else case.python
    batch = factory()
    benchmark.group = f"{case.name} ({case.unit}, one batch)"
    benchmark.extra_info["ops_per_batch"] = batch()
    benchmark(batch)


@pytest.mark.parametrize("variant", ["compiled", "python"])
def test_decode(benchmark: Any, variant: str) -> None:
    _run(benchmark, BY_NAME["decode"], variant)


@pytest.mark.parametrize("variant", ["compiled", "python"])
def test_decode_verify(benchmark: Any, variant: str) -> None:
    _run(benchmark, BY_NAME["decode_verify"], variant)
