"""What the control socket's commands do: look at and act on a running server.

A :class:`View` is the running server as the commands see it.  Serving alone
(``workers: 1``) it is :class:`LocalView`, the one
:class:`~ftpserver.server.FileTransferServer`.  With workers it is
:class:`SupervisorView`: the supervisor keeps the shared state (bans) itself
and asks every worker for its sessions through :class:`WorkerLinks`, one
more pipe per worker on which the worker answers (:func:`answer_requests`).
A worker that does not answer in time is left out and named.

:func:`commands` turns a view into the control socket's command table:
``status``, ``sessions``, ``kick``, ``bans``, ``unban`` and ``reload``.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol

from ftpserver.activity import ReloadLog
from ftpserver.guards import BanList

if TYPE_CHECKING:
    from ftpserver.server import FileTransferServer

__all__ = [
    "LocalView",
    "SupervisorView",
    "View",
    "WorkerLinks",
    "answer_requests",
    "commands",
    "kick_sessions",
    "session_rows",
]

log = logging.getLogger("ftpserver")

WORKER_TIMEOUT = 5.0  # seconds a worker has to answer the supervisor
RELOAD_TIMEOUT = 30.0
Row = dict[str, Any]


def session_rows(server: FileTransferServer) -> list[Row]:
    """The server's sessions as the control socket shows them."""
    return [
        session.activity.describe(session.user.name if session.user else None, session.peer)
        for session in server.sessions.snapshot()
    ]


def _matches(row: Row, selector: dict[str, Any]) -> bool:
    if selector.get("session") is not None:
        return bool(row["id"] == selector["session"])
    if selector.get("user") is not None:
        return bool(row["user"] == selector["user"])
    return bool(row["address"].rpartition(":")[0].strip("[]") == selector.get("ip"))


def kick_sessions(server: FileTransferServer, selector: dict[str, Any]) -> list[str]:
    """End the sessions ``selector`` names, as a shutdown cuts a session off; their ids.

    A transfer stops at its next piece; an upload's bytes are kept as the
    partial upload that ``reput`` resumes.
    """
    kicked: list[str] = []
    for session in server.sessions.snapshot():
        row = session.activity.describe(session.user.name if session.user else None, session.peer)
        if _matches(row, selector):
            log.info("kicked session %s (%s, %s)", row["id"], row["user"], row["address"])
            session.interrupt()
            kicked.append(row["id"])
    return kicked


class View(Protocol):
    """The running server, as the commands see it."""

    started: float  # time.time() at the start
    bans: BanList
    reloads: ReloadLog

    def workers(self) -> list[Row]: ...
    def sessions(self) -> list[Row]: ...
    def kick(self, selector: dict[str, Any]) -> list[str]: ...


class LocalView:
    """One server process serving alone."""

    def __init__(self, server: FileTransferServer) -> None:
        self.server = server
        self.started = time.time()
        self.bans = server.bans
        self.reloads = server.admin.reloads

    def workers(self) -> list[Row]:
        return []

    def sessions(self) -> list[Row]:
        return session_rows(self.server)

    def kick(self, selector: dict[str, Any]) -> list[str]:
        return kick_sessions(self.server, selector)


@dataclass
class _Link:
    index: int
    pid: int
    conn: Connection
    lock: threading.Lock


class WorkerLinks:
    """The supervisor's end of each worker's request pipe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: dict[int, _Link] = {}  # by pid
        self._numbers = itertools.count()

    def add(self, index: int, pid: int, conn: Connection) -> None:
        """Worker ``index`` (from 0) runs as ``pid`` and answers on ``conn``."""
        with self._lock:
            self._links[pid] = _Link(index, pid, conn, threading.Lock())

    def drop(self, pid: int) -> None:
        """The worker ``pid`` has ended."""
        with self._lock:
            link = self._links.pop(pid, None)
        if link is not None:
            link.conn.close()

    def close_in_child(self) -> None:
        """In a newly forked worker: close the supervisor's ends of the other workers' pipes."""
        for link in self._links.values():
            link.conn.close()

    def pids(self) -> list[tuple[int, int]]:
        """``(index, pid)`` of every worker, by index."""
        with self._lock:
            return sorted((link.index, link.pid) for link in self._links.values())

    def ask(self, command: str, args: dict[str, Any]) -> tuple[list[tuple[int, Any]], list[int]]:
        """Ask every worker; ``([(index, answer)], [indexes that did not answer])``."""
        with self._lock:
            links = sorted(self._links.values(), key=lambda link: link.index)
        answers: list[tuple[int, Any]] = []
        silent: list[int] = []
        for link in links:
            number = next(self._numbers)
            try:
                with link.lock:
                    link.conn.send((number, command, args))
                    deadline = time.monotonic() + WORKER_TIMEOUT
                    while link.conn.poll(max(0.0, deadline - time.monotonic())):
                        got, answer = link.conn.recv()
                        if got == number:  # older answers came too late: skip them
                            answers.append((link.index, answer))
                            break
                    else:
                        silent.append(link.index)
            except (EOFError, OSError):
                silent.append(link.index)
        return answers, silent


def answer_requests(conn: Connection, server: FileTransferServer) -> threading.Thread:
    """In a worker: answer the supervisor's requests on ``conn`` in a daemon thread."""

    def serve() -> None:
        while True:
            try:
                number, command, args = conn.recv()
            except (EOFError, OSError):
                return
            if command == "sessions":
                answer: Any = session_rows(server)
            elif command == "kick":
                answer = kick_sessions(server, args)
            else:
                answer = None
            try:
                conn.send((number, answer))
            except OSError:
                return

    thread = threading.Thread(target=serve, name="supervisor-requests", daemon=True)
    thread.start()
    return thread


class SupervisorView:
    """The supervisor of several workers: shared state here, sessions in the workers."""

    def __init__(self, bans: BanList, links: WorkerLinks, reloads: ReloadLog) -> None:
        self.started = time.time()
        self.bans = bans
        self.links = links
        self.reloads = reloads
        self.silent: list[int] = []  # workers that did not answer the last question

    def workers(self) -> list[Row]:
        return [{"worker": index + 1, "pid": pid} for index, pid in self.links.pids()]

    def sessions(self) -> list[Row]:
        answers, self.silent = self.links.ask("sessions", {})
        return [row for _, rows in answers for row in rows]

    def kick(self, selector: dict[str, Any]) -> list[str]:
        answers, self.silent = self.links.ask("kick", selector)
        return [session for _, ids in answers for session in ids]


def _selector(args: dict[str, Any]) -> dict[str, Any]:
    given = {key: args.get(key) for key in ("session", "user", "ip") if args.get(key)}
    if len(given) != 1:
        raise ValueError("kick: name one of a session id, --user NAME or --ip ADDR")
    if "ip" in given:
        given["ip"] = _address(given["ip"])
    return given


def _address(text: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        raise ValueError(f"not an IP address: {text}") from None


def commands(view: View, on_reload: Callable[[], None] | None = None) -> dict[str, Any]:
    """The control socket's command table for ``view``.

    ``reload`` sends this process SIGHUP, as an administrator would, and
    waits for the outcome of the reload that follows (``on_reload`` replaces
    the signal, for tests).
    """

    def status(args: dict[str, Any]) -> Row:
        rows = view.sessions()
        return {
            "pid": os.getpid(),
            "uptime": round(time.time() - view.started, 1),
            "workers": view.workers(),
            "silent_workers": silent(),
            "sessions": len(rows),
            "transfers": [row for row in rows if row["transfer"]],
            "bans": len(view.bans.banned()),
        }

    def silent() -> list[int]:
        return [index + 1 for index in getattr(view, "silent", [])]

    def sessions(args: dict[str, Any]) -> Row:
        rows = view.sessions()
        return {"sessions": rows, "silent_workers": silent()}

    def kick(args: dict[str, Any]) -> Row:
        kicked = view.kick(_selector(args))
        return {"kicked": kicked, "silent_workers": silent()}

    def bans(args: dict[str, Any]) -> list[Row]:
        return [{"ip": ip, "seconds_left": round(left)} for ip, left in view.bans.banned()]

    def unban(args: dict[str, Any]) -> Row:
        ip = _address(args.get("ip"))
        if not view.bans.unban(ip):
            raise LookupError(f"{ip} is not banned")
        log.info("unbanned %s at the administrator's request", ip)
        return {"unbanned": ip}

    def reload(args: dict[str, Any]) -> Row:
        seen = view.reloads.count
        if on_reload is not None:
            on_reload()
        else:
            os.kill(os.getpid(), signal.SIGHUP)
        outcome = view.reloads.wait_after(seen, RELOAD_TIMEOUT)
        if outcome is None:
            raise TimeoutError("no reload happened (is the server stopping?)")
        return {"applied": outcome.applied, "lines": list(outcome.lines)}

    return {
        "status": status,
        "sessions": sessions,
        "kick": kick,
        "bans": bans,
        "unban": unban,
        "reload": reload,
    }
