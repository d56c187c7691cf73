"""``krill sim``: run the swarm simulator; exit 0 only if every invariant held.

    krill sim partition-heal --peers 50 --seed 7 --json report.json
    krill sim --list
    krill sim --campaign 20              # 20 seeds of every built-in scenario

Exit status: 0 when every invariant of every run held, 1 when one failed, 2 for a bad
argument (an unknown scenario, an unreadable scenario file).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from krill_crdt.sim import SCENARIOS, Report, Scenario, Simulation, load_scenarios

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``sim`` subcommand."""
    parser = subparsers.add_parser(
        "sim",
        help="run the swarm simulator",
        description=(
            "Run a deterministic swarm of real sync engines over a simulated network and "
            "check that they converge without losing writes or flooding the network."
        ),
    )
    parser.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    parser.add_argument("--peers", type=int, help="number of peers (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    parser.add_argument("--plot", type=Path, metavar="FILE", help="write a PNG (matplotlib)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--campaign",
        type=int,
        metavar="K",
        help="run K seeds (from --seed on) of the scenario, or of every scenario if none given",
    )
    parser.add_argument(
        "--scenarios", type=Path, metavar="FILE", help="read more scenarios from a TOML file"
    )
    parser.set_defaults(func=run)


def _catalog(args: argparse.Namespace) -> dict[str, Scenario]:
    found = dict(SCENARIOS)
    if args.scenarios is not None:
        found.update(load_scenarios(args.scenarios))
    return found


def _run_one(scenario: Scenario, seed: int, console: Console) -> tuple[Report, float]:
    started = time.perf_counter()
    with Progress(
        TextColumn(f"{scenario.name} seed {seed}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% of virtual time"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("run", total=1.0)
        report = Simulation(
            scenario, seed, progress=lambda done: progress.update(task, completed=done)
        ).run()
    return report, time.perf_counter() - started


def _summary(report: Report, wall: float) -> Table:
    table = Table(title=f"{report.scenario}: {report.peers} peers, seed {report.seed}")
    table.add_column("invariant")
    table.add_column("result")
    table.add_column("detail")
    for name, inv in sorted(report.invariants.items()):
        table.add_row(name, "[green]pass[/]" if inv.passed else "[red]FAIL[/]", inv.detail)
    figures = report.to_dict()
    for key in (
        "convergence_ms",
        "updates",
        "frames_sent",
        "delta_frames",
        "frames_per_update",
        "delta_frames_per_receiver",
        "lost_writes",
        "virtual_seconds",
    ):
        table.add_row(key, "", str(figures[key]))
    table.add_row("wall_seconds", "", f"{wall:.2f}")
    return table


def run(args: argparse.Namespace) -> int:
    """Run the ``sim`` subcommand and return its exit status."""
    console = Console(stderr=True)
    out = Console()
    try:
        catalog = _catalog(args)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    if args.list:
        table = Table(title="scenarios")
        table.add_column("name")
        table.add_column("peers")
        table.add_column("what it exercises")
        for name, scenario in sorted(catalog.items()):
            table.add_row(name, str(scenario.peers), scenario.description)
        out.print(table)
        return 0
    if args.peers is not None and args.peers < 2:
        console.print("[red]error:[/] --peers must be at least 2")
        return 2
    if args.scenario is not None and args.scenario not in catalog:
        console.print(f"[red]error:[/] no scenario {args.scenario!r}; see krill sim --list")
        return 2
    if args.campaign is not None:
        names = [args.scenario] if args.scenario else sorted(catalog)
        return _campaign(names, catalog, args, out, console)
    if args.scenario is None:
        console.print("[red]error:[/] name a scenario (see --list) or give --campaign")
        return 2

    report, wall = _run_one(catalog[args.scenario].sized(args.peers), args.seed, console)
    out.print(_summary(report, wall))
    if args.json is not None:
        args.json.write_text(report.to_json())
    if args.plot is not None:
        from krill_crdt.sim.plot import plot

        try:
            plot(report, args.plot)
        except RuntimeError as exc:
            console.print(f"[red]error:[/] {exc}")
            return 2
    return 0 if report.passed else 1


def _campaign(
    names: list[str],
    catalog: dict[str, Scenario],
    args: argparse.Namespace,
    out: Console,
    console: Console,
) -> int:
    if args.campaign < 1:
        console.print("[red]error:[/] --campaign needs at least one seed")
        return 2
    table = Table(title=f"campaign: {args.campaign} seeds per scenario from seed {args.seed}")
    for column in (
        "scenario",
        "peers",
        "passed",
        "worst convergence ms",
        "worst seed",
        "max frames/update",
        "failed seeds",
    ):
        table.add_column(column)
    results: dict[str, list[dict[str, object]]] = {}
    all_passed = True
    for name in names:
        scenario = catalog[name].sized(args.peers)
        reports = []
        for seed in range(args.seed, args.seed + args.campaign):
            report, _wall = _run_one(scenario, seed, console)
            reports.append(report)
        failed = [r.seed for r in reports if not r.passed]
        all_passed &= not failed
        timed = [r for r in reports if r.convergence_ms is not None]
        worst = max(timed, key=lambda r: r.convergence_ms or 0.0) if timed else None
        table.add_row(
            name,
            str(scenario.peers),
            f"{len(reports) - len(failed)}/{len(reports)}",
            "-" if worst is None else f"{worst.convergence_ms:.0f}",
            "-" if worst is None else str(worst.seed),
            f"{max(r.frames_per_update for r in reports):.2f}",
            ", ".join(map(str, failed)) or "-",
        )
        results[name] = [r.to_dict() for r in reports]
    out.print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0 if all_passed else 1
