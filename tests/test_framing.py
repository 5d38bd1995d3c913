"""Tests for ftpproto.framing: length-prefixed frames and the incremental decoder."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftpproto.errors import ErrorCode, FramingError
from ftpproto.framing import HEADER_SIZE, MAX_FRAME_SIZE, FrameDecoder, encode_frame


def header(length: int) -> bytes:
    """The 4-byte big-endian length prefix for ``length``."""
    return struct.pack(">I", length)


def drain(decoder: FrameDecoder) -> list[bytes]:
    """Every complete frame the decoder holds right now."""
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"x", b"\x00\x00\x00\x01x"),
        (b"FileTransfer|pwd", b"\x00\x00\x00\x10FileTransfer|pwd"),
        (b"\x00" * 256, b"\x00\x00\x01\x00" + b"\x00" * 256),
        (b"a" * MAX_FRAME_SIZE, header(MAX_FRAME_SIZE) + b"a" * MAX_FRAME_SIZE),
    ],
)
def test_encode_frame(payload: bytes, expected: bytes) -> None:
    assert encode_frame(payload) == expected


@pytest.mark.parametrize(
    ("payload", "max_size"),
    [
        (b"", MAX_FRAME_SIZE),
        (b"a" * (MAX_FRAME_SIZE + 1), MAX_FRAME_SIZE),
        (b"abcd", 3),
    ],
)
def test_encode_frame_refuses(payload: bytes, max_size: int) -> None:
    with pytest.raises(FramingError) as info:
        encode_frame(payload, max_size)
    assert info.value.code == ErrorCode.FRAMING


@pytest.mark.parametrize(
    "payload", [b"x", b"FileTransfer|get|a", bytes(range(256)), b"z" * MAX_FRAME_SIZE]
)
def test_round_trip(payload: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(payload))
    assert decoder.next_frame() == payload
    assert decoder.next_frame() is None
    assert decoder.buffered == 0


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.integers(1, 50))
def test_round_trip_any_chunking(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    got: list[bytes] = []
    for i in range(0, len(stream), chunk):
        decoder.feed(stream[i : i + chunk])
        got.extend(drain(decoder))
    assert got == payloads
    assert decoder.buffered == 0


def test_two_frames_in_one_chunk() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"first") + encode_frame(b"second"))
    assert decoder.next_frame() == b"first"
    assert decoder.next_frame() == b"second"
    assert decoder.next_frame() is None


def test_one_frame_byte_by_byte() -> None:
    data = encode_frame(b"hello")
    decoder = FrameDecoder()
    for i, byte in enumerate(data[:-1]):
        decoder.feed(bytes([byte]))
        assert decoder.next_frame() is None, f"frame complete after only {i + 1} bytes"
    decoder.feed(data[-1:])
    assert decoder.next_frame() == b"hello"


@pytest.mark.parametrize(
    ("length", "max_size"),
    [
        (0, MAX_FRAME_SIZE),
        (MAX_FRAME_SIZE + 1, MAX_FRAME_SIZE),
        (0xFFFFFFFF, MAX_FRAME_SIZE),
        (11, 10),
    ],
)
def test_bad_header_raises_before_payload(length: int, max_size: int) -> None:
    decoder = FrameDecoder(max_size)
    decoder.feed(header(length))
    with pytest.raises(FramingError) as info:
        decoder.next_frame()
    assert info.value.code == ErrorCode.FRAMING
    assert decoder.buffered == HEADER_SIZE
    assert decoder.wanted() <= max_size + HEADER_SIZE


def test_bad_header_raises_after_a_good_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"ok") + header(0xFFFFFFFF))
    assert decoder.next_frame() == b"ok"
    with pytest.raises(FramingError):
        decoder.next_frame()


def test_frame_at_custom_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_size=10)
    decoder.feed(header(10) + b"0123456789")
    assert decoder.next_frame() == b"0123456789"


@pytest.mark.parametrize(
    ("fed", "expected"),
    [
        (b"", 4),
        (b"\x00", 3),
        (b"\x00\x00\x00", 1),
        (header(10), 10),
        (header(10) + b"abc", 7),
        (header(10) + b"abcdefghi", 1),
        (header(0xFFFFFFFF), MAX_FRAME_SIZE),
    ],
)
def test_wanted(fed: bytes, expected: int) -> None:
    decoder = FrameDecoder()
    decoder.feed(fed)
    assert decoder.wanted() == expected


def test_wanted_is_header_after_a_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"abc"))
    assert decoder.next_frame() == b"abc"
    assert decoder.wanted() == HEADER_SIZE


@pytest.mark.parametrize(
    ("after", "limit", "expected_raw", "left"),
    [
        (b"filedata", 100, b"filedata", 0),
        (b"filedata", 4, b"file", 4),
        (b"filedata", 0, b"", 8),
        (b"", 10, b"", 0),
    ],
)
def test_take_raw_after_frame(after: bytes, limit: int, expected_raw: bytes, left: int) -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"FileTransfer|get|ready|8") + after)
    assert decoder.next_frame() == b"FileTransfer|get|ready|8"
    assert decoder.buffered == len(after)
    assert decoder.take_raw(limit) == expected_raw
    assert decoder.buffered == left


def test_frame_after_raw_bytes() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"head") + b"RAW" + encode_frame(b"tail"))
    assert decoder.next_frame() == b"head"
    assert decoder.take_raw(3) == b"RAW"
    assert decoder.next_frame() == b"tail"
    assert decoder.buffered == 0
