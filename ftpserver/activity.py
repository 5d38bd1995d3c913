"""What the administrator sees of each session, and what the metrics count of it.

Every session (:class:`~ftpserver.handler.SessionHandler`) keeps one
:class:`Activity`: its id, when it started, when it last did something and
the transfer it is running, with the bytes moved so far.  The control socket
(:mod:`ftpserver.control`) reads them as :class:`SessionInfo` values
(:meth:`Activity.describe`; plain data, so they cross the admin pipe of
:mod:`ftpserver.adminpipe`); the handler only calls
:meth:`Activity.begin` and :meth:`Activity.end` around each command,
:meth:`Activity.failed` when it answers with an error and
:meth:`Activity.metered` when a transfer starts.  At the end of each command
the counts go to the process's :class:`~ftpserver.metrics.Metrics`, if any.

:class:`AdminHooks` is what one server process gives its sessions: the
worker number (0 without workers), the session-id counter, the metrics and
the outcomes of reloads (:class:`ReloadLog`).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ftpserver.metrics import Metrics

__all__ = [
    "Activity",
    "AdminHooks",
    "ReloadLog",
    "ReloadOutcome",
    "SessionInfo",
    "TransferInfo",
]


class _Counting(Protocol):
    moved: int


@dataclass(frozen=True)
class ReloadOutcome:
    """One reload: whether it was applied, and what changed or what kept it from applying."""

    applied: bool
    lines: tuple[str, ...]


class ReloadLog:
    """The outcomes of reloads in order, for ``ftpserver reload`` to wait on."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.count = 0
        self.last: ReloadOutcome | None = None

    def record(self, applied: bool, lines: list[str]) -> None:
        """Note the outcome of the reload just done."""
        with self._changed:
            self.count += 1
            self.last = ReloadOutcome(applied, tuple(lines))
            self._changed.notify_all()

    def wait_after(self, count: int, timeout: float) -> ReloadOutcome | None:
        """The outcome of the first reload after the ``count``-th; None if none came in time."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.count > count, timeout):
                return None
            return self.last


@dataclass
class AdminHooks:
    """Per-process things the sessions of one server report to."""

    worker: int = 0  # 1, 2, ... in a worker process; 0 serving alone
    metrics: Metrics | None = None
    reloads: ReloadLog = field(default_factory=ReloadLog)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self) -> str:
        """A session id unique in the server: ``N``, or ``W.N`` in worker ``W``."""
        number = next(self._ids)
        return f"{self.worker}.{number}" if self.worker else str(number)


@dataclass
class _Transfer:
    direction: str  # "upload" or "download"
    path: str
    meter: _Counting
    started: float  # time.monotonic()


class Activity:
    """One session's id, age, idleness and current transfer."""

    def __init__(self, hooks: AdminHooks) -> None:
        self.hooks = hooks
        self.id = hooks.new_id()
        self.since = time.time()
        self.last = time.monotonic()
        self.command = ""
        self.transfer: _Transfer | None = None
        self.code: int | None = None
        self.aborted = False

    def begin(self, command: str) -> None:
        """A command arrived."""
        self.command = command
        self.code = None
        self.aborted = False
        self.last = time.monotonic()

    def metered(self, direction: str, meter: _Counting, path: str) -> None:
        """A transfer of ``path`` (virtual) started; ``meter.moved`` counts its bytes."""
        self.transfer = _Transfer(direction, path, meter, time.monotonic())

    def failed(self, code: int | None = None) -> None:
        """The command ended in an error reply (``code``) or cut the session (None)."""
        if code is None:
            self.aborted = True
        else:
            self.code = int(code)

    def refused(self, code: int) -> None:
        """An error reply (``code``) to an earlier request, sent later (a pipelined offer)."""
        if self.hooks.metrics is not None:
            self.hooks.metrics.error(int(code))

    def end(self, logged_in: bool) -> None:
        """The command is over: count it, and the session is idle from now."""
        metrics = self.hooks.metrics
        transfer, self.transfer = self.transfer, None
        if metrics is not None:
            ok = self.code is None and not self.aborted
            if self.command == "login":
                metrics.login("ok" if ok and logged_in else "failed")
            if self.code is not None:
                metrics.error(self.code)
            if transfer is not None:
                seconds = time.monotonic() - transfer.started
                metrics.transfer(transfer.direction, transfer.meter.moved, seconds, ok)
        self.command = ""
        self.last = time.monotonic()

    def describe(self, user: str | None, peer: str) -> SessionInfo:
        """This session as the control socket shows it."""
        now = time.monotonic()
        transfer = self.transfer
        shown = None
        if transfer is not None:
            seconds = max(now - transfer.started, 1e-3)
            moved = transfer.meter.moved
            shown = TransferInfo(
                transfer.direction, transfer.path, moved, round(seconds, 1), int(moved / seconds)
            )
        idle = 0.0 if self.command else round(now - self.last, 1)
        return SessionInfo(self.id, user, peer, self.since, idle, self.command or None, shown)


@dataclass(frozen=True)
class TransferInfo:
    """A running transfer, as the control socket shows it."""

    direction: str  # "upload" or "download"
    path: str  # virtual
    bytes: int  # moved so far
    seconds: float
    rate: int  # bytes per second


@dataclass(frozen=True)
class SessionInfo:
    """One session, as the control socket shows it: plain values (it crosses the worker pipe)."""

    id: str
    user: str | None
    address: str  # HOST:PORT of the client
    since: float  # time.time() at its start
    idle: float  # seconds; 0 while a command runs
    command: str | None  # the command running now
    transfer: TransferInfo | None

    @property
    def ip(self) -> str:
        """The client's address without the port."""
        return self.address.rpartition(":")[0].strip("[]")

    def row(self) -> dict[str, Any]:
        """As a JSON object."""
        return dataclasses.asdict(self)
