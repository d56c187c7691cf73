"""The fuzz targets of ``fuzz/``, run briefly: a few hundred inputs each, from their seeds,
mutations of them, raw bytes and the targets' own structured inputs.

The long campaign runs outside CI (``python -m fuzz.run all``); here the same ``check_one``
functions guard the bad-input contract on every change. What the campaign found is kept,
fixed, in ``test_regressions.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import fuzz_beacon, fuzz_codec, fuzz_config, fuzz_rest, fuzz_serial, fuzz_yprotocol
from fuzz.common import Target, mutate

# A few hundred inputs per target keep the whole directory to seconds, the same ones on every
# run so that a failure is a change of the code, not of the draw. No deadline: the
# run shares machines with other suites, and these tests are about outcomes, not speed.
SHORT = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run(check: Callable[[bytes], None], data: bytes) -> None:
    check(data)


def mutations(target: Target) -> st.SearchStrategy[bytes]:
    """A seed of ``target`` after a few random edits, or raw bytes."""
    pool = target.seeds()
    edited = st.builds(
        lambda seed, salt: mutate(random.Random(salt), seed, target.max_len),
        st.sampled_from(pool),
        st.integers(0, 2**32),
    )
    return st.one_of(edited, st.binary(max_size=200))


def prefixed(mode: int, body: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return body.map(lambda rest: bytes([mode]) + rest)


TARGETS = [
    fuzz_codec.TARGET,
    fuzz_beacon.TARGET,
    fuzz_yprotocol.TARGET,
    fuzz_rest.TARGET,
    fuzz_config.TARGET,
    fuzz_serial.TARGET,
]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_every_seed_passes_its_target(target: Target) -> None:
    for data in target.seeds():
        target.check(data)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_targets_hold_on_inputs_of_any_length(target: Target) -> None:
    for size in range(6):
        for fill in (0, 1, 0x7F, 0xFF):
            run(target.check, bytes([fill]) * size)


@SHORT
@given(data=mutations(fuzz_codec.TARGET))
def test_codec_frames_decode_alike_in_both_implementations(data: bytes) -> None:
    run(fuzz_codec.check_one, data)


@SHORT
@given(data=mutations(fuzz_beacon.TARGET))
def test_beacons_and_digests_decode_alike_and_round_trip(data: bytes) -> None:
    run(fuzz_beacon.check_one, data)


@SHORT
@given(data=mutations(fuzz_yprotocol.TARGET))
def test_ws_messages_refused_leave_the_host_doc_as_it_was(data: bytes) -> None:
    run(fuzz_yprotocol.check_one, data)


@SHORT
@given(choices=st.binary(min_size=1, max_size=300))
def test_well_formed_updates_with_odd_node_fields_keep_the_tree_rules(choices: bytes) -> None:
    run(fuzz_yprotocol.check_one, bytes([fuzz_yprotocol.BUILT_UPDATE]) + choices)


@SHORT
@given(data=mutations(fuzz_rest.TARGET))
def test_rest_bodies_refused_name_the_field_and_change_nothing(data: bytes) -> None:
    run(fuzz_rest.check_one, data)


@SHORT
@given(node_id=st.integers(0, 255), choices=st.binary(min_size=1, max_size=300))
def test_rest_bodies_of_plausible_fields(node_id: int, choices: bytes) -> None:
    run(fuzz_rest.check_one, bytes([fuzz_rest.BUILT_BODY, node_id]) + choices)


@SHORT
@given(data=mutations(fuzz_config.TARGET))
def test_config_files_and_variables_fail_only_with_config_error(data: bytes) -> None:
    run(fuzz_config.check_one, data)


@SHORT
@given(data=prefixed(fuzz_config.BUILT_TOML, st.binary(max_size=300)))
def test_config_files_of_known_keys(data: bytes) -> None:
    run(fuzz_config.check_one, data)


@SHORT
@given(data=mutations(fuzz_serial.TARGET))
def test_serial_lines_do_not_depend_on_reads_and_parse_or_refuse(data: bytes) -> None:
    run(fuzz_serial.check_one, data)
