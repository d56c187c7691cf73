"""Shared fixtures. Hot-path tests run against both the compiled modules and their twins."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

# A real Mosquitto per test module (plain, password, TLS), started from Debian's binary.
pytest_plugins = ["tests.mqtt_broker"]

#: Set by the test command: a missing compiled module fails the run instead of skipping.
REQUIRE_COMPILED = os.environ.get("KRILL_REQUIRE_EXTENSIONS", "") not in ("", "0")


def hot_module(name: str, kind: str) -> ModuleType:
    """Import ``_core._{name}_{kind}``; kind is ``"c"`` (compiled) or ``"py"`` (twin)."""
    try:
        return importlib.import_module(f"krill_crdt._core._{name}_{kind}")
    except ImportError:
        if kind == "c" and not REQUIRE_COMPILED:
            pytest.skip(f"compiled module _{name}_c is not built")
        raise


@pytest.fixture(params=["c", "py"], ids=["compiled", "twin"])
def impl_kind(request: pytest.FixtureRequest) -> str:
    """Run a test once against the compiled modules and once against the twins."""
    return str(request.param)


@pytest.fixture
def graph_impl(impl_kind: str) -> ModuleType:
    return hot_module("graph", impl_kind)
