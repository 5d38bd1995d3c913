"""The plain-socket limit: the least a Python server and client can do to move a file.

No framing, no login, no digest, no jail: one request line, then the bytes.

* ``GET NAME\\n``: the server answers an 8-byte big-endian size, then sends the
  file with ``os.sendfile`` in 64 KiB chunks on a non-blocking socket (waiting
  with ``poll`` when the socket buffer is full).  The client receives with
  ``recv_into`` into one reused 256 KiB buffer and writes each chunk to disk.
* ``PUT NAME SIZE\\n``: the client sends its file the same way (``sendfile``, 64
  KiB, non-blocking); the server receives with ``recv_into`` into a reused
  buffer, writes to disk and answers ``OK\\n`` when all bytes are written.

The server is a ``ThreadingTCPServer`` (one thread per connection, as ours),
with a backlog of 256.  Run it with ``python -m bench.plain --home DIR --port 0``;
it prints ``listening on HOST:PORT``.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import socketserver
import struct
import sys
from types import FrameType

__all__ = ["SEND_CHUNK", "download", "main", "upload"]

SEND_CHUNK = 64 * 1024
RECV_BUFFER = 256 * 1024
_SIZE = struct.Struct(">Q")


def send_file(sock: socket.socket, fd: int, size: int) -> int:
    """Send ``size`` bytes of ``fd`` with ``os.sendfile`` in 64 KiB non-blocking chunks."""
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    out = sock.fileno()
    offset = 0
    try:
        while offset < size:
            try:
                sent = os.sendfile(out, fd, offset, min(SEND_CHUNK, size - offset))
            except BlockingIOError:
                poller.poll()
                continue
            if sent == 0:
                break
            offset += sent
    finally:
        sock.setblocking(True)
    return offset


def receive_file(sock: socket.socket, fd: int, size: int) -> int:
    """Receive ``size`` bytes with ``recv_into`` into a reused buffer; write each to ``fd``."""
    buffer = bytearray(RECV_BUFFER)
    view = memoryview(buffer)
    left = size
    while left:
        count = sock.recv_into(view, min(left, RECV_BUFFER))
        if not count:
            raise ConnectionError(f"connection closed with {left} bytes to come")
        chunk = view[:count]
        while chunk:
            chunk = chunk[os.write(fd, chunk) :]
        left -= count
    return size


def _read_line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        more = sock.recv(1)
        if not more:
            raise ConnectionError("connection closed before the request line")
        data += more
        if len(data) > 4096:
            raise ValueError("request line too long")
    return data.decode("utf-8").rstrip("\n")


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        more = sock.recv(count - len(data))
        if not more:
            raise ConnectionError("connection closed early")
        data += more
    return data


class _Handler(socketserver.BaseRequestHandler):
    """One transfer per connection."""

    request: socket.socket
    server: _Server

    def handle(self) -> None:
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        words = _read_line(sock).split(" ")
        path = os.path.join(self.server.home, os.path.basename(words[1]))
        if words[0] == "GET":
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                sock.sendall(_SIZE.pack(size))
                send_file(sock, fd, size)
            finally:
                os.close(fd)
        elif words[0] == "PUT":
            size = int(words[2])
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                receive_file(sock, fd, size)
            finally:
                os.close(fd)
            sock.sendall(b"OK\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], home: str) -> None:
        self.home = home
        super().__init__(address, _Handler)


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def download(host: str, port: int, remote: str, local: str, timeout: float = 300.0) -> int:
    """Fetch ``remote`` into the file ``local``; returns the bytes received."""
    with _connect(host, port, timeout) as sock:
        sock.sendall(f"GET {remote}\n".encode())
        (size,) = _SIZE.unpack(_recv_exactly(sock, _SIZE.size))
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            return receive_file(sock, fd, size)
        finally:
            os.close(fd)


def upload(host: str, port: int, local: str, remote: str, timeout: float = 300.0) -> int:
    """Send the file ``local`` as ``remote``; returns the bytes sent once the server wrote them."""
    fd = os.open(local, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        with _connect(host, port, timeout) as sock:
            sock.sendall(f"PUT {remote} {size}\n".encode())
            sent = send_file(sock, fd, size)
            if _recv_exactly(sock, 3) != b"OK\n":
                raise ConnectionError("upload not confirmed")
    finally:
        os.close(fd)
    return sent


def main(argv: list[str] | None = None) -> int:
    """Serve ``--home`` until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.plain", description="plain limit")
    parser.add_argument("--home", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = _Server((args.host, args.port), args.home)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    host, port = server.socket.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
