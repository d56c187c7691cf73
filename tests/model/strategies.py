"""Hypothesis strategies for valid nodes of every type.

They are written from the documented rules, not from the model's own rule objects, so a rule
that wrongly refuses a valid value fails the round-trip tests.
"""

from __future__ import annotations

import string
from collections.abc import Callable

from hypothesis import strategies as st

from krill_crdt.model import CATALOG, SCHEMA, Meta, Node, NodeState, NodeType

MetaDict = dict[str, object]

# Explicit alphabets rather than Unicode categories: they generate an order of magnitude
# faster, and still mix ASCII punctuation, accents, symbols, emoji, a zero-width joiner and a
# private-use character. The fuzz tests cover arbitrary Unicode.
_UNICODE = "éü€中😀\u200d\ue000"
# Anything but whitespace, control characters and the separators "/", "+", "#" may be in an id.
ID_ALPHABET = string.ascii_letters + string.digits + "-_.:@~!$%&*=?'\"()[]{}<>|\\^`," + _UNICODE
TEXT_ALPHABET = ID_ALPHABET + " /+#"

ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=24)
plain_text = st.text(alphabet=TEXT_ALPHABET, max_size=40)

finite = st.floats(allow_nan=False, allow_infinity=False)
non_negative = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)


def id_lists(max_size: int = 4) -> st.SearchStrategy[list[str]]:
    return st.lists(ids, max_size=max_size, unique=True)


_ALNUM = string.ascii_lowercase + string.digits
_labels = st.one_of(
    st.text(alphabet=_ALNUM, min_size=1, max_size=6),
    st.builds(lambda a, b: f"{a}-{b}", st.text(alphabet=_ALNUM, min_size=1, max_size=4),
              st.text(alphabet=_ALNUM, min_size=1, max_size=4)),
)  # fmt: skip
host_names = st.lists(_labels, min_size=1, max_size=3).map(".".join)
addresses = st.one_of(st.just(""), host_names, st.ip_addresses().map(str))
urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "https"]),
    st.one_of(host_names, st.ip_addresses(v=4).map(str), st.just("[::1]")),
    st.one_of(st.just(""), st.integers(1, 65535).map(lambda port: f":{port}")),
    st.sampled_from(["", "/", "/hook", "/a/b?x=1", "/api/v1/events#top"]),
)
cron_fields = st.sampled_from(["*", "*/5", "0", "1-5", "MON-FRI", "0,30", "?", "L", "5#2"])
cron_lines = st.integers(5, 6).flatmap(
    lambda count: st.lists(cron_fields, min_size=count, max_size=count).map(" ".join)
)
_segments = st.text(alphabet=string.ascii_letters + string.digits + "._~-", min_size=1,
                    max_size=8).filter(lambda segment: segment not in (".", ".."))  # fmt: skip
web_paths = st.lists(_segments, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
_topic_levels = st.one_of(st.text(alphabet="abc019 _-$", min_size=1, max_size=6), st.just("+"))
topic_filters = st.tuples(st.lists(_topic_levels, min_size=1, max_size=4), st.booleans()).map(
    lambda parts: "/".join([*parts[0], "#"] if parts[1] else parts[0])
)
serial_ports = st.one_of(
    st.builds(lambda kind, n: f"/dev/tty{kind}{n}", st.sampled_from(["USB", "ACM", "AMA", "S"]),
              st.integers(0, 9)),
    st.sampled_from(["loop://", "socket://10.0.0.5:7777", "rfc2217://h:2217", "spy://loop://",
                     "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"]),
)  # fmt: skip
formulas = st.text(alphabet="abxyz0123456789+-*/() .", min_size=1, max_size=60).filter(str.strip)
token_hashes = st.one_of(
    st.just(""), st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
)


# Descriptions may span lines: line feeds and tabs are the only control characters allowed.
descriptions = st.text(alphabet=TEXT_ALPHABET + "\n\t", max_size=40)
timezones = st.sampled_from(["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+2"])


def _data_point() -> st.SearchStrategy[MetaDict]:
    values: dict[str, st.SearchStrategy[object]] = {
        "number": finite,
        "bool": st.booleans(),
        "text": plain_text,
    }

    def for_type(data_type: str) -> st.SearchStrategy[MetaDict]:
        snapshot = st.one_of(
            st.just({}),
            st.fixed_dictionaries(
                {"snapshot_value": values[data_type], "snapshot_time": non_negative}
            ),
        )
        base = st.fixed_dictionaries(
            {
                "data_type": st.just(data_type),
                "unit": st.sampled_from(["", "°C", "kWh", "m³/h", "%"]),
                "precision": st.integers(0, 15),
                "targets": id_lists(),
            }
        )
        return st.tuples(base, snapshot).map(lambda parts: {**parts[0], **parts[1]})

    return st.sampled_from(["number", "bool", "text"]).flatmap(for_type)


def _serial_device() -> st.SearchStrategy[MetaDict]:
    parse = st.one_of(
        st.fixed_dictionaries({"parse": st.sampled_from(["number", "text"])}),
        st.fixed_dictionaries(
            {
                "parse": st.just("regex"),
                "pattern": st.sampled_from([r"T=(\d+)", r"^(.*)$", r"(?P<v>[0-9.]+)C"]),
            }
        ),
    )
    base = st.fixed_dictionaries(
        {
            "port": serial_ports,
            "baudrate": st.sampled_from([300, 9600, 19200, 57600, 115200, 1000000]),
            "bytesize": st.sampled_from([5, 6, 7, 8]),
            "parity": st.sampled_from(["N", "E", "O", "M", "S"]),
            "stopbits": st.sampled_from([1, 1.5, 2]),
            "terminator": st.sampled_from(["\n", "\r\n", "\r"]),
        }
    )
    return st.tuples(base, parse).map(lambda parts: {**parts[0], **parts[1]})


def _logic_gate() -> st.SearchStrategy[MetaDict]:
    return st.sampled_from(["AND", "OR", "NOT", "XOR", "NAND", "NOR"]).flatmap(
        lambda operation: st.fixed_dictionaries(
            {
                "operation": st.just(operation),
                "sources": id_lists(1 if operation == "NOT" else 4),
                "targets": id_lists(),
            }
        )
    )


def _dicts(**fields: st.SearchStrategy[object]) -> st.SearchStrategy[MetaDict]:
    return st.fixed_dictionaries(fields)


#: A strategy of valid meta dicts for each node type.
META: dict[NodeType, Callable[[], st.SearchStrategy[MetaDict]]] = {
    NodeType.Server: lambda: _dicts(address=addresses, port=st.integers(1, 65535)),
    NodeType.Client: lambda: _dicts(user_agent=plain_text, token_id=st.one_of(st.just(""), ids)),
    NodeType.Project: lambda: _dicts(description=descriptions),
    NodeType.Peer: lambda: _dicts(peer_id=ids, endpoint=st.one_of(st.just(""), urls)),
    NodeType.Pin: lambda: _dicts(
        pin=st.integers(0, 53),
        mode=st.sampled_from(["input", "output", "pwm"]),
        pull=st.sampled_from(["none", "up", "down"]),
        initial=st.sampled_from(["low", "high"]),
        shutdown=st.sampled_from(["low", "high"]),
        active_low=st.booleans(),
        targets=id_lists(),
    ),
    NodeType.DataPoint: _data_point,
    NodeType.DiscardAbove: lambda: _dicts(threshold=finite),
    NodeType.DiscardBelow: lambda: _dicts(threshold=finite),
    NodeType.Deadband: lambda: _dicts(band=non_negative),
    NodeType.Debounce: lambda: _dicts(window_ms=st.integers(1, 600_000)),
    NodeType.SerialDevice: _serial_device,
    NodeType.HighThreshold: lambda: _dicts(
        level=finite, hysteresis=non_negative, targets=id_lists()
    ),
    NodeType.LowThreshold: lambda: _dicts(
        level=finite, hysteresis=non_negative, targets=id_lists()
    ),
    NodeType.CronTimer: lambda: _dicts(
        expression=cron_lines, timezone=timezones, targets=id_lists()
    ),
    NodeType.Timer: lambda: _dicts(
        interval_ms=st.integers(100, 31 * 24 * 3600 * 1000),
        one_shot=st.booleans(),
        targets=id_lists(),
    ),
    NodeType.Button: lambda: _dicts(targets=id_lists()),
    NodeType.IncomingWebHook: lambda: _dicts(
        path=web_paths,
        token_hash=token_hashes,
        targets=id_lists(),
    ),
    NodeType.LogicGate: _logic_gate,
    NodeType.Calculation: lambda: _dicts(
        expression=formulas, sources=id_lists(), targets=id_lists()
    ),
    NodeType.Compute: lambda: _dicts(
        function=st.sampled_from(["min", "max", "mean", "sum", "count", "last"]),
        range_ms=st.integers(1, 366 * 24 * 3600 * 1000),
        sources=id_lists(),
        targets=id_lists(),
    ),
    NodeType.OutgoingWebHook: lambda: _dicts(
        url=urls,
        method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
        timeout_ms=st.integers(100, 120_000),
        retries=st.integers(0, 10),
        sources=id_lists(),
        targets=id_lists(),
    ),
    NodeType.MqttBridge: lambda: _dicts(topic=topic_filters, qos=st.sampled_from([0, 1, 2])),
}


def _drop_self_edges(node_id: str, meta: MetaDict) -> MetaDict:
    # A node may not name itself in its own chain lists; that case has its own test.
    return {
        key: [item for item in value if item != node_id] if isinstance(value, list) else value
        for key, value in meta.items()
    }


@st.composite
def nodes(draw: st.DrawFn, node_type: NodeType | None = None) -> Node:
    """A valid node of ``node_type``, or of any type."""
    chosen = draw(st.sampled_from(list(NodeType))) if node_type is None else node_type
    node_id = draw(ids)
    parent = draw(st.one_of(st.none(), ids.filter(lambda parent: parent != node_id)))
    return Node(
        id=node_id,
        parent=parent,
        host=draw(ids),
        type=chosen,
        name=draw(plain_text),
        state=draw(st.sampled_from(list(NodeState))),
        meta=_meta_of(chosen, _drop_self_edges(node_id, draw(META[chosen]()))),
        updated=draw(st.floats(min_value=0.0, max_value=4e9, allow_nan=False)),
        schema=SCHEMA,
    )


def _meta_of(node_type: NodeType, data: MetaDict) -> Meta:
    return CATALOG[node_type].meta.from_dict(data)


json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | finite | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)

# Values no JSON decoder produces but a Python caller could pass.
python_values = (
    json_values
    | st.integers()
    | st.just(10**5000)
    | st.binary(max_size=8)
    | st.frozensets(st.integers(), max_size=3)
    | st.tuples(st.text(max_size=4))
    | st.just(float("nan"))
    | st.just(object())
)
