"""What the administrator sees of each session, and what the metrics count of it.

Every session (:class:`~ftpserver.handler.SessionHandler`) keeps one
:class:`Activity`: its id, when it started, when it last did something and
the transfer it is running, with the bytes moved so far.  The control socket
(:mod:`ftpserver.control`) reads them; the handler only calls
:meth:`Activity.begin` and :meth:`Activity.end` around each command,
:meth:`Activity.failed` when it answers with an error and
:meth:`Activity.metered` when a transfer starts.  At the end of each command
the counts go to the process's :class:`~ftpserver.metrics.Metrics`, if any.

:class:`AdminHooks` is what one server process gives its sessions: the
worker number (0 without workers), the session-id counter, the metrics and
the outcomes of reloads (:class:`ReloadLog`).
"""

from __future__ import annotations

import itertools
import posixpath
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ftpserver.metrics import Metrics

__all__ = ["Activity", "AdminHooks", "ReloadLog", "ReloadOutcome"]


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
        self.argument = ""
        self.transfer: _Transfer | None = None
        self.code: int | None = None
        self.aborted = False

    def begin(self, command: str, fields: tuple[str, ...]) -> None:
        """A command arrived."""
        self.command = command
        self.argument = fields[0] if fields else ""
        self.code = None
        self.aborted = False
        self.last = time.monotonic()

    def metered(self, direction: str, meter: _Counting, cwd: str) -> None:
        """The command started a transfer in folder ``cwd``; ``meter.moved`` counts its bytes."""
        path = posixpath.normpath(posixpath.join(cwd, self.argument))
        self.transfer = _Transfer(direction, path, meter, time.monotonic())

    def failed(self, code: int | None = None) -> None:
        """The command ended in an error reply (``code``) or cut the session (None)."""
        if code is None:
            self.aborted = True
        else:
            self.code = int(code)

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

    def describe(self, user: str | None, peer: str) -> dict[str, Any]:
        """This session as the control socket shows it (plain JSON types)."""
        now = time.monotonic()
        row: dict[str, Any] = {
            "id": self.id,
            "user": user,
            "address": peer,
            "since": self.since,
            "idle": 0.0 if self.command else round(now - self.last, 1),
            "command": self.command or None,
            "transfer": None,
        }
        transfer = self.transfer
        if transfer is not None:
            seconds = max(now - transfer.started, 1e-3)
            moved = transfer.meter.moved
            row["transfer"] = {
                "direction": transfer.direction,
                "path": transfer.path,
                "bytes": moved,
                "seconds": round(seconds, 1),
                "rate": int(moved / seconds),
            }
        return row
