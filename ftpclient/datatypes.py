"""The values and interfaces of :class:`~ftpclient.client.FileTransferClient`'s API.

What its methods return (listing entries, transfer results, status, quota),
what they take (a progress :class:`Monitor`, a key :class:`Signer`) and the
:class:`LocalError` they raise for a problem with a local file.  Kept apart
from the client so that modules that only handle these values (the output
formatting, the shell) need not know the protocol.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

__all__ = [
    "Entry",
    "LocalError",
    "Monitor",
    "Quota",
    "Signer",
    "Stat",
    "TransferResult",
    "TreeEntry",
]


class Monitor(Protocol):
    """Told how a transfer advances (a progress bar, for instance)."""

    def start(self, total: int, done: int) -> None:
        """The file has ``total`` bytes, ``done`` of them there already (a resume)."""

    def update(self, count: int) -> None:
        """``count`` more bytes moved."""

    def close(self) -> None:
        """The transfer ended, well or not."""


class Signer(Protocol):
    """A private key for :meth:`FileTransferClient.login_key` (see ``ftpclient.identity``)."""

    @property
    def blob(self) -> bytes:
        """The public key in OpenSSH's wire form."""

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data``."""


class LocalError(Exception):
    """A problem with a local file (the remote side is fine)."""


class Entry(NamedTuple):
    """One line of a remote listing."""

    name: str
    type: str  # file, dir, link or other
    size: int
    mtime: int  # seconds since the epoch


class TreeEntry(NamedTuple):
    """One entry of a remote tree (``tree``): ``path`` relative to its root, ``/``-separated."""

    type: str  # file, dir, link or other
    path: str
    size: int
    mtime: int
    blake3: str | None  # with digests=True, for a file whose digest the server knew or made


class TransferResult(NamedTuple):
    """What a finished, verified transfer moved."""

    remote: str
    local: str
    size: int
    blake3: str
    seconds: float
    offset: int = 0  # where a resumed transfer started


class Stat(NamedTuple):
    """Facts about one remote path."""

    path: str
    type: str
    size: int
    mtime: int
    blake3: str | None = None


class Quota(NamedTuple):
    """A user's space on the server."""

    used: int
    limit: int | None
    available: int
