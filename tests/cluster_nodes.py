"""Server nodes for the cluster tests: ``ftpserver serve`` processes on one PostgreSQL.

* :class:`Nodes` starts ``python -m ftpserver serve --config FILE`` processes
  (each its own settings file, port 0, ``shared_state`` set) and stops them
  at the end; ``kill`` SIGKILLs one.
* :class:`Session` is a raw protocol session from a chosen source address
  (127.0.0.2, 127.0.0.3 ...), optionally sending a PROXY header first.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from conftest import HOST, SUBPROCESS_TIMEOUT, subprocess_env

from ftpproto.channel import Channel
from ftpproto.messages import Message, request

__all__ = ["Node", "Nodes", "Session"]


@dataclass
class Node:
    """One running node: its process, port, name and log file."""

    name: str
    proc: subprocess.Popen[str]
    port: int
    config: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class Nodes:
    """Starts and stops nodes sharing ``base`` settings (a dict written as YAML)."""

    def __init__(self, folder: Path, base: dict[str, Any]) -> None:
        self.folder = folder
        self.base = base
        self.started: list[Node] = []

    def start(self, name: str, **changes: Any) -> Node:
        """Start node ``name`` and wait for its ``listening on`` line."""
        settings = {**self.base, "node_name": name, "port": 0, **changes}
        config = self.folder / f"{name}.yaml"
        config.write_text(yaml.safe_dump(settings))
        log = self.folder / f"{name}.log"
        with log.open("w") as handle:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ftpserver", "serve", "--config", str(config)],
                cwd=self.folder,
                env=subprocess_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=handle,
                text=True,
            )
        node = Node(name, proc, 0, config, log)
        self.started.append(node)
        stdout = proc.stdout
        assert stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                assert proc.poll() is None, f"node {name} exited: {node.log_text()}"
                continue
            if line.startswith("listening on "):
                node.port = int(line.rsplit(":", 1)[1])
                return node
        raise AssertionError(f"node {name} did not start: {node.log_text()}")

    def kill(self, node: Node) -> None:
        """SIGKILL ``node`` (nothing given back)."""
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)

    def stop_all(self) -> None:
        for node in self.started:
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.started:
            try:
                node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=5)


class Session:
    """A raw protocol session from ``source`` to ``port``, after an optional ``header``."""

    def __init__(self, port: int, source: str = HOST, header: bytes = b"") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(15)
        self.sock.bind((source, 0))
        self.sock.connect((HOST, port))
        if header:
            self.sock.sendall(header)
        self.channel = Channel(self.sock)

    def call(self, command: str, *args: str) -> Message:
        self.channel.send(request(command, *args))
        return self.channel.recv()

    def recv(self) -> Message:
        return self.channel.recv()

    def code(self, reply: Message) -> int:
        """The error code of ``reply`` (0 for an ok reply)."""
        return 0 if reply.status == "ok" else int(reply.fields[1])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
