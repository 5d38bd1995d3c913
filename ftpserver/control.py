"""The administrator's control socket: a Unix socket, one JSON request and one JSON answer.

The server listens on ``control_socket`` (a path; never a network port).
The socket file is made mode 0600 as soon as it is bound, so only the
server's own user (and root) can connect; each connection's peer is also
checked with ``SO_PEERCRED`` where the system has it.  A client sends one
line, a JSON object ``{"command": NAME, "args": {...}}``, and gets one line
back: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": TEXT}``.
:func:`call` is that client, used by ``ftpserver status`` and the other
admin commands (:mod:`ftpserver.admin`).

What the commands do is not here: the server passes a table of command
name -> function (:func:`ftpserver.live.commands`).

Unix socket paths are limited to about 107 bytes; a longer path is reached
through ``/proc/self/fd`` and a descriptor of its folder (Linux).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["ControlError", "ControlServer", "call"]

log = logging.getLogger("ftpserver")

MAX_REQUEST = 64 * 1024
REQUEST_TIMEOUT = 10.0
Command = Callable[[dict[str, Any]], Any]


class ControlError(Exception):
    """The control socket could not be reached, or the server refused the request."""


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits in a socket address (see the module docstring)."""
    text = os.fspath(path)
    if len(os.fsencode(text)) < 100:
        yield text
        return
    folder = os.open(path.parent, os.O_RDONLY | getattr(os, "O_PATH", 0) | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data


def call(path: Path, command: str, timeout: float = 60.0, **args: Any) -> Any:
    """Send ``command`` to the server listening on ``path``; its result, or ControlError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            with _address(path) as address:
                conn.connect(address)
        except FileNotFoundError:
            raise ControlError(f"no server is running here (no control socket {path})") from None
        except ConnectionRefusedError:
            raise ControlError(f"no server is running here ({path} is stale)") from None
        except PermissionError:
            raise ControlError(f"{path}: permission denied (run as the server's user)") from None
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
        try:
            conn.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
            answer = json.loads(_read_line(conn) or b"null")
        except TimeoutError:
            raise ControlError(f"the server did not answer within {timeout:g} s") from None
        except (OSError, ValueError) as exc:
            raise ControlError(f"the server's answer was cut off: {exc}") from None
    if not isinstance(answer, dict):
        raise ControlError("the server closed the control connection without an answer")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error")))
    return answer.get("result")


class ControlServer:
    """Serves the control socket in a daemon thread; each request in its own thread."""

    def __init__(self, path: Path, commands: dict[str, Command]) -> None:
        """Bind ``path`` (mode 0600); a stale socket file there is replaced.

        Raises OSError if the path is taken by a file that is not a socket,
        or by the socket of a server that answers.
        """
        self.path = path
        self.commands = commands
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._bind()
        except BaseException:
            self._sock.close()
            raise
        self._ino = os.stat(path).st_ino
        self._thread = threading.Thread(target=self._accept, name="control", daemon=True)

    def _bind(self) -> None:
        path = self.path
        if path.is_symlink() or (path.exists() and not path.is_socket()):
            raise FileExistsError(f"{path} exists and is not a socket")
        if path.exists():
            with contextlib.suppress(ControlError):
                call(path, "ping", timeout=2.0)
                raise FileExistsError(f"{path} belongs to a server that is running")
            path.unlink()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _address(path) as address:
            self._sock.bind(address)
            os.chmod(address, 0o600)
        self._sock.listen(16)

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def close_copy(self) -> None:
        """In a forked worker: close this process's copy of the listening socket."""
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _allowed(self, conn: socket.socket) -> bool:
        if not hasattr(socket, "SO_PEERCRED"):
            return True  # the socket file's mode is the only check here
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        return uid in (0, os.geteuid())

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(REQUEST_TIMEOUT)
            try:
                line = _read_line(conn)  # first, so that the client reads the refusal
                if not self._allowed(conn):
                    answer: dict[str, Any] = {"ok": False, "error": "permission denied"}
                else:
                    answer = self._answer(line)
                conn.sendall(json.dumps(answer).encode() + b"\n")
            except (OSError, ValueError) as exc:
                log.info("control connection ended: %s", exc)

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            name, args = request["command"], request.get("args") or {}
            if not isinstance(name, str) or not isinstance(args, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "malformed request"}
        if name == "ping":
            return {"ok": True, "result": "pong"}
        command = self.commands.get(name)
        if command is None:
            return {"ok": False, "error": f"unknown command: {name}"}
        try:
            return {"ok": True, "result": command(args)}
        except (ValueError, LookupError, TimeoutError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control command %s failed", name)
            return {"ok": False, "error": f"internal error: {exc}"}

    def close(self) -> None:
        """Stop listening and remove the socket file (if it is still this one)."""
        self._sock.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._ino:
                self.path.unlink()
