"""Runs the benchmark cases side by side and reports median throughput (``krill bench``).

For each case both variants are set up first (untimed), then timed in interleaved *rounds*:
the runner always runs next the variant that has had the least timed work so far, so a burst
of machine noise (another process, a frequency change) lands on both alike instead of on
whichever ran second. A round repeats the batch enough times to last about a tenth of the
budget, so timer overhead stays negligible even for microsecond batches. Each variant gets
its own time budget; its figure is the median of its rounds' operations per second.

The compiled variants are timed only when the compiled hot path is in use
(:data:`krill_crdt._core.COMPILED`). Otherwise a case's compiled factory might fall back to a
twin through a selector module and the table would compare the twin with itself, so those
figures are left out and marked with the reason.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from krill_crdt import _core
from krill_crdt.benchmarks import Batch, Case, Variant

__all__ = [
    "DEFAULT_BUDGET_S",
    "CaseResult",
    "VariantResult",
    "compiled_unavailable",
    "discover_cases",
    "run_case",
    "run_cases",
]

log = logging.getLogger("krill.bench")

#: Timed seconds per variant: long enough for a stable median over several rounds of a
#: millisecond batch, short enough that ``krill bench`` over all cases ends within a minute.
DEFAULT_BUDGET_S = 0.5
#: Rounds every variant gets at least, so the median is of something.
MIN_ROUNDS = 3
#: A variant whose single batch takes longer than the budget stops after this many budgets'
#: worth of time (at least one round), so one slow baseline cannot stall the whole run.
OVERRUN_FACTOR = 3.0
#: Target length of a round as a share of the budget.
ROUND_SHARE = 0.1
#: Upper bound on batches per round, in case a batch reports almost no time at all.
MAX_BATCHES_PER_ROUND = 1_000_000


@dataclass(frozen=True, slots=True)
class VariantResult:
    """Timing of one variant; ``ops_s`` is None when it was not timed (``skipped`` says why).

    Attributes:
        ops_s: median operations per second over the rounds.
        median_s: median seconds of one batch.
        rounds: timed rounds.
        batches_per_round: batch calls per round.
        skipped: why the variant was not timed, or ``""``.
    """

    ops_s: float | None
    median_s: float | None = None
    rounds: int = 0
    batches_per_round: int = 0
    skipped: str = ""


@dataclass(frozen=True, slots=True)
class CaseResult:
    """Both variants of one case, and the JSON entry ``krill bench --json`` writes for it."""

    name: str
    unit: str
    note: str
    compiled: VariantResult
    python: VariantResult

    @property
    def ratio(self) -> float | None:
        """Compiled over python throughput, or None when either was not timed."""
        if self.compiled.ops_s is None or self.python.ops_s is None or self.python.ops_s <= 0:
            return None
        return self.compiled.ops_s / self.python.ops_s

    def to_json(self) -> dict[str, Any]:
        """Return the contract entry: name, compiled_ops_s, python_ops_s, ratio, unit, extras."""
        entry: dict[str, Any] = {
            "name": self.name,
            "compiled_ops_s": self.compiled.ops_s,
            "python_ops_s": self.python.ops_s,
            "ratio": self.ratio,
            "unit": self.unit,
            "note": self.note,
        }
        for label, result in (("compiled", self.compiled), ("python", self.python)):
            entry[f"{label}_median_s"] = result.median_s
            entry[f"{label}_rounds"] = result.rounds
            if result.skipped:
                entry[f"{label}_skipped"] = result.skipped
        return entry


def discover_cases(package: str = "krill_crdt.benchmarks") -> tuple[list[Case], list[str]]:
    """Import every module of ``package`` and collect their ``CASES``.

    Returns:
        The cases in module-name order, and one message per module that failed to import (a
        broken case module costs its own cases, not the whole run).

    Raises:
        ValueError: two cases share a name.
    """
    root = importlib.import_module(package)
    cases: list[Case] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda found: found.name):
        if info.name == "runner" or info.name.startswith("_"):
            continue
        qualified = f"{package}.{info.name}"
        try:
            module = importlib.import_module(qualified)
        except Exception as exc:  # any failure: report it and keep the other cases
            problems.append(f"{qualified}: {type(exc).__name__}: {exc}")
            continue
        for case in getattr(module, "CASES", []):
            if case.name in seen:
                raise ValueError(
                    f"case {case.name!r} is defined in {seen[case.name]} and {qualified}"
                )
            seen[case.name] = qualified
            cases.append(case)
    return cases, problems


def compiled_unavailable() -> str:
    """Return why compiled variants cannot be timed, or ``""`` when they can."""
    if _core.COMPILED:
        return ""
    if _core.NO_EXTENSIONS:
        return "disabled (KRILL_NO_EXTENSIONS is set or the interpreter is not CPython)"
    return "not built (the compiled hot-path modules do not import)"


class _Timer:
    """Rounds of one variant's batch, scheduled by :func:`run_case`."""

    __slots__ = ("batch", "per_round", "rates", "spent", "times")

    def __init__(self, batch: Batch, budget_s: float) -> None:
        self.batch = batch
        self.rates: list[float] = []
        self.times: list[float] = []
        self.spent = 0.0
        # Warm-up call, which doubles as calibration of the round length. A batch slower than
        # the whole budget is not warmed up again: that call counts as its first round (a
        # cold cache is noise next to seconds of work).
        began = time.perf_counter()
        ops = batch()
        once = max(time.perf_counter() - began, 1e-9)
        target = budget_s * ROUND_SHARE
        self.per_round = max(1, min(MAX_BATCHES_PER_ROUND, int(target / once)))
        if once >= budget_s:
            self._record(ops, once)

    def _record(self, ops: int, elapsed: float) -> None:
        self.spent += elapsed
        self.rates.append(ops / elapsed)
        self.times.append(elapsed / self.per_round)

    def done(self, budget_s: float) -> bool:
        rounds = len(self.rates)
        if rounds >= MIN_ROUNDS and self.spent >= budget_s:
            return True
        return rounds >= 1 and self.spent >= budget_s * OVERRUN_FACTOR

    def run_round(self) -> None:
        ops = 0
        batch = self.batch
        began = time.perf_counter()
        for _ in range(self.per_round):
            ops += batch()
        self._record(ops, max(time.perf_counter() - began, 1e-9))

    def result(self) -> VariantResult:
        return VariantResult(
            ops_s=statistics.median(self.rates),
            median_s=statistics.median(self.times),
            rounds=len(self.rates),
            batches_per_round=self.per_round,
        )


def _set_up(variant: Variant, budget_s: float) -> _Timer | str:
    try:
        return _Timer(variant(), budget_s)
    except ImportError as exc:
        return f"not built ({exc})"


def run_case(
    case: Case, budget_s: float = DEFAULT_BUDGET_S, *, skip_compiled: str = ""
) -> CaseResult:
    """Time both variants of ``case`` in interleaved rounds and return their medians.

    Args:
        case: the case to run.
        budget_s: timed seconds per variant (a variant whose batch is slower still gets one
            round, and stops after :data:`OVERRUN_FACTOR` budgets).
        skip_compiled: when not empty, the compiled variant is not run and this is the reason.

    Raises:
        Whatever a factory or batch raises, except ImportError from a factory, which marks that
        variant as not built.
    """
    # A case that measures something other than throughput (a latency) times itself.
    measure = getattr(case, "measure", None)
    if callable(measure):
        result = measure(budget_s, skip_compiled)
        assert isinstance(result, CaseResult)
        return result

    # Step 1: set both variants up (untimed), warm them and size their rounds.
    timers: dict[str, _Timer] = {}
    skipped: dict[str, str] = {}
    if skip_compiled:
        skipped["compiled"] = skip_compiled
    else:
        ready = _set_up(case.compiled, budget_s)
        if isinstance(ready, str):
            skipped["compiled"] = ready
        else:
            timers["compiled"] = ready
    ready = _set_up(case.python, budget_s)
    if isinstance(ready, str):
        skipped["python"] = ready
    else:
        timers["python"] = ready

    # Step 2: interleave rounds, always feeding the variant with the least time so far.
    while True:
        pending = [timer for timer in timers.values() if not timer.done(budget_s)]
        if not pending:
            break
        min(pending, key=lambda timer: timer.spent).run_round()

    # Step 3: medians.
    results = {
        label: timers[label].result() if label in timers else VariantResult(None, skipped=why)
        for label, why in (
            ("compiled", skipped.get("compiled", "")),
            ("python", skipped.get("python", "")),
        )
    }
    return CaseResult(case.name, case.unit, case.note, results["compiled"], results["python"])


def run_cases(
    cases: Iterable[Case],
    budget_s: float = DEFAULT_BUDGET_S,
    on_start: Callable[[Case], None] | None = None,
) -> list[CaseResult]:
    """Run ``cases`` in order; compiled variants are skipped when the hot path is not compiled."""
    skip_compiled = compiled_unavailable()
    if skip_compiled:
        log.warning("compiled hot path unavailable: %s", skip_compiled)
    results = []
    for case in cases:
        if on_start is not None:
            on_start(case)
        results.append(run_case(case, budget_s, skip_compiled=skip_compiled))
    return results
