"""Doc digests: equal exactly when replicas are equal, whatever order Yrs encodes them in."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Map

from krill_crdt.errors import MalformedFrameError
from krill_crdt.sync.digest import doc_digest, read_state_vector


def digest(doc: Doc) -> bytes:  # type: ignore[type-arg]
    state_vector = doc.get_state()
    return doc_digest(state_vector, doc.get_update(state_vector))


def replica(source: Doc, client_id: int) -> Doc:  # type: ignore[type-arg]
    copy: Doc = Doc(client_id=client_id)  # type: ignore[type-arg]
    copy.get("nodes", type=Map)
    copy.apply_update(source.get_update())
    return copy


def test_a_delete_changes_the_digest_but_not_the_state_vector() -> None:
    doc: Doc = Doc(client_id=1)  # type: ignore[type-arg]
    nodes = doc.get("nodes", type=Map)
    nodes["a"] = 1
    nodes["b"] = 2
    other = replica(doc, 2)
    del nodes["a"]
    assert doc.get_state() == other.get_state()
    assert digest(doc) != digest(other)


def test_replicas_with_the_same_content_have_the_same_digest() -> None:
    first: Doc = Doc(client_id=1)  # type: ignore[type-arg]
    second: Doc = Doc(client_id=2)  # type: ignore[type-arg]
    for i, doc in enumerate((first, second)):
        root = doc.get("nodes", type=Map)
        for k in range(5):
            root[f"{i}-{k}"] = k
        del root[f"{i}-0"]
    first.apply_update(second.get_update())
    second.apply_update(first.get_update())
    assert digest(first) == digest(second)


def test_state_vectors_decode_to_client_clocks() -> None:
    doc: Doc = Doc(client_id=7)  # type: ignore[type-arg]
    doc.get("nodes", type=Map)["x"] = 1
    assert read_state_vector(doc.get_state()) == {7: 1}


@pytest.mark.parametrize("bad", [b"", b"\x05\x01", b"\x01\x01\x01\x00", b"\xff" * 11])
def test_malformed_state_vectors_raise_a_frame_error(bad: bytes) -> None:
    with pytest.raises(MalformedFrameError):
        read_state_vector(bad)
