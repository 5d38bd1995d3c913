"""Virtual paths, the same for every storage backend.

Clients name *virtual* paths: ``/`` is the user's home, and relative paths
are taken against the session's virtual working folder.  :func:`virtual_path`
normalises one (``..`` stops at ``/``) and refuses what no backend may hold:
NUL bytes, over-long names and paths, and the server's reserved names
(temporary uploads, the partial-upload store).
"""

from __future__ import annotations

import posixpath

from ftpproto.errors import ErrorCode, ProtocolError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "PARTIAL_DIR",
    "TEMP_PREFIX",
    "is_reserved",
    "is_temporary",
    "printable",
    "virtual_path",
]

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
TEMP_PREFIX = ".ftp-upload-"  # uploads in progress, next to their target
PARTIAL_DIR = ".ftp-partial"  # interrupted uploads kept for resuming, at the home's top


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary upload file."""
    return name.startswith(TEMP_PREFIX)


def is_reserved(name: str) -> bool:
    """Whether ``name`` belongs to the server (hidden from listings, refused in paths)."""
    return name.startswith(TEMP_PREFIX) or name == PARTIAL_DIR


def _too_long(text: str, limit: int) -> bool:
    return len(text.encode("utf-8", "surrogatepass")) > limit


def virtual_path(cwd: str, path: str) -> str:
    """The normalised absolute virtual path for ``path`` taken against ``cwd``."""
    if not path:
        raise ProtocolError(ErrorCode.BAD_PATH, "empty path")
    if "\0" in path:
        raise ProtocolError(ErrorCode.BAD_PATH, "path contains a NUL byte")
    if _too_long(path, MAX_PATH_BYTES):
        raise ProtocolError(ErrorCode.PATH_TOO_LONG, f"path longer than {MAX_PATH_BYTES} bytes")
    joined = posixpath.normpath(posixpath.join(cwd, path))
    virtual = "/" + joined.lstrip("/")
    for name in virtual.split("/"):
        if _too_long(name, MAX_NAME_BYTES):
            raise ProtocolError(
                ErrorCode.PATH_TOO_LONG, f"a name in the path is over {MAX_NAME_BYTES} bytes"
            )
        if is_reserved(name):
            raise ProtocolError(ErrorCode.BAD_PATH, f"reserved name: {name}")
    if _too_long(virtual, MAX_PATH_BYTES):
        raise ProtocolError(ErrorCode.PATH_TOO_LONG, f"path longer than {MAX_PATH_BYTES} bytes")
    return virtual


def printable(name: str) -> str:
    """A name that can be sent as UTF-8 (undecodable bytes become U+FFFD)."""
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
