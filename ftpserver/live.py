"""What the control socket's commands do: look at and act on a running server.

A :class:`View` is the running server as the commands see it.  Serving alone
(``workers: 1``) it is :class:`LocalView`, the one
:class:`~ftpserver.server.FileTransferServer`.  With workers it is
:class:`SupervisorView`: the supervisor keeps the shared state (bans) itself
and asks every worker for its sessions through
:class:`~ftpserver.adminpipe.WorkerLinks`, one more pipe per worker on which
the worker answers (:func:`~ftpserver.adminpipe.answer_requests`).  A worker
that does not answer in time is left out and named.  Either way bans and
nodes come from an :class:`~ftpserver.adminstate.AdminState`: the in-process
:class:`~ftpserver.state.shared.LocalState`, or the tables in PostgreSQL
with ``shared_state`` (an unban there lifts the ban on every node; ``status``
lists the nodes, or says the shared state is unavailable and shows the
rest).  Sessions and kicks are this node's.

:func:`commands` turns a view into the control socket's command table:
``status``, ``sessions``, ``kick``, ``bans``, ``unban`` and ``reload``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ftpserver.activity import ReloadLog, SessionInfo
from ftpserver.adminpipe import Selector, WorkerLinks
from ftpserver.adminstate import AdminState

if TYPE_CHECKING:
    from ftpserver.server import FileTransferServer

__all__ = [
    "LocalView",
    "SupervisorView",
    "View",
    "commands",
    "kick_sessions",
    "session_infos",
]

log = logging.getLogger("ftpserver")

RELOAD_TIMEOUT = 30.0
Row = dict[str, Any]  # JSON, for the control socket


def session_infos(server: FileTransferServer) -> list[SessionInfo]:
    """The server's sessions as the control socket shows them."""
    return [
        session.activity.describe(session.user.name if session.user else None, session.peer)
        for session in server.sessions.snapshot()
    ]


def _matches(info: SessionInfo, selector: Selector) -> bool:
    if "session" in selector:
        return info.id == selector["session"]
    if "user" in selector:
        return info.user == selector["user"]
    return info.ip == selector.get("ip")


def kick_sessions(server: FileTransferServer, selector: Selector) -> list[str]:
    """End the sessions ``selector`` names, as a shutdown cuts a session off; their ids.

    A transfer stops at its next piece; an upload's bytes are kept as the
    partial upload that ``reput`` resumes.
    """
    kicked: list[str] = []
    for session in server.sessions.snapshot():
        info = session.activity.describe(session.user.name if session.user else None, session.peer)
        if _matches(info, selector):
            log.info("kicked session %s (%s, %s)", info.id, info.user, info.address)
            session.interrupt()
            kicked.append(info.id)
    return kicked


class View(Protocol):
    """The running server, as the commands see it."""

    started: float  # time.time() at the start
    state: AdminState
    reloads: ReloadLog

    def workers(self) -> list[Row]: ...
    def sessions(self) -> list[Row]: ...
    def kick(self, selector: Selector) -> list[str]: ...


class LocalView:
    """One server process serving alone."""

    def __init__(self, server: FileTransferServer, state: AdminState) -> None:
        self.server = server
        self.started = time.time()
        self.state = state
        self.reloads = server.admin.reloads

    def workers(self) -> list[Row]:
        return []

    def sessions(self) -> list[Row]:
        return [info.row() for info in session_infos(self.server)]

    def kick(self, selector: Selector) -> list[str]:
        return kick_sessions(self.server, selector)


class SupervisorView:
    """The supervisor of several workers: shared state here, sessions in the workers."""

    def __init__(self, state: AdminState, links: WorkerLinks, reloads: ReloadLog) -> None:
        self.started = time.time()
        self.state = state
        self.links = links
        self.reloads = reloads
        self.silent: list[int] = []  # workers that did not answer the last question

    def workers(self) -> list[Row]:
        return [{"worker": index + 1, "pid": pid} for index, pid in self.links.pids()]

    def sessions(self) -> list[Row]:
        answers, self.silent = self.links.ask("sessions", {}, SessionInfo)
        return [info.row() for _, infos in answers for info in infos]

    def kick(self, selector: Selector) -> list[str]:
        answers, self.silent = self.links.ask("kick", selector, str)
        return [session for _, ids in answers for session in ids]


def _selector(args: dict[str, Any]) -> Selector:
    given = {key: str(args[key]) for key in ("session", "user", "ip") if args.get(key)}
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
        shared: Row = {"bans": None, "nodes": [], "shared_state": None}
        try:
            shared.update(bans=len(view.state.banned()), nodes=view.state.nodes())
        except TimeoutError as exc:  # the cluster's database is away: the rest is still known
            shared["shared_state"] = str(exc)
        return {
            "pid": os.getpid(),
            "uptime": round(time.time() - view.started, 1),
            "workers": view.workers(),
            "silent_workers": silent(),
            "sessions": len(rows),
            "transfers": [row for row in rows if row["transfer"]],
            **shared,
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
        return [{"ip": ip, "seconds_left": round(left)} for ip, left in view.state.banned()]

    def unban(args: dict[str, Any]) -> Row:
        ip = _address(args.get("ip"))
        if not view.state.unban(ip):
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
