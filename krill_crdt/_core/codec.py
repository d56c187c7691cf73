"""Wire codec: krill frames (version 1), beacon payloads and state vector digests.

Exports the compiled implementation when :data:`krill_crdt._core.COMPILED` is true, the
pure-Python twin otherwise; both behave identically. See ``_codec_py`` for the documentation
and ``docs/wire.md`` for the byte layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import implementation

__all__ = [
    "DATAGRAM_BUDGET",
    "DIGEST_SIZE",
    "FLAG_RELAYED",
    "FLAG_RESPONSE",
    "FRAME_OVERHEAD",
    "HEADER_SIZE",
    "KNOWN_FLAGS",
    "MAC_SIZE",
    "MAGIC",
    "MAX_BEACON_DOCS",
    "MAX_DOC_ID_LEN",
    "MAX_ENDPOINTS",
    "MAX_ENDPOINT_LEN",
    "MAX_FRAME_SIZE",
    "MAX_KEY_SIZE",
    "MAX_PAYLOAD_SIZE",
    "MAX_SEQ",
    "MAX_SWARM",
    "MAX_TS_MS",
    "MIN_KEY_SIZE",
    "ORIGIN_SIZE",
    "VERSION",
    "Beacon",
    "Frame",
    "FrameHeader",
    "Kind",
    "decode_beacon",
    "decode_frame",
    "decode_frame_unverified",
    "encode_beacon",
    "encode_frame",
    "peek_header",
    "state_vector_digest",
]

if TYPE_CHECKING:
    from ._codec_py import (
        DATAGRAM_BUDGET,
        DIGEST_SIZE,
        FLAG_RELAYED,
        FLAG_RESPONSE,
        FRAME_OVERHEAD,
        HEADER_SIZE,
        KNOWN_FLAGS,
        MAC_SIZE,
        MAGIC,
        MAX_BEACON_DOCS,
        MAX_DOC_ID_LEN,
        MAX_ENDPOINT_LEN,
        MAX_ENDPOINTS,
        MAX_FRAME_SIZE,
        MAX_KEY_SIZE,
        MAX_PAYLOAD_SIZE,
        MAX_SEQ,
        MAX_SWARM,
        MAX_TS_MS,
        MIN_KEY_SIZE,
        ORIGIN_SIZE,
        VERSION,
        Beacon,
        Frame,
        FrameHeader,
        Kind,
        decode_beacon,
        decode_frame,
        decode_frame_unverified,
        encode_beacon,
        encode_frame,
        peek_header,
        state_vector_digest,
    )
else:
    _impl = implementation("codec")
    globals().update({name: getattr(_impl, name) for name in __all__})
