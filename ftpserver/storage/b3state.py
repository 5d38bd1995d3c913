"""BLAKE3 whose running state can be saved as bytes and continued in another process.

The ``blake3`` package (the protocol's digest, :mod:`ftpproto.digest`) keeps
its state inside Rust, out of reach.  BLAKE3's reference C implementation
keeps it in a plain struct without pointers (``blake3_hasher``: the key, the
current chunk and the stack of chaining values, 1912 bytes on x86-64), so a
copy of those bytes, written down and read back by another process, goes on
hashing exactly where the first stopped.  The S3 storage uses it for uploads
so that an interrupted one can be resumed by any worker process or after a
restart (docs/S3.md); it is as fast as the ``blake3`` package (both use the
CPU's SIMD units and release the GIL).

The library is ``libblake3.so``: the file named by ``FT_LIBBLAKE3``, the
system's, or ``/usr/local/lib/libblake3.so`` (built from BLAKE3's C sources
by ``ftpserver/storage/b3build.py``); ``FT_LIBBLAKE3=none`` turns it off.
Without it :func:`saveable_hasher` returns None and uploads use the
``blake3`` package.  A saved state is only restored by a library of the
same version and struct size (:func:`state_tag`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from pathlib import Path

__all__ = ["LIBRARY_ENV", "SavedHasher", "library", "restore", "saveable_hasher", "state_tag"]

LIBRARY_ENV = "FT_LIBBLAKE3"
BUILT = Path("/usr/local/lib/libblake3.so")
STATE_SIZE = 1912  # sizeof(blake3_hasher) for BLAKE3_MAX_DEPTH 54 on 64-bit platforms
# Offsets and limits of the struct's counts: a state read from the store must stay in bounds.
_LIMITS = ((136, 64), (137, 16), (144, 55))  # chunk.buf_len, chunk.blocks_compressed, cv_stack_len
_ROOM = 2048  # the buffer each hasher lives in (more than the struct needs)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded ``libblake3``, or None when there is none."""
    named = os.environ.get(LIBRARY_ENV)
    if named == "none":
        return None
    candidates = [named, ctypes.util.find_library("blake3"), str(BUILT)]
    for candidate in filter(None, candidates):
        try:
            lib = ctypes.CDLL(candidate)  # a CDLL call releases the GIL
        except OSError:
            continue
        lib.blake3_version.restype = ctypes.c_char_p
        lib.blake3_hasher_update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        lib.blake3_hasher_finalize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        return lib
    return None


def state_tag() -> str:
    """What a saved state is valid for: the library's version and the struct size."""
    lib = library()
    assert lib is not None
    return f"c{lib.blake3_version().decode()}/{STATE_SIZE}"


class SavedHasher:
    """A BLAKE3 hasher (the :class:`~ftpproto.digest.Hasher` protocol) with :meth:`state`."""

    def __init__(self, lib: ctypes.CDLL, state: bytes | None = None) -> None:
        self._lib = lib
        self._struct = ctypes.create_string_buffer(_ROOM)
        if state is None:
            lib.blake3_hasher_init(self._struct)
        else:
            ctypes.memmove(self._struct, state, STATE_SIZE)

    def update(self, data: bytes | bytearray | memoryview, /) -> object:
        view = memoryview(data).cast("B")
        if not view.nbytes:
            return None
        if isinstance(data, bytes):
            self._lib.blake3_hasher_update(self._struct, data, len(data))
        elif view.readonly:  # a slice of bytes: no address to hand over without a copy
            self._lib.blake3_hasher_update(self._struct, bytes(view), view.nbytes)
        else:
            pointer = ctypes.addressof((ctypes.c_char * view.nbytes).from_buffer(view))
            self._lib.blake3_hasher_update(self._struct, pointer, view.nbytes)
        return None

    def hexdigest(self) -> str:
        out = ctypes.create_string_buffer(32)
        self._lib.blake3_hasher_finalize(self._struct, out, 32)
        return out.raw.hex()

    def copy(self) -> SavedHasher:
        return SavedHasher(self._lib, self.state())

    def state(self) -> bytes:
        """The running state, to be continued by :func:`restore` (in any process)."""
        return self._struct.raw[:STATE_SIZE]


def saveable_hasher() -> SavedHasher | None:
    """A fresh hasher whose state can be saved, or None without the library."""
    lib = library()
    return None if lib is None else SavedHasher(lib)


def restore(state: bytes, tag: str) -> SavedHasher | None:
    """The hasher saved as ``state`` by a library of ``tag``; None if this one cannot take it."""
    lib = library()
    if lib is None or len(state) != STATE_SIZE or tag != state_tag():
        return None
    if any(state[offset] > limit for offset, limit in _LIMITS):
        return None  # not a state this library wrote: the C code would index out of bounds
    return SavedHasher(lib, state)
