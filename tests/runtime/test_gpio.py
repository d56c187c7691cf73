"""GPIO backends: the simulated twin's behaviour, shared validation, and backend selection."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from krill_crdt.errors import KrillError
from krill_crdt.runtime.hardware.gpio import (
    DEFAULT_PWM_FREQUENCY_HZ,
    GpioClosedError,
    GpioError,
    GpioUnavailableError,
    PinBusyError,
    PinModeError,
    PinNotSetUpError,
    PinValueError,
    PinWrite,
    SimulatedPins,
    apply_active_low,
    lgpio_unavailable_reason,
    open_backend,
)

# Every wait in these tests ends within this many seconds, whatever happens.
BOUND_S = 2.0

Edge = tuple[int, bool, float]


async def until(condition: Callable[[], bool], timeout: float = BOUND_S) -> None:
    """Wait until ``condition()`` holds, failing the test after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture
def pins() -> SimulatedPins:
    return SimulatedPins()


def recorder() -> tuple[list[Edge], Callable[[int, bool, float], None]]:
    edges: list[Edge] = []

    def on_edge(pin: int, level: bool, timestamp: float) -> None:
        edges.append((pin, level, timestamp))

    return edges, on_edge


# Outputs.


def test_output_starts_at_initial_level_and_follows_writes(pins: SimulatedPins) -> None:
    pins.setup(17, "output", initial="high")
    pins.write(17, False)
    pins.write(17, True)

    assert pins.read(17) is True
    assert pins.levels(17) == [True, False, True]
    assert pins.history == [
        PinWrite(17, "setup", level=True),
        PinWrite(17, "write", level=False),
        PinWrite(17, "write", level=True),
    ]


def test_initial_level_accepts_a_bool(pins: SimulatedPins) -> None:
    pins.setup(5, "output", initial=True)
    assert pins.level(5) is True


def test_pwm_records_duty_and_frequency(pins: SimulatedPins) -> None:
    pins.setup(18, "pwm")
    pins.pwm(18, 25.0, 1000.0)

    assert pins.duty(18) == (25.0, 1000.0)
    assert pins.history[-1] == PinWrite(18, "pwm", duty=25.0, frequency=1000.0)


def test_set_duty_takes_a_fraction_and_keeps_the_last_frequency(pins: SimulatedPins) -> None:
    pins.setup(18, "pwm")
    pins.set_duty(18, 0.5)
    assert pins.duty(18) == (50.0, DEFAULT_PWM_FREQUENCY_HZ)

    pins.pwm(18, 10.0, 1000.0)
    pins.set_duty(18, 0.25)
    assert pins.duty(18) == (25.0, 1000.0)


def test_set_duty_outside_0_to_1_is_refused(pins: SimulatedPins) -> None:
    pins.setup(18, "pwm")
    with pytest.raises(PinValueError, match="duty"):
        pins.set_duty(18, 1.5)


# Shutdown.


def test_release_drives_an_output_to_the_given_shutdown_level(pins: SimulatedPins) -> None:
    pins.setup(17, "output", initial="low")
    pins.write(17, True)

    assert pins.release(17, "low") is True
    assert pins.level(17) is False
    assert pins.history[-1] == PinWrite(17, "release", level=False)
    assert pins.mode_of(17) is None


def test_release_without_a_level_uses_the_shutdown_given_at_setup(pins: SimulatedPins) -> None:
    pins.setup(17, "output", shutdown="high")
    pins.release(17)
    assert pins.level(17) is True


def test_release_stops_pwm_and_leaves_the_shutdown_level(pins: SimulatedPins) -> None:
    pins.setup(18, "pwm", shutdown="low")
    pins.pwm(18, 80.0, 50.0)
    pins.release(18)

    assert pins.duty(18) is None
    assert pins.level(18) is False


def test_release_does_not_drive_an_input(pins: SimulatedPins) -> None:
    pins.setup(27, "input", pull="up")
    pins.release(27, "low")

    assert pins.history == []
    assert pins.level(27) is True


def test_release_of_a_free_pin_does_nothing(pins: SimulatedPins) -> None:
    assert pins.release(3) is False


def test_close_releases_every_pin_to_its_shutdown_level(pins: SimulatedPins) -> None:
    pins.setup(17, "output", initial="high", shutdown="low")
    pins.setup(22, "output", initial="low", shutdown="high")
    pins.close()

    assert pins.level(17) is False
    assert pins.level(22) is True
    assert pins.closed


def test_close_twice_is_harmless_and_use_after_close_fails(pins: SimulatedPins) -> None:
    pins.setup(17, "output")
    pins.close()
    pins.close()

    with pytest.raises(GpioClosedError):
        pins.setup(17, "output")
    with pytest.raises(GpioClosedError):
        pins.write(17, True)


# Inputs and edges.


def test_input_reads_its_pull_until_driven(pins: SimulatedPins) -> None:
    pins.setup(4, "input", pull="up")
    pins.setup(5, "input", pull="down")

    assert pins.read(4) is True
    assert pins.read(5) is False

    pins.inject(4, False)
    assert pins.read(4) is False


async def test_watched_input_reports_both_edges_after_the_debounce(pins: SimulatedPins) -> None:
    edges, on_edge = recorder()
    pins.setup(27, "input")
    pins.watch(27, on_edge, debounce_ms=10)

    pins.inject(27, True)
    await until(lambda: len(edges) == 1)
    pins.inject(27, False)
    await until(lambda: len(edges) == 2)

    assert [(pin, level) for pin, level, _ in edges] == [(27, True), (27, False)]
    assert edges[0][2] <= edges[1][2]


async def test_bouncing_input_reports_one_edge_with_the_settled_level(
    pins: SimulatedPins,
) -> None:
    edges, on_edge = recorder()
    pins.setup(27, "input")
    pins.watch(27, on_edge, debounce_ms=40)

    for level in (True, False, True, False, True):
        pins.inject(27, level)
    await until(lambda: len(edges) == 1)
    await asyncio.sleep(0.1)

    assert [(pin, level) for pin, level, _ in edges] == [(27, True)]


async def test_bounce_back_to_the_previous_level_reports_nothing(pins: SimulatedPins) -> None:
    edges, on_edge = recorder()
    pins.setup(27, "input")
    pins.watch(27, on_edge, debounce_ms=20)

    pins.inject(27, True)
    pins.inject(27, False)
    await asyncio.sleep(0.1)

    assert edges == []


async def test_edge_callback_runs_on_the_event_loop_thread(pins: SimulatedPins) -> None:
    threads: list[threading.Thread] = []
    pins.setup(27, "input")
    pins.watch(27, lambda pin, level, ts: threads.append(threading.current_thread()), 0)

    pins.inject(27, True)
    await until(lambda: bool(threads))

    assert threads == [threading.current_thread()]


async def test_failing_callback_is_logged_and_later_edges_still_arrive(
    pins: SimulatedPins, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bool] = []

    def on_edge(pin: int, level: bool, timestamp: float) -> None:
        seen.append(level)
        if level:
            raise RuntimeError("callback bug")

    pins.setup(27, "input")
    pins.watch(27, on_edge, debounce_ms=0)
    with caplog.at_level(logging.ERROR, logger="krill.runtime.gpio"):
        pins.inject(27, True)
        await until(lambda: len(seen) == 1)
        pins.inject(27, False)
        await until(lambda: len(seen) == 2)

    assert "pin 27: edge callback failed" in caplog.text


async def test_unwatched_and_released_pins_report_no_edges(pins: SimulatedPins) -> None:
    edges, on_edge = recorder()
    pins.setup(27, "input")
    pins.watch(27, on_edge, debounce_ms=10)
    pins.inject(27, True)
    pins.unwatch(27)
    pins.setup(22, "input")
    pins.watch(22, on_edge, debounce_ms=10)
    pins.inject(22, True)
    pins.release(22)
    await asyncio.sleep(0.08)

    assert edges == []


def test_watch_needs_a_running_event_loop(pins: SimulatedPins) -> None:
    pins.setup(27, "input")
    with pytest.raises(GpioError, match="running event loop"):
        pins.watch(27, lambda pin, level, ts: None)


# Validation.


@pytest.mark.parametrize("pin", [-1, 54, 1000, True, 3.0, "17"])
def test_pin_numbers_outside_the_bcm_range_are_refused(pins: SimulatedPins, pin: object) -> None:
    with pytest.raises(PinValueError, match=r"0\.\.53"):
        pins.setup(pin, "output")  # type: ignore[arg-type]


def test_writing_to_an_input_is_refused(pins: SimulatedPins) -> None:
    pins.setup(27, "input")
    with pytest.raises(PinModeError, match="pin 27 is set up as input"):
        pins.write(27, True)


def test_reading_a_pin_not_set_up_is_refused(pins: SimulatedPins) -> None:
    with pytest.raises(PinNotSetUpError, match="pin 9 is not set up"):
        pins.read(9)


@pytest.mark.parametrize("duty", [-0.1, 100.5, math.nan, math.inf])
def test_pwm_duty_outside_0_to_100_is_refused(pins: SimulatedPins, duty: float) -> None:
    pins.setup(18, "pwm")
    with pytest.raises(PinValueError, match=r"duty must be 0\.\.100"):
        pins.pwm(18, duty, 100.0)
    assert pins.duty(18) is None


@pytest.mark.parametrize("frequency", [0.0, 0.05, 20_000.0])
def test_pwm_frequency_out_of_range_is_refused(pins: SimulatedPins, frequency: float) -> None:
    pins.setup(18, "pwm")
    with pytest.raises(PinValueError, match="frequency"):
        pins.pwm(18, 50.0, frequency)


def test_pwm_on_an_output_is_refused(pins: SimulatedPins) -> None:
    pins.setup(17, "output")
    with pytest.raises(PinModeError, match="set it up as pwm"):
        pins.pwm(17, 50.0, 100.0)


def test_reading_a_pwm_pin_is_refused(pins: SimulatedPins) -> None:
    pins.setup(18, "pwm")
    with pytest.raises(PinModeError):
        pins.read(18)


async def test_watching_an_output_is_refused(pins: SimulatedPins) -> None:
    pins.setup(17, "output")
    with pytest.raises(PinModeError):
        pins.watch(17, lambda pin, level, ts: None)


async def test_debounce_out_of_range_is_refused(pins: SimulatedPins) -> None:
    pins.setup(27, "input")
    with pytest.raises(PinValueError, match="debounce"):
        pins.watch(27, lambda pin, level, ts: None, debounce_ms=5000)


def test_setting_up_a_pin_twice_is_refused(pins: SimulatedPins) -> None:
    pins.setup(17, "output")
    with pytest.raises(PinBusyError, match="already set up as output"):
        pins.setup(17, "input")
    assert pins.mode_of(17) == "output"


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("mode", {"mode": "analog"}),
        ("pull", {"mode": "input", "pull": "sideways"}),
        ("initial", {"mode": "output", "initial": "on"}),
        ("shutdown", {"mode": "output", "shutdown": 1}),
    ],
)
def test_bad_setup_values_are_refused_and_name_the_field(
    pins: SimulatedPins, field: str, kwargs: dict[str, object]
) -> None:
    with pytest.raises(PinValueError, match=field):
        pins.setup(17, **kwargs)  # type: ignore[arg-type]
    assert pins.mode_of(17) is None


def test_injecting_into_an_output_is_refused(pins: SimulatedPins) -> None:
    pins.setup(17, "output")
    with pytest.raises(PinModeError):
        pins.inject(17, True)


def test_gpio_errors_belong_to_the_krill_error_family() -> None:
    for error in (
        GpioError,
        GpioUnavailableError,
        GpioClosedError,
        PinValueError,
        PinModeError,
        PinNotSetUpError,
        PinBusyError,
    ):
        assert issubclass(error, KrillError)


# active_low is applied by the Pin processor with this helper.


@pytest.mark.parametrize(
    ("value", "active_low", "level"),
    [(True, False, True), (False, False, False), (True, True, False), (False, True, True)],
)
def test_apply_active_low_maps_both_ways(value: bool, active_low: bool, level: bool) -> None:
    assert apply_active_low(value, active_low) is level
    assert apply_active_low(level, active_low) is value


# Choosing a backend.

on_a_pi = pytest.mark.skipif(
    lgpio_unavailable_reason() is None, reason="this host can drive real pins"
)


def test_simulated_backend_is_opened_on_request() -> None:
    backend = open_backend("simulated")
    assert isinstance(backend, SimulatedPins)
    assert backend.kind == "simulated"


@on_a_pi
def test_auto_falls_back_to_simulated_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    lgpio_loaded_before = "lgpio" in sys.modules
    with caplog.at_level(logging.WARNING, logger="krill.runtime.gpio"):
        backend = open_backend("auto")

    assert isinstance(backend, SimulatedPins)
    warnings = [r for r in caplog.records if r.name == "krill.runtime.gpio"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "simulated pins" in warnings[0].getMessage()
    assert "not a Raspberry Pi" in warnings[0].getMessage()
    # Importing lgpio starts a thread and leaves a FIFO behind; a non-Pi must not do that.
    assert ("lgpio" in sys.modules) == lgpio_loaded_before


@on_a_pi
def test_lgpio_on_a_host_without_gpio_raises_a_clear_error() -> None:
    with pytest.raises(GpioUnavailableError, match="not a Raspberry Pi"):
        open_backend("lgpio")


def test_unknown_backend_kind_is_refused() -> None:
    with pytest.raises(PinValueError, match="auto, lgpio or simulated"):
        open_backend("wiringpi")


def test_reason_names_a_board_that_is_not_a_pi(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Pine64 RockPro64\0")
    reason = lgpio_unavailable_reason([model], str(tmp_path / "gpiochip*"))
    assert reason == "this host is not a Raspberry Pi (its device-tree model is 'Pine64 RockPro64')"


def test_reason_names_a_missing_gpiochip_on_a_pi(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")
    reason = lgpio_unavailable_reason([model], str(tmp_path / "gpiochip*"))
    assert reason is not None
    assert "no GPIO character device" in reason


def test_reason_is_none_on_a_pi_with_a_usable_gpiochip(tmp_path: Path) -> None:
    # Only look for lgpio: importing it would start its thread and create its FIFO.
    if importlib.util.find_spec("lgpio") is None:
        pytest.skip("lgpio is not installed")
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    (tmp_path / "gpiochip0").write_bytes(b"")
    assert lgpio_unavailable_reason([model], str(tmp_path / "gpiochip*")) is None
