"""The build: a failed compilation falls back to the twins unless compilation is required."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(300)


def build(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``setup.py build_ext`` on a copy holding only the graph module."""
    core = tmp_path / "krill_crdt" / "_core"
    core.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    shutil.copy(ROOT / "krill_crdt" / "_core" / "_graph_c.pyx", core / "_graph_c.pyx")
    variables = {k: v for k, v in os.environ.items() if not k.startswith("KRILL_")}
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        check=False,
        cwd=tmp_path,
        env={**variables, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )


def built(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "krill_crdt" / "_core").glob("_graph_c*.so"))


def test_a_build_without_a_working_compiler_still_succeeds(tmp_path: Path) -> None:
    result = build(tmp_path, CC="false", LDSHARED="false")
    assert result.returncode == 0, result.stderr
    assert "twins will be used" in result.stdout + result.stderr
    assert built(tmp_path) == []


def test_a_required_build_without_a_working_compiler_fails(tmp_path: Path) -> None:
    result = build(tmp_path, CC="false", LDSHARED="false", KRILL_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert built(tmp_path) == []


def test_no_extensions_skips_compilation(tmp_path: Path) -> None:
    result = build(tmp_path, KRILL_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    assert built(tmp_path) == []


def test_a_working_compiler_builds_the_module(tmp_path: Path) -> None:
    result = build(tmp_path, KRILL_REQUIRE_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    assert len(built(tmp_path)) == 1


def test_the_selector_reports_which_implementation_is_in_use() -> None:
    code = "import krill_crdt._core as c; print(c.COMPILED)"
    for flag, expected in (("0", "True"), ("1", "False")):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "KRILL_NO_EXTENSIONS": flag},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == expected
