"""Control-message framing on a byte stream.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of
payload.  Lengths of 0 or above :data:`MAX_FRAME_SIZE` are framing violations.
:class:`FrameDecoder` is incremental: feed it whatever arrived (two frames in
one segment, or one frame a byte at a time) and take complete frames out.
Raw file data shares the stream, so the decoder also hands back bytes it has
buffered beyond the last frame (:meth:`FrameDecoder.take_raw`).
"""

from __future__ import annotations

import struct

from ftpproto.errors import FramingError

__all__ = ["HEADER_SIZE", "MAX_FRAME_SIZE", "FrameDecoder", "encode_frame"]

HEADER_SIZE = 4
MAX_FRAME_SIZE = 64 * 1024
_HEADER = struct.Struct(">I")


def encode_frame(payload: bytes, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """Return ``payload`` with its length prefix; refuse empty or oversized payloads."""
    if not payload:
        raise FramingError("empty frame")
    if len(payload) > max_size:
        raise FramingError(f"frame of {len(payload)} bytes exceeds the limit of {max_size}")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Split a byte stream into frames, never buffering more than one frame's worth."""

    def __init__(self, max_size: int = MAX_FRAME_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Append bytes received from the stream."""
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """Return the next complete payload, or ``None`` if more bytes are needed.

        Raises :class:`FramingError` as soon as a header announces a length of
        zero or more than ``max_size``, before the payload is buffered.
        """
        if len(self._buffer) < HEADER_SIZE:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length == 0:
            raise FramingError("empty frame")
        if length > self.max_size:
            raise FramingError(f"frame of {length} bytes exceeds the limit of {self.max_size}")
        end = HEADER_SIZE + length
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[HEADER_SIZE:end])
        del self._buffer[:end]
        return payload

    def wanted(self) -> int:
        """How many more bytes complete the frame in progress (at least 1)."""
        if len(self._buffer) < HEADER_SIZE:
            return HEADER_SIZE - len(self._buffer)
        length: int = _HEADER.unpack_from(self._buffer)[0]
        return max(1, HEADER_SIZE + min(length, self.max_size) - len(self._buffer))

    @property
    def buffered(self) -> int:
        """Bytes held that are not yet part of a returned frame."""
        return len(self._buffer)

    def take_raw(self, limit: int) -> bytes:
        """Remove and return up to ``limit`` buffered bytes (file data after a frame)."""
        data = bytes(self._buffer[:limit])
        del self._buffer[:limit]
        return data
