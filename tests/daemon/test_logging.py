"""The daemon's log: text or one JSON object per line, on the krill.* tree only."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from krill_crdt.daemon.logging import configure_logging
from krill_crdt.runtime.config import LogConfig


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    krill_level = logging.getLogger("krill").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("krill").setLevel(krill_level)


def test_json_format_writes_one_object_per_line_with_extra_fields(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(level="debug", format="json"), stream)
    logging.getLogger("krill.sync").info("peer %s joined", "ab12", extra={"peer": "ab12"})
    logging.getLogger("krill.store").debug("flushed")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["level"] == "info"
    assert first["logger"] == "krill.sync"
    assert first["message"] == "peer ab12 joined"
    assert first["peer"] == "ab12"
    assert first["time"].endswith("+00:00")


def test_json_format_carries_the_exception(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(format="json"), stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("krill.daemon").exception("failed")
    assert "ValueError: boom" in json.loads(stream.getvalue())["exception"]


def test_level_applies_to_krill_loggers_and_others_log_warnings_only(
    restore_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(level="debug"), stream)
    logging.getLogger("krill.runtime").debug("ours")
    logging.getLogger("aiohttp.access").info("theirs")
    out = stream.getvalue()
    assert "krill.runtime: ours" in out
    assert "theirs" not in out


def test_configuring_twice_keeps_one_handler(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(), stream)
    configure_logging(LogConfig(), stream)
    logging.getLogger("krill").warning("once")
    assert stream.getvalue().count("once") == 1


def test_importing_the_library_configures_no_handler() -> None:
    import subprocess
    import sys

    code = (
        "import logging, krill_crdt.runtime.peer, krill_crdt.daemon;"
        "print(len(logging.getLogger().handlers))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
