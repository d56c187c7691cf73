"""Inputs the fuzz campaign found that once escaped as the wrong error, or changed a doc.

Each test holds the shortest reproducer and the behaviour the fix gives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from krill_crdt.daemon.config import ConfigError, load_config
from krill_crdt.errors import KrillError, UpdateRejectedError, ValidationError
from krill_crdt.model import Node, NodeType
from krill_crdt.store.hostdoc import NODES_ROOT, HostDoc
from krill_crdt.store.origin import Origin

#: A Yjs update on which Yrs panics (divide by zero), leaving a doc every later read of
#: which panics too.
PANICKING_UPDATE = bytes.fromhex(
    "010a0c002701056e6f6465730470696e340128000c0002696400000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000016e756c6c770470696e3428000c0006706172656e7401770371727628000c0004680428f6f66f7374"
    "017706686ff6"
)
#: A Yjs update Yrs refuses half way ("block parent must be deleted or shared ref type"),
#: after integrating part of it.
HALF_APPLIED_UPDATE = bytes.fromhex(
    "010a0c002701056e6f6465730470696e340128000c0002696401770470696e3428000c0006706172656e7401"
    "770373727628000c0104686f7374017706686f73742d6128000c00047479706501770350696e28000c00046e"
    "616d6501770028000c000573746174650177046e6f6e6528000c00046d65746101760a0370696e7c40800000"
    "07746172676574737500056c6576656c7e04647574797e0873687574646f776e77036c6f770a6c6576656c5f"
    "74696d657e046d6f64657705696e7075740a6163746976655f6c6f77790470756c6c77046e6f6e6507696e69"
    "7469616c77036c6f7728000c000775706461746564017c4ecaa7e228000c0006736368656d61017703322e30"
    "010b01280a"
)


def load_toml(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "krill.toml"
    path.write_bytes(text)
    load_config(path, {})


def test_config_path_of_an_unknown_user_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data_dir"):
        load_toml(tmp_path, b'[peer]\ndata_dir = "~no-such-user-of-krill/x"\n')


def test_config_variable_path_of_an_unknown_user_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="KRILL_PEER_DATA_DIR"):
        load_config(None, {"KRILL_PEER_DATA_DIR": "~no-such-user-of-krill/x"})


def test_config_nested_too_deep_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_toml(tmp_path, b"a = " + b"[" * 1000 + b"]" * 1000 + b"\n")


def test_config_integer_of_5000_digits_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_toml(tmp_path, b"[discovery]\nport = " + b"9" * 5000 + b"\n")


def test_config_file_not_in_utf8_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_toml(tmp_path, b'[peer]\nname = "\xff"\n')


def test_remote_node_with_the_empty_id_does_not_break_repair() -> None:
    doc = HostDoc("host-a", clock=lambda: 1.0, client_id=1)
    doc.create(Node.new(NodeType.Server, host="host-a", id="srv"))
    remote: Doc[Any] = Doc(client_id=2)
    remote.apply_update(doc.doc.get_update())
    before = remote.get_state()
    remote.get(NODES_ROOT, type=Map)[""] = False
    doc.apply(remote.get_update(before), origin=Origin("peer-2", "ws"))
    assert doc.get("srv").parent is None


def test_an_empty_body_key_is_named_in_the_refusal() -> None:
    from fuzz.fuzz_rest import check_body

    # check_body asserts that a refused body's ValidationError names its field.
    check_body("new-1", b'{"": 1, "type": "Button", "parent": "proj"}')


def test_an_empty_body_key_is_refused_with_a_validation_error_naming_it() -> None:
    from fuzz.fuzz_rest import _API

    with pytest.raises(KrillError) as info:
        _API._node_to_create("new-1", {"": 1, "type": "Button", "parent": "proj"})
    assert isinstance(info.value, ValidationError)
    assert str(info.value).startswith('node new-1: "": is not a node field')


def served_doc() -> HostDoc:
    doc = HostDoc("host-a", clock=lambda: 1.0, client_id=1)
    doc.create(Node.new(NodeType.Server, host="host-a", id="srv"))
    return doc


@pytest.mark.parametrize("update", [PANICKING_UPDATE, HALF_APPLIED_UPDATE], ids=["panic", "half"])
def test_updates_yrs_cannot_take_are_refused_before_they_touch_the_doc(update: bytes) -> None:
    doc = served_doc()
    before = doc.doc.get_update()
    with pytest.raises(UpdateRejectedError, match="rejected"):
        doc.apply(update, origin=Origin("ws-client-1", "ws-client"))
    assert doc.doc.get_update() == before
    assert doc.get("srv").id == "srv"  # still readable


def test_a_state_vector_on_which_yrs_panics_is_refused() -> None:
    doc = served_doc()
    with pytest.raises(UpdateRejectedError, match="state vector"):
        doc.diff(b"\x03")
    assert doc.diff(doc.state_vector())  # the doc is still fine
