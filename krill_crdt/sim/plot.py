"""A PNG of one run: peers converged over virtual time, frames per second, per-peer lag.

matplotlib is optional: it is imported only when a plot is asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .report import Report

__all__ = ["plot"]


def plot(report: Report, path: Path) -> None:
    """Write the plot of ``report`` to ``path`` (PNG).

    Raises:
        RuntimeError: matplotlib is not installed.
    """
    try:
        # Imported by name: matplotlib is optional, and the type checker need not have it.
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib") from None

    series = report.series
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 9))
    fig.suptitle(f"{report.scenario}: {report.peers} peers, seed {report.seed}")

    # Step 1: peers holding the final state, with faults shaded behind.
    times = [t for t, _ in series.get("converged", [])]
    for axis in (top, middle):
        for label, start, end in series.get("spans", []):
            axis.axvspan(start, end, alpha=0.15, color="tab:red", label=label)
    top.step(times, [n for _, n in series.get("converged", [])], where="post")
    top.set_ylabel("peers converged")
    top.set_ylim(0, report.peers + 1)

    # Step 2: frames per second of virtual time.
    fps = series.get("frames_per_second", [])
    middle.bar([t for t, _ in fps], [n for _, n in fps], width=1.0, align="edge")
    middle.set_ylabel("frames / s")
    middle.set_xlabel("virtual time (s)")

    # Step 3: each peer's lag behind the last write or fault.
    names = sorted(report.lag_ms)
    bottom.bar(range(len(names)), [report.lag_ms[n] or 0.0 for n in names])
    bottom.set_ylabel("lag (ms)")
    bottom.set_xlabel("peer")

    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
