"""Build script: compiles the hot-path modules of ``krill_crdt/_core``.

Every compiled module ``_core/_NAME_c.pyx`` has a pure-Python twin ``_core/_NAME_py.py``.
Compilation is optional so that a host without a C compiler (a bare Raspberry Pi image)
still installs a working package:

* ``KRILL_NO_EXTENSIONS=1`` skips compilation entirely;
* ``KRILL_REQUIRE_EXTENSIONS=1`` turns any build failure into a hard error;
* otherwise a failed build prints a warning and the twins are used at run time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
CORE = HERE / "krill_crdt" / "_core"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = _flag("KRILL_NO_EXTENSIONS")
REQUIRE_EXTENSIONS = _flag("KRILL_REQUIRE_EXTENSIONS")

if NO_EXTENSIONS and REQUIRE_EXTENSIONS:
    sys.exit("KRILL_NO_EXTENSIONS and KRILL_REQUIRE_EXTENSIONS contradict each other")


def _extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        return []
    sources = sorted(CORE.glob("_*_c.pyx"))
    exts = [
        Extension(
            f"krill_crdt._core.{src.stem}",
            [str(src.relative_to(HERE))],
            extra_compile_args=["-O3"],
        )
        for src in sources
    ]
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        print("WARNING: Cython is not available; installing the pure-Python twins only")
        return []
    try:
        return list(_cythonize(cythonize, exts))
    except Exception as exc:
        if REQUIRE_EXTENSIONS:
            raise
        print(f"WARNING: cythonize failed ({exc}); installing the pure-Python twins only")
        return []


def _cythonize(cythonize: object, exts: list[Extension]) -> list[Extension]:
    return list(
        cythonize(  # type: ignore[operator]
            exts,
            compiler_directives={
                "language_level": "3",
                "embedsignature": True,
                "boundscheck": False,
                "wraparound": False,
                "cdivision": True,
                "initializedcheck": False,
            },
        )
    )


class OptionalBuildExt(build_ext):
    """Build the extensions, falling back to the twins unless compilation is required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self._fail(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if REQUIRE_EXTENSIONS:
            raise
        print(
            f"WARNING: compiling the hot path failed ({exc}); "
            "the pure-Python twins will be used instead",
            file=sys.stderr,
        )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
