"""The server's side of the PROXY protocol: whom a connection really comes from.

With ``proxy_protocol: true`` every connection must come from an address in
``proxy_trusted`` and begin with a PROXY protocol header
(:mod:`ftpproto.proxyproto`), read here with a short timeout before the
session starts; the client address it carries is the session's address for
limits, bans, logs and audit lines.  A connection from anywhere else, or
without a valid header, is closed with a log line; a v2 ``LOCAL`` header (a
balancer's health check) is closed quietly.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

from ftpproto.proxyproto import ProxyHeaderError, ProxyHeaderReader

__all__ = ["HEADER_TIMEOUT", "Networks", "client_address", "read_header"]

log = logging.getLogger("ftpserver.session")

HEADER_TIMEOUT = 5.0  # seconds a trusted balancer has to send its header
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Networks:
    """A set of networks (``proxy_trusted``), asked whether an address is in one."""

    def __init__(self, specs: Iterable[str]) -> None:
        self.networks: list[Network] = [ipaddress.ip_network(s, strict=False) for s in specs]

    def __contains__(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


def read_header(sock: socket.socket, timeout: float = HEADER_TIMEOUT) -> ProxyHeaderReader:
    """Read exactly one PROXY header from ``sock`` (nothing after it) within ``timeout``.

    Raises :class:`ProxyHeaderError` for a malformed or truncated header,
    ``TimeoutError`` or ``OSError`` when the peer is too slow or goes away.
    """
    reader = ProxyHeaderReader()
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        while reader.header is None:
            data = sock.recv(reader.wanted())
            if not data:
                raise ProxyHeaderError("connection closed inside the PROXY header")
            reader.feed(data)
    finally:
        sock.settimeout(previous)
    return reader


def client_address(
    sock: socket.socket, peer: tuple[str, int], trusted: Networks, timeout: float = HEADER_TIMEOUT
) -> tuple[str, int] | None:
    """The client's ``(ip, port)`` from the header on ``sock``; None: close the connection.

    ``peer`` is the connection's own source (the balancer).  A header
    without addresses (v1 ``UNKNOWN``, v2 unspecified) leaves ``peer``.
    """
    where = f"{peer[0]}:{peer[1]}"
    if peer[0] not in trusted:
        log.warning("refused %s: not a trusted proxy (proxy_trusted)", where)
        return None
    try:
        header = read_header(sock, timeout).header
    except ProxyHeaderError as exc:
        log.warning("refused %s: %s", where, exc)
        return None
    except (OSError, TimeoutError) as exc:
        log.warning("refused %s: no PROXY header (%s)", where, exc or "timed out")
        return None
    assert header is not None
    if header.local:
        log.debug("closed %s: PROXY LOCAL (a health check)", where)
        return None
    source = header.source or peer
    address = ipaddress.ip_address(source[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped), source[1]
    return source
