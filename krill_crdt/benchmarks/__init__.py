"""Microbenchmarks measured side by side in one run (``krill bench``).

Each case compares two variants of one job on the same input: the compiled hot-path module
against its pure-Python twin, or our ingest against raw pycrdt. A variant is a *factory*:
calling it does the set-up (outside the timing) and returns a zero-argument callable that
performs one batch of work and returns how many operations that batch did.

Case modules of this package each export ``CASES: list[Case]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Batch", "Case", "Variant"]

#: One timed batch: does the work, returns the number of operations done.
Batch = Callable[[], int]
#: Builds the input (untimed) and returns the batch to time.
Variant = Callable[[], Batch]


@dataclass(frozen=True, slots=True)
class Case:
    """One benchmark entry of ``krill bench``.

    Attributes:
        name: entry name in the table and the JSON (``"decode"``, ``"plan_100k"``, ...).
        unit: what one operation is, per second (``"frames/s"``).
        compiled: the compiled (or "ours") variant; its figure goes to ``compiled_ops_s``.
        python: the twin (or raw pycrdt) variant; its figure goes to ``python_ops_s``.
        note: one line on what is measured.
    """

    name: str
    unit: str
    compiled: Variant
    python: Variant
    note: str = ""
