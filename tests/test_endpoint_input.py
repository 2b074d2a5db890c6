"""Whatever arrives, reading a frame gives a typed message or a Garbage error, never a crash."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from session_server.protocol import ErrorCode
from session_server.signalling.endpoint import Garbage, read_message

LIMIT = 64 * 1024

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["hello", "join", "leave", "offer", "answer", "candidate", "link"])},
    optional={
        "room": st.text() | st.just("s1@20261124T1400Z"),
        "sdp": st.text(),
        "device_token": json_values,
        "ticket": json_values,
        "candidate": json_values,
        "state": st.text(),
        "sdp_mline_index": json_values,
    },
)


def read(frame: dict[str, object]) -> None:
    try:
        read_message(frame, LIMIT)
    except Garbage as bad:
        assert bad.error.code in {
            ErrorCode.BAD_JSON,
            ErrorCode.UNKNOWN_TYPE,
            ErrorCode.INVALID,
            ErrorCode.TOO_LARGE,
        }


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_crash_the_reader(data: bytes) -> None:
    read({"type": "websocket.receive", "bytes": data})


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_arbitrary_json_never_crashes_the_reader(value: object) -> None:
    read({"type": "websocket.receive", "text": json.dumps(value)})


@settings(max_examples=250, deadline=None)
@given(message_like)
def test_message_shaped_json_never_crashes_the_reader(value: dict[str, object]) -> None:
    read({"type": "websocket.receive", "text": json.dumps(value)})


def test_a_frame_with_neither_text_nor_bytes_is_garbage() -> None:
    read({"type": "websocket.receive"})
