"""``krill serve`` as users run it: a subprocess, stopped by SIGTERM."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from krill_crdt.daemon.demo import demo_ids

from .conftest import STOP_TIMEOUT_S, multicast_env

pytestmark = pytest.mark.timeout(60)


def test_serve_without_config_answers_health_and_exits_0_on_sigterm(
    spawn: Any, tmp_path: Path
) -> None:
    daemon = spawn()
    health = daemon.wait_healthy()
    assert health["name"]
    assert health["follows"] == [health["name"]]
    assert (tmp_path / ".krill").is_dir()

    started = time.monotonic()
    daemon.stop_cleanly()
    assert time.monotonic() - started < STOP_TIMEOUT_S
    assert "krill stopped" in daemon.output()


def test_serve_logs_its_url(spawn: Any) -> None:
    daemon = spawn()
    daemon.wait_healthy()
    daemon.stop_cleanly()
    assert f"at {daemon.url}" in daemon.output()


def test_serve_exposes_metrics(spawn: Any) -> None:
    daemon = spawn()
    daemon.wait_healthy()
    status, body = daemon.get("/metrics")
    assert status == 200
    assert b"krill_frames_sent_total" in body


def test_demo_project_is_created_and_fed_by_the_simulated_sensor(spawn: Any) -> None:
    daemon = spawn()
    host = daemon.wait_healthy()["name"]
    ids = demo_ids(host)
    # /health answers as soon as the peer listens; the demo project is written just after.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        nodes = {n["id"]: n for n in daemon.get_json("/nodes")}
        if ids["project"] in nodes:
            break
        time.sleep(0.05)
    assert set(ids.values()) <= set(nodes)
    assert nodes[ids["sensor"]]["meta"]["port"].startswith("socket://127.0.0.1:")

    # The sensor prints a reading a second; the data point's snapshot follows it.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        point = daemon.get_json(f"/node/{ids['temperature']}")
        if point["meta"]["snapshot_value"] is not None:
            break
        time.sleep(0.1)
    assert 20.0 <= point["meta"]["snapshot_value"] <= 36.0


def test_restart_reuses_the_demo_nodes_and_repoints_the_sensor(spawn: Any, tmp_path: Path) -> None:
    first = spawn()
    host = first.wait_healthy()["name"]
    sensor_id = demo_ids(host)["sensor"]
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and sensor_id not in {
        n["id"] for n in first.get_json("/nodes")
    }:
        time.sleep(0.05)
    before = first.get_json(f"/node/{sensor_id}")
    count = len(first.get_json("/nodes"))
    first.stop_cleanly()

    second = spawn()
    second.wait_healthy()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        after = second.get_json(f"/node/{sensor_id}")
        if after["meta"]["port"] != before["meta"]["port"]:
            break
        time.sleep(0.1)
    assert after["meta"]["port"] != before["meta"]["port"]
    assert len(second.get_json("/nodes")) == count
    second.stop_cleanly()


def test_two_daemons_side_by_side_see_each_other(spawn: Any, tmp_path: Path) -> None:
    (tmp_path / "swarm.key").write_bytes(bytes(range(32)))
    shared = multicast_env()
    daemons = []
    for name in ("alpha", "beta"):
        config = tmp_path / f"{name}.toml"
        config.write_text(
            f'[peer]\nname = "{name}"\ndata_dir = "{name}-data"\nswarm = "side-by-side"\n'
            'swarm_key_file = "swarm.key"\n'
        )
        daemons.append(spawn("--config", str(config), env=shared))
    alpha, beta = daemons
    ids = [d.wait_healthy()["peer"] for d in daemons]

    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        if (
            ids[1] in alpha.get_json("/health")["peers"]
            and ids[0] in beta.get_json("/health")["peers"]
        ):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the daemons never met:\n{alpha.output()}\n{beta.output()}")

    # Each replicates the other's host doc.
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and "alpha" not in beta.get_json("/health")["follows"]:
        time.sleep(0.2)
    assert "alpha" in beta.get_json("/health")["follows"]
    assert (tmp_path / "alpha-data").is_dir() and (tmp_path / "beta-data").is_dir()
    alpha.stop_cleanly()
    beta.stop_cleanly()


def test_config_error_exits_2_and_names_the_key(spawn: Any, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[http]\nlistne = '127.0.0.1:1'\n")
    daemon = spawn("--config", str(config))
    assert daemon.process.wait(10.0) == 2
    assert "[http] listne: unknown key (did you mean 'listen'?)" in daemon.output()


def test_port_in_use_exits_1_with_the_reason(spawn: Any, tmp_path: Path) -> None:
    first = spawn()
    first.wait_healthy()
    elsewhere = tmp_path / "second"
    elsewhere.mkdir()
    second = spawn(cwd=elsewhere, env={"KRILL_HTTP_LISTEN": f"127.0.0.1:{first.port}"})
    assert second.process.wait(10.0) == 1
    assert "cannot run the peer" in second.output()
