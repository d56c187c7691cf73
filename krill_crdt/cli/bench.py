"""``krill bench``: run the microbenchmarks and print compiled and Python figures side by side.

Exit status 0 when the run completes, 2 for a bad argument (an unknown ``--only`` name). When
the compiled hot path is not in use the compiled column reads "not built" (or "disabled") and
the JSON holds null there, with the reason, rather than timing the twin twice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from krill_crdt.benchmarks.runner import (
    DEFAULT_BUDGET_S,
    CaseResult,
    compiled_unavailable,
    discover_cases,
    run_cases,
)

__all__ = ["register", "run"]

#: Table width when stdout is not a terminal: the widest row (a long note) fits on one line.
REDIRECTED_WIDTH = 180


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the budget must be above 0 seconds, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="run the microbenchmarks",
        description=(
            "Time each benchmark case's compiled variant against its pure-Python twin (or raw "
            "pycrdt) in interleaved rounds and print median throughput side by side."
        ),
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this case (repeatable); see --list",
    )
    parser.add_argument(
        "--budget",
        type=_positive_seconds,
        default=DEFAULT_BUDGET_S,
        metavar="SECONDS",
        help=f"timed seconds per variant (default {DEFAULT_BUDGET_S})",
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the results as a JSON list"
    )
    parser.add_argument("--list", action="store_true", help="list the case names and exit")
    parser.set_defaults(func=run)


def _rate(value: float | None, skipped: str) -> str:
    if value is None:
        return f"[yellow]{skipped.split(' (', maxsplit=1)[0] or 'n/a'}[/yellow]"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:,.3g} {suffix}"
    return f"{value:,.3g}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}x" if value < 1000 else f"{value:,.0f}x"


def _table(results: list[CaseResult]) -> Table:
    table = Table(title="krill bench: median throughput", title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("compiled ops/s", justify="right", no_wrap=True)
    table.add_column("python ops/s", justify="right", no_wrap=True)
    table.add_column("ratio", justify="right", no_wrap=True)
    table.add_column("note", overflow="fold")
    for result in results:
        table.add_row(
            result.name,
            result.unit,
            _rate(result.compiled.ops_s, result.compiled.skipped),
            _rate(result.python.ops_s, result.python.skipped),
            _ratio(result.ratio),
            result.note,
        )
    return table


def run(args: argparse.Namespace) -> int:
    """Run the benchmarks the arguments select; return the exit status."""
    # Redirected output (a CI log, a file) gets room for the notes instead of 80 columns.
    out = Console() if sys.stdout.isatty() else Console(width=REDIRECTED_WIDTH)
    err = Console(stderr=True)

    # Step 1: find the cases; a broken case module is reported, the others still run.
    cases, problems = discover_cases()
    for problem in problems:
        err.print(f"[red]cannot load benchmark module[/red] {problem}")
    if args.list:
        for case in cases:
            out.print(f"{case.name}  [dim]{case.unit}: {case.note}[/dim]")
        return 0
    if args.only:
        known = {case.name for case in cases}
        unknown = [name for name in args.only if name not in known]
        if unknown:
            err.print(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            return 2
        cases = [case for case in cases if case.name in args.only]

    # Step 2: run them, saying up front whether the compiled column will be real.
    why_not = compiled_unavailable()
    if why_not:
        err.print(f"[yellow]compiled hot path {why_not}: compiled column left empty[/yellow]")
    results = run_cases(
        cases, args.budget, on_start=lambda case: err.print(f"[dim]running {case.name}...[/dim]")
    )

    # Step 3: report.
    out.print(_table(results))
    if args.json is not None:
        entries: list[dict[str, Any]] = [result.to_json() for result in results]
        args.json.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
        err.print(f"[dim]wrote {len(entries)} entries to {args.json}[/dim]")
    return 0
