"""Where a server keeps what clients upload: a local home folder, or (``ours-s3``) a bucket.

The upload workloads check what arrived through a :class:`Stored`: the size
of a name, its BLAKE3 digest as stored, the names beginning with a string,
and removing them after the run.  :class:`LocalStored` is a home folder;
:class:`bench.s3columns.S3Stored` is a key prefix in a bucket.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

from bench.measure import MIB
from ftpproto.digest import new_hasher

__all__ = ["LocalStored", "Stored", "digest_file"]


def digest_file(path: Path) -> str:
    """The BLAKE3 digest of a local file."""
    hasher = new_hasher()
    with open(path, "rb") as source:
        while chunk := source.read(4 * MIB):
            hasher.update(chunk)
    return hasher.hexdigest()


class Stored(Protocol):
    """The files a server stored for the benchmark user."""

    def size(self, name: str) -> int:
        """The size of ``name``; FileNotFoundError if it is not there."""

    def digest(self, name: str) -> str:
        """The BLAKE3 digest of ``name`` as stored (read back in full)."""

    def names(self, start: str) -> list[str]:
        """The sorted names beginning with ``start``."""

    def remove(self, start: str) -> None:
        """Remove every name beginning with ``start``."""


class LocalStored:
    """A server's home folder on this machine."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def size(self, name: str) -> int:
        return (self.home / name).stat().st_size

    def digest(self, name: str) -> str:
        return digest_file(self.home / name)

    def names(self, start: str) -> list[str]:
        return sorted(path.name for path in self.home.glob(f"{start}*"))

    def remove(self, start: str) -> None:
        for path in self.home.glob(f"{start}*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
