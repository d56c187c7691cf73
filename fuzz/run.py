"""Run the fuzz targets for a set number of inputs and print what each did.

    .venv/bin/python -m fuzz.run all --runs 200000
    .venv/bin/python -m fuzz.run codec beacon --runs 1000000 --seed 3
    .venv/bin/python -m fuzz.run serial --runs 50000 --engine loop

With atheris installed each target runs coverage-guided under libFuzzer in a child process
(libFuzzer ends its process when done); without it, or with ``--engine loop``, a seeded
mutation loop runs in this process. Each target prints the inputs run, the seconds taken and
its findings; a finding's shortest input and traceback are written under ``--findings``.
The exit status is 1 when anything was found.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import HANG_SECONDS, Recorder, Report, Target, guarded, run_loop

#: Every target, in the order ``all`` runs them.
TARGETS = ("codec", "beacon", "yprotocol", "rest", "config", "serial")

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STATS = re.compile(r"^#(\d+)\s", re.MULTILINE)


def load(name: str) -> Target:
    """The :class:`Target` of ``fuzz/fuzz_NAME.py``."""
    module = importlib.import_module(f"{__package__}.fuzz_{name}")
    target: Target = module.TARGET
    return target


def have_atheris() -> bool:
    return importlib.util.find_spec("atheris") is not None


# ------------------------------------------------------------------------------ atheris child


def _child(name: str, runs: int, seed: int, findings: Path, corpus: Path) -> None:
    """Fuzz one target under libFuzzer in this process; libFuzzer exits when done."""
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    # Only the project's own modules are instrumented: coverage should steer the fuzzer
    # through our checks, not through aiohttp or the standard library.
    with atheris.instrument_imports(include=["krill_crdt"]):
        target = load(name)
    corpus.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(target.seeds()):
        (corpus / f"seed-{i:03d}").write_bytes(data)
    findings.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        f"-runs={runs}",
        f"-seed={seed}",
        f"-max_len={target.max_len}",
        f"-timeout={int(HANG_SECONDS)}",
        f"-artifact_prefix={findings}{os.sep}{name}-",
        "-print_final_stats=1",
        str(corpus),
    ]
    atheris.Setup(argv, guarded(target, Recorder(name, findings)))
    atheris.Fuzz()


def _run_child(name: str, runs: int, seed: int, findings: Path) -> Report:
    """Run one target in atheris children; read the counts from libFuzzer's output.

    A target with a ``per_process`` limit runs in several children one after another, each
    starting from the corpus the ones before it grew.
    """
    findings.mkdir(parents=True, exist_ok=True)
    log_path = findings / f"{name}.log"
    per_process = load(name).per_process or runs
    root = Path(__file__).resolve().parents[1]
    inputs, code = 0, 0
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix=f"krill-fuzz-{name}-") as work,
        log_path.open("w") as log,
    ):
        corpus = Path(work) / "corpus"
        part = 0
        while inputs < runs and code == 0:
            chunk = min(per_process, runs - inputs)
            command = [
                *(sys.executable, "-m", f"{__package__}.run", name),
                *("--runs", str(chunk), "--seed", str(seed + part)),
                *("--findings", str(findings), "--child-corpus", str(corpus)),
            ]
            log.write(f"--- part {part}: {chunk} inputs\n")
            log.flush()
            result = subprocess.run(command, check=False, cwd=root, capture_output=True, text=True)
            log.write(result.stdout + result.stderr)
            code = result.returncode
            done = _DONE.search(result.stderr)
            counts = _STATS.findall(result.stderr)
            inputs += int(done.group(1)) if done else int(counts[-1]) if counts else 0
            part += 1
    seconds = time.perf_counter() - start
    found = _findings_in(findings, name)
    if code != 0:
        # libFuzzer stops only for what the guard cannot catch: a hang, a crash of native
        # code, running out of memory. Its artifact is next to the findings.
        found[f"libFuzzer stopped (exit {code}); see {log_path}"] = 0
    return Report(name, inputs, seconds, found, "atheris")


def _findings_in(directory: Path, name: str) -> dict[str, int]:
    found = {}
    for path in sorted(directory.glob(f"{name}-*.txt")):
        found[path.read_text(errors="replace").splitlines()[0]] = (
            path.with_suffix(".bin").stat().st_size
        )
    return found


# ------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+", help=f"'all' or any of: {', '.join(TARGETS)}")
    parser.add_argument("--runs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", choices=("auto", "atheris", "loop"), default="auto")
    parser.add_argument(
        "--findings",
        type=Path,
        default=Path(tempfile.gettempdir()) / "krill-fuzz",
        help="where reproducers and logs go",
    )
    parser.add_argument("--child-corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Refused input is logged by the code under test; millions of such lines help no one.
    logging.disable(logging.CRITICAL)

    names = list(TARGETS) if args.targets == ["all"] else args.targets
    for name in names:
        if name not in TARGETS:
            parser.error(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    if args.child_corpus is not None:
        _child(names[0], args.runs, args.seed, args.findings, args.child_corpus)
        return 0

    engine = args.engine
    if engine == "auto":
        engine = "atheris" if have_atheris() else "loop"
    if engine == "atheris" and not have_atheris():
        parser.error("atheris is not installed (pip install atheris), or use --engine loop")
    if engine == "loop":
        print("atheris not used: running the seeded mutation loop", flush=True)

    failed = False
    for name in names:
        # Findings of an earlier run of the same target would be counted again.
        for old in args.findings.glob(f"{name}-*"):
            old.unlink()
        if engine == "atheris":
            report = _run_child(name, args.runs, args.seed, args.findings)
        else:
            report = run_loop(load(name), args.runs, args.seed, args.findings)
        rate = report.inputs / report.seconds if report.seconds else 0.0
        print(
            f"{name:10} {report.inputs:>9} inputs {report.seconds:>8.1f} s "
            f"{rate:>8.0f}/s  {len(report.findings)} finding(s)  [{report.engine}]",
            flush=True,
        )
        for sig in report.findings:
            print(f"    {sig}", flush=True)
        failed = failed or bool(report.findings)
    if failed:
        print(f"reproducers and logs: {args.findings}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
