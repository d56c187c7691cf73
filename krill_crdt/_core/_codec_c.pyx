# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Wire codec for krill frames, compiled. Twin of ``_codec_py.py``: same behaviour.

Frames are read straight from the buffer into C fields, and the MAC is keyed BLAKE2b
written here in C after RFC 7693, so checking a frame creates no Python object until the
MAC holds. Beacons and state vector digests are handled a few times a second per peer, not
per frame: they, the constants and ``Kind`` are shared with the twin rather than compiled.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy


cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object)
    const void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)

from krill_crdt._core._codec_py import (
    DATAGRAM_BUDGET,
    DIGEST_PERSON,
    DIGEST_SIZE,
    FLAG_RELAYED,
    FLAG_RESPONSE,
    FRAME_OVERHEAD,
    HEADER_SIZE,
    KNOWN_FLAGS,
    MAC_PERSON,
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
    FrameHeader,
    Kind,
    decode_beacon,
    encode_beacon,
    state_vector_digest,
)
from krill_crdt.errors import (
    BadMacError,
    MalformedFrameError,
    OversizedFrameError,
    TruncatedFrameError,
    UnknownVersionError,
)

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

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    /* BLAKE2b after RFC 7693, only what the frame MAC needs: a keyed state computed once
       per key, then one pass over the frame with a 16-byte output. */

    #define KRILL_MAC_SIZE 16

    static const uint64_t krill_b2b_iv[8] = {
        0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
        0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
        0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

    static const uint8_t krill_b2b_sigma[10][16] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
        {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
        {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
        {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
        {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
        {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
        {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
        {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
        {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0}};

    static inline uint64_t krill_le64(const uint8_t *p) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    #else
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
        return v;
    #endif
    }

    static inline uint64_t krill_rotr64(uint64_t x, unsigned n) {
        return (x >> n) | (x << (64 - n));
    }

    #define KRILL_G(a, b, c, d, x, y)                      \\
        do {                                               \\
            v[a] = v[a] + v[b] + (x);                      \\
            v[d] = krill_rotr64(v[d] ^ v[a], 32);          \\
            v[c] = v[c] + v[d];                            \\
            v[b] = krill_rotr64(v[b] ^ v[c], 24);          \\
            v[a] = v[a] + v[b] + (y);                      \\
            v[d] = krill_rotr64(v[d] ^ v[a], 16);          \\
            v[c] = v[c] + v[d];                            \\
            v[b] = krill_rotr64(v[b] ^ v[c], 63);          \\
        } while (0)

    /* Rounds are spelled out with constant indexes so the compiler resolves every sigma
       lookup at compile time and keeps v in registers. */
    #define KRILL_ROUND(r)                                                     \\
        do {                                                               \\
            const uint8_t *s = krill_b2b_sigma[(r) % 10];                  \\
            KRILL_G(0, 4, 8, 12, m[s[0]], m[s[1]]);                        \\
            KRILL_G(1, 5, 9, 13, m[s[2]], m[s[3]]);                        \\
            KRILL_G(2, 6, 10, 14, m[s[4]], m[s[5]]);                       \\
            KRILL_G(3, 7, 11, 15, m[s[6]], m[s[7]]);                       \\
            KRILL_G(0, 5, 10, 15, m[s[8]], m[s[9]]);                       \\
            KRILL_G(1, 6, 11, 12, m[s[10]], m[s[11]]);                     \\
            KRILL_G(2, 7, 8, 13, m[s[12]], m[s[13]]);                      \\
            KRILL_G(3, 4, 9, 14, m[s[14]], m[s[15]]);                      \\
        } while (0)

    static void krill_b2b_compress(uint64_t h[8], const uint8_t *block, uint64_t t, int last) {
        uint64_t v[16], m[16];
        for (int i = 0; i < 16; i++) m[i] = krill_le64(block + 8 * i);
        for (int i = 0; i < 8; i++) {
            v[i] = h[i];
            v[i + 8] = krill_b2b_iv[i];
        }
        v[12] ^= t; /* frames stay far below 2**64 bytes: the high counter word is 0 */
        if (last) v[14] = ~v[14];
        KRILL_ROUND(0); KRILL_ROUND(1); KRILL_ROUND(2); KRILL_ROUND(3);
        KRILL_ROUND(4); KRILL_ROUND(5); KRILL_ROUND(6); KRILL_ROUND(7);
        KRILL_ROUND(8); KRILL_ROUND(9); KRILL_ROUND(10); KRILL_ROUND(11);
        for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
    }

    /* The state after the key block. The message is never empty (a frame has a header), so
       the key block is never the last one and this state can be reused for every frame. */
    static void krill_b2b_keyed(uint64_t h[8], const uint8_t *key, size_t key_len,
                                const uint8_t person[16]) {
        uint8_t block[128];
        for (int i = 0; i < 8; i++) h[i] = krill_b2b_iv[i];
        h[0] ^= 0x01010000ULL ^ ((uint64_t)key_len << 8) ^ KRILL_MAC_SIZE;
        h[6] ^= krill_le64(person);
        h[7] ^= krill_le64(person + 8);
        memset(block, 0, sizeof block);
        memcpy(block, key, key_len);
        krill_b2b_compress(h, block, 128, 0);
    }

    static void krill_b2b_mac(const uint64_t keyed[8], const uint8_t *msg, size_t len,
                              uint8_t out[KRILL_MAC_SIZE]) {
        uint64_t h[8];
        uint8_t block[128];
        uint64_t t = 128;
        memcpy(h, keyed, sizeof h);
        while (len > 128) {
            t += 128;
            krill_b2b_compress(h, msg, t, 0);
            msg += 128;
            len -= 128;
        }
        memset(block, 0, sizeof block);
        memcpy(block, msg, len);
        t += len;
        krill_b2b_compress(h, block, t, 1);
        for (int i = 0; i < KRILL_MAC_SIZE; i++) out[i] = (uint8_t)(h[i / 8] >> (8 * (i % 8)));
    }

    /* Time independent of where the first difference is. */
    static int krill_equal_ct(const uint8_t *a, const uint8_t *b, size_t n) {
        uint8_t diff = 0;
        for (size_t i = 0; i < n; i++) diff |= a[i] ^ b[i];
        return diff == 0;
    }

    static inline uint32_t krill_be32(const uint8_t *p) {
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    }

    static inline uint64_t krill_be48(const uint8_t *p) {
        return ((uint64_t)krill_be32(p) << 16) | ((uint64_t)p[4] << 8) | p[5];
    }

    static inline uint64_t krill_be64(const uint8_t *p) {
        return ((uint64_t)krill_be32(p) << 32) | krill_be32(p + 4);
    }

    static inline void krill_put_be(uint8_t *p, uint64_t v, int width) {
        for (int i = width - 1; i >= 0; i--) {
            p[i] = (uint8_t)v;
            v >>= 8;
        }
    }
    """
    void krill_b2b_keyed(uint64_t *h, const uint8_t *key, size_t key_len, const uint8_t *person)
    void krill_b2b_mac(const uint64_t *keyed, const uint8_t *msg, size_t length, uint8_t *out)
    bint krill_equal_ct(const uint8_t *a, const uint8_t *b, size_t n)
    uint64_t krill_le64(const uint8_t *p)
    uint32_t krill_be32(const uint8_t *p)
    uint64_t krill_be48(const uint8_t *p)
    uint64_t krill_be64(const uint8_t *p)
    void krill_put_be(uint8_t *p, uint64_t v, int width)


# C copies of the layout constants of the twin (a test checks that they agree).
cdef enum:
    C_HEADER_SIZE = 44
    C_MAC_SIZE = 16
    C_FRAME_OVERHEAD = 60
    C_ORIGIN_SIZE = 16
    C_VERSION = 1
    C_KNOWN_FLAGS = 0x03
    C_MAX_DOC_ID_LEN = 64
    C_KIND_COUNT = 7
    C_MIN_KEY_SIZE = 16
    C_MAX_KEY_SIZE = 64

cdef Py_ssize_t C_MAX_FRAME_SIZE = MAX_FRAME_SIZE
cdef Py_ssize_t C_MAX_PAYLOAD_SIZE = MAX_PAYLOAD_SIZE
cdef uint8_t C_MAGIC0 = MAGIC[0]
cdef uint8_t C_MAGIC1 = MAGIC[1]

#: Frame kind by wire value, as the twin's Kind members so both hand out the same objects.
cdef tuple _KINDS = (None,) + tuple(Kind)
#: MAC personalisation, zero-padded to BLAKE2b's 16 bytes as hashlib does.
cdef bytes _PERSON = MAC_PERSON.ljust(16, b"\0")


cdef inline bint _needs_doc(int kind) noexcept:
    return kind == 2 or kind == 3 or kind == 4 or kind == 6


# --- Field caches ---------------------------------------------------------------------------

# Traffic repeats a few origins and doc ids: each frame of a peer has its origin, each delta
# of a host doc its doc id. Small direct-mapped caches hand out the object made for the last
# equal field instead of a new one; that saves an allocation (and a UTF-8 decode) per field
# and lets dict lookups on the origin reuse its cached hash. Both are immutable, so sharing
# them is invisible to callers.
cdef enum:
    CACHE_BITS = 6
    CACHE_SLOTS = 1 << CACHE_BITS

#: Fibonacci hashing multiplier (2**64 / golden ratio): spreads the bits of the key.
cdef uint64_t _SPREAD = 0x9E3779B97F4A7C15ULL
cdef list _origin_cache = [None] * CACHE_SLOTS
cdef list _doc_cache = [None] * CACHE_SLOTS


cdef inline bytes _origin_at(const uint8_t *p):
    cdef Py_ssize_t slot = ((krill_le64(p) ^ krill_le64(p + 8)) * _SPREAD) >> (64 - CACHE_BITS)
    cdef object cached = _origin_cache[slot]
    if cached is not None and memcmp(PyBytes_AS_STRING(cached), p, C_ORIGIN_SIZE) == 0:
        return <bytes> cached
    cdef bytes origin = PyBytes_FromStringAndSize(<const char *> p, C_ORIGIN_SIZE)
    _origin_cache[slot] = origin
    return origin


cdef inline str _doc_at(const uint8_t *p, Py_ssize_t n):
    if n == 0:
        return ""
    cdef uint64_t mix
    cdef Py_ssize_t i
    if n >= 8:
        mix = krill_le64(p) ^ (krill_le64(p + n - 8) * _SPREAD)
    else:
        mix = 0
        for i in range(n):
            mix = (mix << 8) | p[i]
    cdef Py_ssize_t slot = ((mix ^ <uint64_t> n) * _SPREAD) >> (64 - CACHE_BITS)
    cdef object cached = _doc_cache[slot]
    # Only ASCII ids are cached: their UTF-8 bytes are their characters, so one memcmp
    # against the raw field proves that decoding it would give an equal str.
    if (
        cached is not None
        and PyUnicode_GET_LENGTH(cached) == n
        and memcmp(PyUnicode_DATA(cached), p, n) == 0
    ):
        return <str> cached
    cdef str doc
    try:
        doc = PyUnicode_DecodeUTF8(<const char *> p, n, NULL)
    except UnicodeDecodeError:
        raise MalformedFrameError("doc id is not valid UTF-8") from None
    if PyUnicode_IS_COMPACT_ASCII(doc):
        _doc_cache[slot] = doc
    return doc


# --- Key ------------------------------------------------------------------------------------

# The keyed BLAKE2b state of the last key used (copied out per call, so nothing run while a
# frame is decoded can change it under that frame).
# NOTE: this cache and the field caches below are module globals that rely on the GIL. The
# NOTE: module does not declare itself free-threading safe, so a free-threaded CPython keeps
# NOTE: the GIL on while it is loaded; declaring it safe would first need per-thread caches.
# NOTE: A swarm with two keys in turn (during a key rotation) rebuilds the state each switch,
# NOTE: one BLAKE2b block (about 0.25 us) per frame.
cdef bytes _cached_key = None
cdef uint64_t _cached_state[8]


cdef int _keyed_state(object key, uint64_t *out) except -1:
    global _cached_key
    if not isinstance(key, bytes):
        raise TypeError("key must be bytes")
    cdef Py_ssize_t n = PyBytes_GET_SIZE(key)
    if n < C_MIN_KEY_SIZE or n > C_MAX_KEY_SIZE:
        raise ValueError(f"key must be {MIN_KEY_SIZE}..{MAX_KEY_SIZE} bytes, got {n}")
    cdef const uint8_t *raw = <const uint8_t *> PyBytes_AS_STRING(key)
    if (
        _cached_key is None
        or PyBytes_GET_SIZE(_cached_key) != n
        or memcmp(PyBytes_AS_STRING(_cached_key), raw, n) != 0
    ):
        krill_b2b_keyed(_cached_state, raw, n, <const uint8_t *> PyBytes_AS_STRING(_PERSON))
        _cached_key = key
    memcpy(out, _cached_state, sizeof(_cached_state))
    return 0


# --- Frame ----------------------------------------------------------------------------------

@cython.final
@cython.freelist(64)
cdef class Frame:
    """One decoded frame, or one to encode. Immutable; equal when all fields are equal.

    See the twin's ``Frame`` for the attributes.
    """

    cdef readonly object kind
    cdef readonly int flags
    cdef readonly bytes origin
    cdef readonly uint32_t swarm
    cdef readonly uint64_t seq
    cdef readonly uint64_t ts_ms
    cdef readonly str doc
    cdef readonly bytes payload

    def __init__(self, kind, origin, swarm, seq, ts_ms, doc, payload, flags=0):
        _check_fields(kind, origin, swarm, seq, ts_ms, doc, payload, flags)
        self.kind = _KINDS[kind]
        self.flags = flags
        self.origin = origin
        self.swarm = swarm
        self.seq = seq
        self.ts_ms = ts_ms
        self.doc = doc
        self.payload = bytes(payload)

    def encode(self, key):
        return encode_frame(
            self.kind,
            self.origin,
            self.swarm,
            self.seq,
            self.ts_ms,
            self.doc,
            self.payload,
            key,
            self.flags,
        )

    cdef tuple _fields(self):
        return (
            self.kind,
            self.flags,
            self.origin,
            self.swarm,
            self.seq,
            self.ts_ms,
            self.doc,
            self.payload,
        )

    def __eq__(self, other):
        if not isinstance(other, Frame):
            return NotImplemented
        return self._fields() == (<Frame> other)._fields()

    def __hash__(self):
        return hash(self._fields())

    def __repr__(self):
        return (
            f"Frame(kind={self.kind.name}, flags=0x{self.flags:02x}, origin={self.origin.hex()}, "
            f"swarm={self.swarm}, seq={self.seq}, ts_ms={self.ts_ms}, doc={self.doc!r}, "
            f"payload=<{len(self.payload)} bytes>)"
        )

    def __reduce__(self):
        return (
            Frame,
            (
                self.kind,
                self.origin,
                self.swarm,
                self.seq,
                self.ts_ms,
                self.doc,
                self.payload,
                self.flags,
            ),
        )


# --- Argument checks (encoding side): the twin's, word for word -----------------------------

cdef _check_uint(str name, value, limit):
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if not 0 <= value <= limit:
        raise ValueError(f"{name} must be 0..{limit}, got {value}")


cdef tuple _check_fields(kind, origin, swarm, seq, ts_ms, doc, payload, flags):
    if not isinstance(kind, int):
        raise TypeError("kind must be an int")
    if not 0 < kind < C_KIND_COUNT:
        raise ValueError(f"unknown frame kind {kind}")
    if not isinstance(flags, int):
        raise TypeError("flags must be an int")
    if flags < 0 or flags & ~KNOWN_FLAGS:
        raise ValueError(f"flags must combine the FLAG_ constants, got {flags}")
    if not isinstance(origin, bytes):
        raise TypeError("origin must be bytes")
    if len(origin) != C_ORIGIN_SIZE:
        raise ValueError(f"origin must be {ORIGIN_SIZE} bytes, got {len(origin)}")
    _check_uint("swarm", swarm, MAX_SWARM)
    _check_uint("seq", seq, MAX_SEQ)
    _check_uint("ts_ms", ts_ms, MAX_TS_MS)
    if not isinstance(doc, str):
        raise TypeError("doc must be a str")
    cdef bytes doc_bytes = doc.encode()
    if len(doc_bytes) > C_MAX_DOC_ID_LEN:
        raise OversizedFrameError(
            f"doc id length {len(doc_bytes)} is over the {MAX_DOC_ID_LEN}-byte limit"
        )
    if not doc_bytes and _needs_doc(kind):
        raise ValueError(f"a {Kind(kind).name} frame needs a doc id")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError("payload must be bytes-like")
    size = memoryview(payload).nbytes
    if size > C_MAX_PAYLOAD_SIZE:
        raise OversizedFrameError(
            f"payload length {size} is over the {MAX_PAYLOAD_SIZE}-byte limit"
        )
    return doc_bytes, size


# --- Encoding -------------------------------------------------------------------------------

def encode_frame(kind, origin, swarm, seq, ts_ms, doc, payload, key, flags=0):
    cdef uint64_t keyed[8]
    _keyed_state(key, keyed)
    cdef bytes doc_bytes
    doc_bytes, _ = _check_fields(kind, origin, swarm, seq, ts_ms, doc, payload, flags)

    cdef Py_buffer view
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        return _encode(
            keyed,
            kind,
            flags,
            origin,
            swarm,
            seq,
            ts_ms,
            doc_bytes,
            <const uint8_t *> view.buf,
            view.len,
        )
    finally:
        PyBuffer_Release(&view)


cdef bytes _encode(
    const uint64_t *keyed,
    int kind,
    int flags,
    bytes origin,
    uint32_t swarm,
    uint64_t seq,
    uint64_t ts_ms,
    bytes doc_bytes,
    const uint8_t *payload,
    Py_ssize_t payload_len,
):
    cdef Py_ssize_t doc_len = PyBytes_GET_SIZE(doc_bytes)
    cdef Py_ssize_t body_end = C_HEADER_SIZE + doc_len + payload_len
    cdef bytes out = PyBytes_FromStringAndSize(NULL, body_end + C_MAC_SIZE)
    cdef uint8_t *p = <uint8_t *> PyBytes_AS_STRING(out)
    p[0] = C_MAGIC0
    p[1] = C_MAGIC1
    p[2] = C_VERSION
    p[3] = <uint8_t> kind
    p[4] = <uint8_t> flags
    p[5] = <uint8_t> doc_len
    krill_put_be(p + 6, <uint64_t> payload_len, 4)
    memcpy(p + 10, PyBytes_AS_STRING(origin), C_ORIGIN_SIZE)
    krill_put_be(p + 26, swarm, 4)
    krill_put_be(p + 30, seq, 8)
    krill_put_be(p + 38, ts_ms, 6)
    memcpy(p + C_HEADER_SIZE, PyBytes_AS_STRING(doc_bytes), doc_len)
    memcpy(p + C_HEADER_SIZE + doc_len, payload, payload_len)
    krill_b2b_mac(keyed, p, body_end, p + body_end)
    return out


# --- Decoding -------------------------------------------------------------------------------

cdef Py_ssize_t _read_header(const uint8_t *p, Py_ssize_t n, Py_ssize_t minimum) except -1:
    """Check the fixed header (steps 2-4 of decoding); return the frame size it announces."""
    # Step 2: magic and version first, since a later version may lay out the rest otherwise.
    if n < 3:
        raise TruncatedFrameError(f"frame is {n} bytes, too short for its magic and version")
    if p[0] != C_MAGIC0 or p[1] != C_MAGIC1:
        raise MalformedFrameError("frame does not start with the krill magic")
    if p[2] != C_VERSION:
        raise UnknownVersionError(
            f"frame format version {p[2]} is not supported (this release reads {VERSION})"
        )

    # Step 3: the whole fixed header must be there before any field is read.
    if n < minimum:
        raise TruncatedFrameError(f"frame is {n} bytes, shorter than the {minimum}-byte minimum")

    # Step 4: kind, flags and the two lengths, each against its limit.
    if p[3] == 0 or p[3] >= C_KIND_COUNT:
        raise MalformedFrameError(f"unknown frame kind {p[3]}")
    if p[4] & ~C_KNOWN_FLAGS:
        raise MalformedFrameError(f"unknown flag bits 0x{p[4] & ~C_KNOWN_FLAGS:02x}")
    if p[5] > C_MAX_DOC_ID_LEN:
        raise OversizedFrameError(f"doc id length {p[5]} is over the {MAX_DOC_ID_LEN}-byte limit")
    cdef Py_ssize_t payload_len = krill_be32(p + 6)
    if payload_len > C_MAX_PAYLOAD_SIZE:
        raise OversizedFrameError(
            f"payload length {payload_len} is over the {MAX_PAYLOAD_SIZE}-byte limit"
        )
    return C_FRAME_OVERHEAD + p[5] + payload_len


cdef Frame _decode_ptr(const uint8_t *p, Py_ssize_t n, const uint64_t *keyed):
    # Step 1: the size, before anything inside the frame is trusted.
    if n > C_MAX_FRAME_SIZE:
        raise OversizedFrameError(f"frame is {n} bytes, over the {MAX_FRAME_SIZE}-byte limit")

    # Steps 2-4: the fixed header.
    cdef Py_ssize_t size = _read_header(p, n, C_FRAME_OVERHEAD)

    # Step 5: the frame is exactly as long as its header says.
    if n < size:
        raise TruncatedFrameError(f"frame is {n} bytes, its header announces {size}")
    if n > size:
        raise MalformedFrameError(f"frame is {n} bytes, {n - size} more than its header announces")
    cdef int kind = p[3]
    cdef Py_ssize_t doc_len = p[5]
    if doc_len == 0 and _needs_doc(kind):
        raise MalformedFrameError(f"a {_KINDS[kind].name} frame needs a doc id")

    # Step 6: the MAC, before any field is handed out.
    cdef Py_ssize_t body_end = size - C_MAC_SIZE
    cdef uint8_t mac[C_MAC_SIZE]
    if keyed != NULL:
        krill_b2b_mac(keyed, p, body_end, mac)
        if not krill_equal_ct(mac, p + body_end, C_MAC_SIZE):
            raise BadMacError("frame MAC does not match the swarm key")

    # Step 7: the fields, set straight from the buffer.
    cdef Py_ssize_t doc_end = C_HEADER_SIZE + doc_len
    cdef str doc = _doc_at(p + C_HEADER_SIZE, doc_len)
    cdef Frame frame = Frame.__new__(Frame)
    frame.kind = _KINDS[kind]
    frame.flags = p[4]
    frame.origin = _origin_at(p + 10)
    frame.swarm = krill_be32(p + 26)
    frame.seq = krill_be64(p + 30)
    frame.ts_ms = krill_be48(p + 38)
    frame.doc = doc
    frame.payload = PyBytes_FromStringAndSize(<const char *> p + doc_end, body_end - doc_end)
    return frame


cdef Frame _decode(object data, const uint64_t *keyed):
    cdef Py_buffer view
    if PyBytes_CheckExact(data):
        return _decode_ptr(
            <const uint8_t *> PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), keyed
        )
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _decode_ptr(<const uint8_t *> view.buf, view.len, keyed)
    finally:
        PyBuffer_Release(&view)


def decode_frame(data, key):
    cdef uint64_t keyed[8]
    _keyed_state(key, keyed)
    return _decode(data, keyed)


def decode_frame_unverified(data):
    return _decode(data, NULL)


def peek_header(data):
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    cdef const uint8_t *p = <const uint8_t *> view.buf
    try:
        size = _read_header(p, view.len, C_HEADER_SIZE)
        # tuple.__new__ skips the Python-level constructor of the named tuple.
        return tuple.__new__(
            FrameHeader,
            (
                _KINDS[p[3]],
                p[4],
                _origin_at(p + 10),
                krill_be32(p + 26),
                krill_be64(p + 30),
                krill_be48(p + 38),
                size,
            ),
        )
    finally:
        PyBuffer_Release(&view)
