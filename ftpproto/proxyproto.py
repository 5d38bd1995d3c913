"""The PROXY protocol (versions 1 and 2), sans-IO: the header a load balancer sends first.

A TCP load balancer such as HAProxy (``send-proxy`` / ``send-proxy-v2``)
opens its own connection to the server, so the server sees the balancer's
address; the header it sends before any client byte carries the client's.

* **v1** is one text line of at most 107 bytes:
  ``PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n`` (``TCP6`` likewise), or
  ``PROXY UNKNOWN ...\\r\\n``.
* **v2** is binary: the 12-byte signature ``\\r\\n\\r\\n\\0\\r\\nQUIT\\n``, one byte
  of version (high nibble, 2) and command (low nibble: 0 ``LOCAL``, a
  connection the balancer made itself, e.g. a health check; 1 ``PROXY``),
  one byte of address family (high nibble: 0 unspecified, 1 IPv4, 2 IPv6,
  3 UNIX) and transport (low nibble: 0 unspecified, 1 stream, 2 datagram),
  a 2-byte big-endian length of what follows, then the addresses (IPv4: 12
  bytes, source and destination address then ports; IPv6: 36; UNIX: 216)
  and optional TLVs, which are skipped.

:class:`ProxyHeaderReader` is fed bytes and never asks for more than the
header holds (:meth:`~ProxyHeaderReader.wanted`), so the caller can read
exactly that many from the socket and leave the client's first bytes there.
Anything malformed raises :class:`ProxyHeaderError`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderReader",
    "encode_v1",
    "encode_v2",
    "parse",
]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the longest v1 line, CRLF included
V2_FIXED = 16  # signature, version/command, family/transport, length
V2_MAX_LENGTH = V2_FIXED + 65535
_FIRST = 12  # bytes read before the version is known (the shortest v1 line is 15)
_V2_ADDRESS_SIZE = {0x1: 12, 0x2: 36, 0x3: 216}
_PORTS = struct.Struct(">HH")


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    """A parsed header: ``source`` is the client's ``(ip, port)``, None when not given.

    ``local`` is True for a v2 ``LOCAL`` command (the balancer's own
    connection, such as a health check); ``source`` and ``destination``
    are None then, and for v1 ``UNKNOWN`` and v2 unspecified or UNIX
    addresses (the connection's own endpoints apply).
    """

    version: int
    local: bool
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int  # bytes the header took on the wire


class ProxyHeaderReader:
    """Incremental parser: :meth:`feed` bytes until :attr:`header` is set.

    Feed at most :meth:`wanted` bytes at a time: the reader never needs
    more than the header holds, and refuses bytes beyond it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._total = _FIRST  # bytes the header takes, as far as known
        self.header: ProxyHeader | None = None

    def wanted(self) -> int:
        """How many bytes to read next (0 once the header is complete)."""
        if self.header is not None:
            return 0
        if self._buffer.startswith(V1_PREFIX):
            return 1  # a v1 line ends at its CRLF: read it byte by byte
        return self._total - len(self._buffer)

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Take ``data``; return the header once complete, else None (feed more)."""
        if self.header is not None or len(data) > self.wanted():
            raise ProxyHeaderError("bytes beyond the PROXY header")
        self._buffer += data
        buffer = bytes(self._buffer)
        if len(buffer) < _FIRST:
            _check_prefix(buffer)
            return None
        if buffer.startswith(V1_PREFIX):
            if buffer.endswith(b"\r\n"):
                self.header = _parse_v1(buffer)
            elif len(buffer) >= V1_MAX_LENGTH or b"\n" in buffer or b"\r" in buffer[:-1]:
                raise ProxyHeaderError("PROXY v1 line without CRLF within 107 bytes")
            return self.header
        if not buffer.startswith(V2_SIGNATURE):
            raise ProxyHeaderError("no PROXY protocol header")
        if len(buffer) < V2_FIXED:
            self._total = V2_FIXED
            return None
        self._total = V2_FIXED + int.from_bytes(buffer[14:16], "big")
        if len(buffer) == self._total:
            self.header = _parse_v2(buffer)
        return self.header


def _check_prefix(buffer: bytes) -> None:
    if not (V1_PREFIX.startswith(buffer[:6]) or V2_SIGNATURE.startswith(buffer)):
        raise ProxyHeaderError("no PROXY protocol header")


def parse(data: bytes) -> ProxyHeader:
    """Parse one complete header that is exactly ``data``."""
    reader = ProxyHeaderReader()
    rest = memoryview(data)
    while reader.header is None:
        step = reader.wanted()
        if len(rest) < step:
            raise ProxyHeaderError("truncated PROXY header")
        reader.feed(bytes(rest[:step]))
        rest = rest[step:]
    if rest:
        raise ProxyHeaderError("bytes beyond the PROXY header")
    return reader.header


def _parse_v1(line: bytes) -> ProxyHeader:
    try:
        text = line[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from None
    parts = text.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(1, False, None, None, len(line))
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"malformed PROXY v1 line: {text[:60]!r}")
    version = 4 if parts[1] == "TCP4" else 6
    source = (_v1_address(parts[2], version), _v1_port(parts[4]))
    destination = (_v1_address(parts[3], version), _v1_port(parts[5]))
    return ProxyHeader(1, False, source, destination, len(line))


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"bad address in PROXY v1 line: {text[:40]!r}") from None
    if address.version != version:
        raise ProxyHeaderError(f"IPv{address.version} address in a TCP{version} line")
    return str(address)


def _v1_port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ProxyHeaderError(f"bad port in PROXY v1 line: {text[:10]!r}")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"bad port in PROXY v1 line: {port}")
    return port


def _parse_v2(data: bytes) -> ProxyHeader:
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"PROXY protocol version {version} is not 2")
    if command not in (0, 1):
        raise ProxyHeaderError(f"unknown PROXY v2 command {command}")
    family, transport = data[13] >> 4, data[13] & 0x0F
    if family > 3 or transport > 2:
        raise ProxyHeaderError(f"unknown PROXY v2 address family/transport 0x{data[13]:02x}")
    body = data[V2_FIXED:]
    if command == 0:
        return ProxyHeader(2, True, None, None, len(data))
    size = _V2_ADDRESS_SIZE.get(family, 0)
    if len(body) < size:
        raise ProxyHeaderError(f"PROXY v2 address block of {len(body)} bytes, need {size}")
    if family in (1, 2):
        width = 4 if family == 1 else 16
        source = ipaddress.ip_address(body[:width])
        target = ipaddress.ip_address(body[width : 2 * width])
        sport, dport = _PORTS.unpack_from(body, 2 * width)
        return ProxyHeader(2, False, (str(source), sport), (str(target), dport), len(data))
    return ProxyHeader(2, False, None, None, len(data))


def encode_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A v1 line for a TCP connection from ``source`` to ``destination``."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return (f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n").encode(
        "ascii"
    )


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None = None) -> bytes:
    """A v2 header: ``PROXY`` for a TCP connection, or ``LOCAL`` when ``source`` is None."""
    if source is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + b"\x00\x00"
    target = destination or (("::" if ":" in source[0] else "0.0.0.0"), 0)
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(target[0])
    family = 0x11 if src.version == 4 else 0x21
    body = src.packed + dst.packed + _PORTS.pack(source[1], target[1])
    return V2_SIGNATURE + bytes([0x21, family]) + len(body).to_bytes(2, "big") + body
