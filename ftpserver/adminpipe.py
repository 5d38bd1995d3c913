"""The administrator's pipe to each worker: the supervisor asks, the worker answers.

Besides its state pipe (:mod:`ftpserver.state.wire`, the worker asks the
supervisor), each worker has one more pipe the other way, for the control
socket's questions (:mod:`ftpserver.live`).  The supervisor sends
``(number, command, selector)`` (:data:`AdminRequest`): ``"sessions"`` or
``"kick"``, with a :data:`Selector` naming the sessions to end; the worker
answers ``(number, items)`` (:data:`AdminReply`): its sessions as
:class:`~ftpserver.activity.SessionInfo`, or the ids of the sessions it
ended.  Both ends check what they receive with
:func:`~ftpserver.state.wire.fields` and :func:`~ftpserver.state.wire.expect`,
as the state pipe does.

:class:`WorkerLinks` is the supervisor's side: it asks every worker in turn
and leaves out (and names) one that does not answer within
:data:`WORKER_TIMEOUT`; a late answer is recognised by its number and
skipped.  :func:`answer_requests` is the worker's side, a daemon thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pipe
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from ftpserver.activity import SessionInfo
from ftpserver.state.wire import expect, fields

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = [
    "AdminReply",
    "AdminRequest",
    "AnsweringEnd",
    "AskingEnd",
    "Selector",
    "WorkerLinks",
    "admin_pipe",
    "answer_requests",
    "selector_of",
]

log = logging.getLogger("ftpserver")

T = TypeVar("T")
WORKER_TIMEOUT = 5.0  # seconds a worker has to answer the supervisor
Selector = dict[str, str]  # one of "session", "user", "ip" -> its value; {} for "sessions"
AdminRequest = tuple[int, str, Selector]
AdminReply = tuple[int, list[SessionInfo] | list[str]]
# The supervisor's end sends requests, the worker's sends replies; what each
# receives is checked before use, so it is ``object``.
AskingEnd: TypeAlias = "Connection[AdminRequest, object]"
AnsweringEnd: TypeAlias = "Connection[AdminReply, object]"


def admin_pipe() -> tuple[AskingEnd, AnsweringEnd]:
    """A new pipe: the supervisor's end and the worker's."""
    return Pipe()


def selector_of(value: object) -> Selector:
    """``value`` checked to be a :data:`Selector`; TypeError otherwise."""
    items = expect(value, dict, "selector")
    return {
        expect(k, str, "selector key"): expect(v, str, "selector value") for k, v in items.items()
    }


@dataclass
class _Link:
    index: int
    pid: int
    conn: AskingEnd
    lock: threading.Lock


class WorkerLinks:
    """The supervisor's end of each worker's admin pipe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: dict[int, _Link] = {}  # by pid
        self._numbers = itertools.count()

    def add(self, index: int, pid: int, conn: AskingEnd) -> None:
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
        for link in list(self._links.values()):
            link.conn.close()

    def pids(self) -> list[tuple[int, int]]:
        """``(index, pid)`` of every worker, by index."""
        with self._lock:
            return sorted((link.index, link.pid) for link in self._links.values())

    def ask(
        self, command: str, selector: Selector, kind: type[T]
    ) -> tuple[list[tuple[int, list[T]]], list[int]]:
        """Ask every worker; ``([(index, items of kind)], [indexes that did not answer])``."""
        with self._lock:
            links = sorted(self._links.values(), key=lambda link: link.index)
        answers: list[tuple[int, list[T]]] = []
        silent: list[int] = []
        for link in links:
            number = next(self._numbers)
            try:
                with link.lock:
                    items = self._ask_one(link, (number, command, selector), kind)
            except (EOFError, OSError):
                items = None
            if items is None:
                silent.append(link.index)
            else:
                answers.append((link.index, items))
        return answers, silent

    @staticmethod
    def _ask_one(link: _Link, request: AdminRequest, kind: type[T]) -> list[T] | None:
        """The worker's answer to ``request``; None if it did not come in time."""
        link.conn.send(request)
        deadline = time.monotonic() + WORKER_TIMEOUT
        while link.conn.poll(max(0.0, deadline - time.monotonic())):
            got, answer = fields(link.conn.recv(), 2, "admin reply")
            if expect(got, int, "admin reply number") != request[0]:
                continue  # an older answer that came too late: skip it
            items = expect(answer, list, "admin reply")
            return [expect(item, kind, f"worker {link.index + 1}'s answer") for item in items]
        return None


def answer_requests(
    conn: AnsweringEnd,
    sessions: Callable[[], list[SessionInfo]],
    kick: Callable[[Selector], list[str]],
) -> threading.Thread:
    """In a worker: answer the supervisor's requests on ``conn`` in a daemon thread."""

    def reply(request: object) -> AdminReply:
        number, command, selector = fields(request, 3, "admin request")
        number = expect(number, int, "admin request number")
        command = expect(command, str, "admin command")
        if command == "sessions":
            return number, sessions()
        if command == "kick":
            return number, kick(selector_of(selector))
        raise TypeError(f"unknown admin command {command!r}")

    def serve() -> None:
        while True:
            try:
                request: object = conn.recv()
            except (EOFError, OSError):
                return
            try:
                answer = reply(request)
            except TypeError as exc:  # a bug in the supervisor: it will name us silent
                log.error("bad request from the main process: %s", exc)
                continue
            try:
                conn.send(answer)
            except OSError:
                return

    thread = threading.Thread(target=serve, name="supervisor-requests", daemon=True)
    thread.start()
    return thread
