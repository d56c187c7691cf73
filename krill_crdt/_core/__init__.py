"""The hot path: modules compiled with Cython, each with a pure-Python twin.

Every hot module ``NAME`` exists twice: ``_NAME_c`` (compiled from ``_NAME_c.pyx``) and
``_NAME_py`` (plain Python, identical behaviour). The public selector module ``NAME`` exports
whichever is in use. The compiled set is used when all of it imports, the interpreter is
CPython and ``KRILL_NO_EXTENSIONS`` is unset; otherwise every module uses its twin, so the
hot path is never a mixture of the two.

``COMPILED`` tells which set is in use.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

__all__ = ["COMPILED", "HOT_MODULES", "NO_EXTENSIONS", "implementation", "twins"]

#: Names of the hot modules; each has ``_NAME_c.pyx`` and ``_NAME_py.py`` in this package.
HOT_MODULES: tuple[str, ...] = ("graph", "codec", "dedup", "planner")


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


#: True when ``KRILL_NO_EXTENSIONS`` asks for the pure-Python twins.
NO_EXTENSIONS: bool = _flag("KRILL_NO_EXTENSIONS") or sys.implementation.name != "cpython"


def _load_compiled() -> dict[str, ModuleType] | None:
    modules = {}
    for name in HOT_MODULES:
        try:
            modules[name] = importlib.import_module(f"{__name__}._{name}_c")
        except ImportError:
            if _flag("KRILL_REQUIRE_EXTENSIONS"):
                raise
            return None
    return modules


def twins() -> dict[str, ModuleType]:
    """Return the pure-Python twin of every hot module, keyed by module name."""
    return {name: importlib.import_module(f"{__name__}._{name}_py") for name in HOT_MODULES}


_compiled = None if NO_EXTENSIONS else _load_compiled()

#: True when the compiled modules are in use, False when the pure-Python twins are.
COMPILED: bool = _compiled is not None

_active: dict[str, ModuleType] = _compiled if _compiled is not None else twins()


def implementation(name: str) -> ModuleType:
    """Return the module in use for hot module ``name`` (compiled or twin)."""
    return _active[name]
