"""The PROXY protocol parser (ftpproto.proxyproto), sans-IO: bytes in, header or error out."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftpproto.proxyproto import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderReader,
    encode_v1,
    encode_v2,
    parse,
)

V4 = (("10.1.2.3", 51000), ("192.0.2.7", 9002))
V6 = (("2001:db8::1", 443), ("2001:db8::2", 9002))


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([command, family]) + len(body).to_bytes(2, "big") + body


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"PROXY TCP4 10.1.2.3 192.0.2.7 51000 9002\r\n", ProxyHeader(1, False, *V4, 42)),
        (encode_v1(*V6), ProxyHeader(1, False, *V6, len(encode_v1(*V6)))),
        (b"PROXY UNKNOWN\r\n", ProxyHeader(1, False, None, None, 15)),
        (b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", ProxyHeader(1, False, None, None, 39)),
        (encode_v2(*V4), ProxyHeader(2, False, *V4, 28)),
        (encode_v2(*V6), ProxyHeader(2, False, *V6, 52)),
        (encode_v2(None), ProxyHeader(2, True, None, None, 16)),
        # LOCAL with an address block (HAProxy's health checks may send one): still LOCAL
        (v2(0x20, 0x11, bytes(12)), ProxyHeader(2, True, None, None, 28)),
        # unspecified family: the connection's own endpoints apply
        (v2(0x21, 0x00, b""), ProxyHeader(2, False, None, None, 16)),
        # UNIX addresses: none usable as a client IP
        (v2(0x21, 0x31, bytes(216)), ProxyHeader(2, False, None, None, 232)),
        # TLVs after the addresses are skipped
        (
            encode_v2(*V4)[:14]
            + (12 + 7).to_bytes(2, "big")
            + encode_v2(*V4)[16:]
            + b"\x04\x00\x04abcd",
            ProxyHeader(2, False, *V4, 35),
        ),
    ],
)
def test_valid_headers(data: bytes, expected: ProxyHeader) -> None:
    assert parse(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET / HTTP/1.0\r\n\r\n",
        b"\x00\x00\x00\x10login|alice|x",  # a protocol frame without a header
        b"PROXY TCP4 10.1.2.3 192.0.2.7 51000\r\n",  # a port missing
        b"PROXY TCP4 10.1.2.3 192.0.2.7 51000 9002 7\r\n",  # one field too many
        b"PROXY TCP4 10.1.2.3 192.0.2.7 51000 70000\r\n",  # port out of range
        b"PROXY TCP4 10.1.2.3 192.0.2.7 051000 9002\r\n",  # leading zero
        b"PROXY TCP4 2001:db8::1 192.0.2.7 1 2\r\n",  # IPv6 in a TCP4 line
        b"PROXY TCP6 10.1.2.3 2001:db8::2 1 2\r\n",
        b"PROXY TCP4 10.1.2.300 192.0.2.7 1 2\r\n",
        b"PROXY TCP5 10.1.2.3 192.0.2.7 1 2\r\n",
        b"PROXY  TCP4 10.1.2.3 192.0.2.7 1 2\r\n",
        b"PROXY TCP4 10.1.2.3 192.0.2.7 1 2\n",  # LF alone
        b"PROXY TCP4 10.1.2.3\r192.0.2.7 1 2\r\n",
        b"PROXY TCP4 \xff.1.2.3 192.0.2.7 1 2\r\n",
        b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 14) + b"\r\n",  # over 107 bytes
        b"PROXY TCP4 10.1.2.3 192.0.2.7 51000 9002\r",  # truncated
        encode_v2(*V4)[:-1],  # truncated address block
        encode_v2(*V4)[:15],  # truncated fixed part
        V2_SIGNATURE[:-1] + b"X" + encode_v2(*V4)[12:],  # bad signature
        v2(0x11, 0x11, bytes(12)),  # version 1 in a v2 header
        v2(0x22, 0x11, bytes(12)),  # command 2
        v2(0x21, 0x41, bytes(12)),  # family 4
        v2(0x21, 0x13, bytes(12)),  # transport 3
        v2(0x21, 0x11, bytes(11)),  # IPv4 block too short
        v2(0x21, 0x21, bytes(12)),  # IPv6 block too short
        v2(0x21, 0x31, bytes(100)),  # UNIX block too short
        encode_v2(*V4) + b"x",  # bytes beyond the header
    ],
)
def test_malformed_and_truncated_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


def test_the_reader_never_asks_for_bytes_beyond_the_header() -> None:
    for header in (encode_v1(*V4), encode_v1(*V6), encode_v2(*V4), encode_v2(*V6), encode_v2(None)):
        stream = header + b"\x00\x00\x00\x05hello"
        reader = ProxyHeaderReader()
        taken = 0
        while reader.header is None:
            step = reader.wanted()
            assert step > 0 and taken + step <= len(header)
            reader.feed(stream[taken : taken + step])
            taken += step
        assert taken == len(header) and reader.wanted() == 0
        with pytest.raises(ProxyHeaderError):
            reader.feed(b"x")


def test_a_stream_that_is_no_header_is_refused_at_its_first_bytes() -> None:
    reader = ProxyHeaderReader()
    with pytest.raises(ProxyHeaderError, match="no PROXY protocol header"):
        reader.feed(b"\x00\x00\x00\x10login|alice"[: reader.wanted()])


@given(st.binary(max_size=300))
def test_random_bytes_give_a_header_or_a_header_error(data: bytes) -> None:
    try:
        header = parse(data)
    except ProxyHeaderError:
        return
    assert header.length == len(data)


@given(
    st.sampled_from([encode_v1(*V4), encode_v1(*V6), encode_v2(*V4), encode_v2(*V6)]),
    st.integers(0, 51),
    st.integers(0, 255),
)
def test_one_changed_byte_gives_a_header_or_a_header_error(
    header: bytes, index: int, value: int
) -> None:
    data = bytearray(header)
    data[index % len(data)] = value
    with contextlib.suppress(ProxyHeaderError):
        parse(bytes(data))


@given(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535)),
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535)),
)
def test_encoded_headers_parse_back(source: tuple[str, int], dest: tuple[str, int]) -> None:
    assert parse(encode_v1(source, dest)).source == source
    assert parse(encode_v2(source, dest)).destination == dest
