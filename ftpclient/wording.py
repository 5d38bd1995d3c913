"""Connection problems in the user's words, never ``[Errno 111]`` or a byte count to come.

:func:`connect_problem` words a failed connect (``connection refused``, ``no
such host``, ...); :func:`lost_problem` words a lost connection (``the
server closed the connection``, ...).  :class:`TransferTrack` follows a
transfer (wrapping its progress bar, if any) so that a connection lost
during it is reported with what moved and the exact command that continues
it: ``... during the transfer of big.bin (102.1 MiB of 300.0 MiB received;
reget big.bin continues it)``.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from ftpproto.errors import ConnectionClosed, ServerClosed
from ftpproto.units import format_size

if TYPE_CHECKING:
    from ftpclient.client import Monitor

__all__ = ["TransferTrack", "certificate_refused", "connect_problem", "lost_problem"]

_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "the server reset the connection",
    errno.EPIPE: "the server closed the connection",
    errno.ESHUTDOWN: "the connection was shut down",
    errno.ECONNABORTED: "the connection was shut down",
    errno.ETIMEDOUT: "no answer in time",
    errno.EHOSTUNREACH: "the host cannot be reached",
    errno.ENETUNREACH: "the network cannot be reached",
    errno.EADDRNOTAVAIL: "that address is not available here",
}


def _words(exc: BaseException) -> str:
    if isinstance(exc, ServerClosed):  # it said why (it timed out): say that
        return str(exc)
    if isinstance(exc, ConnectionClosed):
        return "the server closed the connection"
    if isinstance(exc, TimeoutError):
        return "the server did not answer in time"
    if isinstance(exc, OSError) and exc.errno in _ERRNO_WORDS:
        return _ERRNO_WORDS[exc.errno]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def certificate_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is the server's TLS certificate failing verification (no retry helps)."""
    import ssl  # here, not at the top (nor below): it costs 5-10 ms at every start

    return isinstance(exc, ssl.SSLCertVerificationError)


def connect_problem(exc: BaseException) -> str:
    """Why a connection could not be opened, e.g. ``connection refused``."""
    import ssl

    if isinstance(exc, socket.gaierror):
        return "no such host"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate refused: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return _words(exc)


def lost_problem(exc: BaseException) -> str:
    """Why an open connection was lost, e.g. ``the server reset the connection``."""
    return _words(exc)


class TransferTrack:
    """A ``Monitor`` that counts what a transfer moved and passes everything on to ``inner``."""

    def __init__(self, direction: str, name: str, again: str, inner: Monitor | None) -> None:
        self.direction = direction
        self.name = name
        self.again = again  # the command that continues this transfer, e.g. "reget big.bin"
        self.inner = inner
        self.total: int | None = None
        self.done = 0

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        if self.inner:
            self.inner.start(total, done)

    def update(self, count: int) -> None:
        self.done += count
        if self.inner:
            self.inner.update(count)

    def close(self) -> None:
        if self.inner:
            self.inner.close()

    def progress(self) -> str:
        """``NAME (X of Y received; AGAIN continues it)``: what moved and how to go on."""
        moved = "received" if self.direction == "get" else "sent"
        return (
            f"{self.name} ({format_size(self.done)} of {format_size(self.total or 0)} {moved}; "
            f"{self.again} continues it)"
        )

    def describe(self) -> str:
        """``during the transfer of NAME (...)``, or ``before ...`` if no byte was due yet."""
        if self.total is None:
            return f"before the transfer of {self.name} started ({self.again} tries it again)"
        return f"during the transfer of {self.progress()}"
