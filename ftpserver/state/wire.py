"""The worker pipe: one request and one reply per call, and the typed checks on both ends.

A worker sends ``(target, method, args)`` (:data:`Request`), with ``target``
one of the :class:`~ftpserver.state.shared.Shared` fields and ``args``
plain picklable values; the supervisor answers ``(True, result)`` or
``(False, exception)`` (:data:`Reply`), in the order the requests came.
A request with a fourth item, :data:`POST`, gets no reply: the worker
needs no answer (a change that cannot be refused), so it does not wait,
and it is held back for up to :data:`POST_DELAY` to cross with others.
Several requests may cross as one message, a list of them (:data:`Outgoing`),
and the replies to them come as one message, a list (one reply alone as itself).
:class:`PipeClient` is the one call primitive the worker's proxies are
written over; :func:`expect` and :func:`arg` check the types of what
crosses, so each side stays typed.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing import Pipe
from typing import TYPE_CHECKING, TypeAlias, TypeVar

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = [
    "POST",
    "Args",
    "Outgoing",
    "OwnerEnd",
    "PipeClient",
    "Reply",
    "Request",
    "StateUnavailable",
    "WorkerEnd",
    "arg",
    "expect",
    "fields",
    "pack",
    "unpack",
    "worker_pipe",
]

log = logging.getLogger("ftpserver")

T = TypeVar("T")
Args = tuple[object, ...]
Request = tuple[str, str, Args] | tuple[str, str, Args, str]
POST = "post"  # the fourth item of a request that gets no reply
# seconds a posted request may wait for others (a pipelined upload posts one per
# file: one message for each cost the supervisor 35 us of CPU per file)
POST_DELAY = 0.02
Outgoing = Request | list[Request]  # what a worker sends: one request, or several in order
Reply = tuple[bool, object]
# The two ends of a worker's pipe, by what each sends; what each receives is
# checked before use, so it is ``object``.
WorkerEnd: TypeAlias = "Connection[Outgoing, object]"
OwnerEnd: TypeAlias = "Connection[Reply, object]"


def pack(items: Sequence[object]) -> bytes:
    """One message for ``items`` sent together: one alone as itself, several as a list.

    Plain pickle, read by the other end's ``recv()`` alike: ``Connection.send``
    builds a ForkingPickler (for sockets and such, never sent here) per
    message, which cost a tenth of a pipelined upload's Python time.
    """
    return pickle.dumps(items[0] if len(items) == 1 else items, pickle.HIGHEST_PROTOCOL)


def unpack(message: object) -> list[object]:
    """The items of a message :func:`pack` made."""
    return message if isinstance(message, list) else [message]


class StateUnavailable(ConnectionAbortedError):
    """The shared state cannot be reached (the supervisor is gone): the server is stopping."""


class _Slot:
    """Where the reply to one submitted request lands."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = False
        self.reply: object = None


class PipeClient:
    """Calls on the supervisor's state over one pipe.

    One lock keeps the worker's threads' requests apart, another their
    reading of replies, so a request (a settle posted by an upload's helper
    thread) need not wait while another thread waits for a reply.  A call may be
    split: :meth:`submit` sends the request and returns a function that
    waits for its reply, so a session can go on meanwhile (the replies come
    in order, and whichever thread reads one that is not its own keeps it
    for its owner); :meth:`post` sends one that needs no reply, with the
    next request or by a helper thread :data:`POST_DELAY` later, and
    :meth:`flush` sends what is held back at once.  If the
    pipe is broken the supervisor is gone: the first call to find out logs
    it and stops the worker (SIGTERM, so running transfers get the usual
    grace), since without the shared state it cannot keep its limits; that
    call and every later one raise :class:`StateUnavailable`.  ``on_lost``
    replaces the SIGTERM (tests).
    """

    def __init__(self, conn: WorkerEnd, on_lost: Callable[[], None] | None = None) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # the outbox, the slots' order, sending
        self._reading = threading.Lock()  # reading replies (never taken with _lock held)
        self._lost_lock = threading.Lock()
        self._lost = False
        self._on_lost = on_lost or _stop_this_process
        self._waiting: deque[_Slot] = deque()  # submitted, reply not read yet, oldest first
        self._outbox: list[Request] = []  # submitted, not sent yet
        self._posted = threading.Condition(self._lock)  # a post waits in the outbox
        self._held = False  # a post is in the outbox
        self._flusher: threading.Thread | None = None

    def call(self, target: str, method: str, *args: object) -> object:
        """Run ``target.method(*args)`` in the supervisor; its result, or its exception raised."""
        return self.submit(target, method, *args)()

    def submit(self, target: str, method: str, *args: object) -> Callable[[], object]:
        """Ask ``target.method(*args)``; a function that waits for its result (or raises).

        The request goes out with the next one posted, or when a result is
        waited for, so requests asked in a row cross the pipe together.
        """
        slot = _Slot()
        with self._lock:
            self._check()
            self._outbox.append((target, method, args))
            self._waiting.append(slot)
        return lambda: self._result(slot, target, method)

    def post(self, target: str, method: str, *args: object) -> None:
        """Send ``target.method(*args)`` to be run in turn, without waiting: no reply comes.

        It goes out with the next request waited for, or at most
        :data:`POST_DELAY` later, with whatever was posted meanwhile: the
        arguments are pickled then, so they must not change after this call.
        """
        with self._lock:
            self._check()
            self._outbox.append((target, method, args, POST))
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_posts, name="state-posts", daemon=True
                )
                self._flusher.start()
            if not self._held:  # the helper waits only while no post is held back
                self._held = True
                self._posted.notify()

    def flush(self) -> None:
        """Send what is held back now (before this process exits)."""
        with self._lock:
            self._check()
            self._flush()

    def _flush_posts(self) -> None:
        """The helper thread: send the outbox :data:`POST_DELAY` after something was posted."""
        while True:
            with self._lock:
                while not self._held and not self._lost:
                    self._posted.wait()
                if self._lost:
                    return
            time.sleep(POST_DELAY)  # without the lock: more posts gather meanwhile
            with self._lock:
                try:
                    self._flush()
                except StateUnavailable:
                    return

    def _flush(self) -> None:
        """Send what was asked and not sent yet, as one message (lock held)."""
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        self._held = False
        try:
            self._conn.send_bytes(pack(batch))
        except (EOFError, OSError) as exc:
            raise self._gone(exc) from exc

    def _result(self, slot: _Slot, target: str, method: str) -> object:
        with self._lock:
            if not slot.done:
                self._check()
                self._flush()
        with self._reading:
            while not slot.done:
                self._check()
                try:
                    message = self._conn.recv()
                except (EOFError, OSError) as exc:
                    raise self._gone(exc) from exc
                for reply in unpack(message):
                    first = self._waiting.popleft()
                    first.reply, first.done = reply, True
        ok, value = fields(slot.reply, 2, "reply")
        if ok:
            return value
        if isinstance(value, BaseException):
            raise value
        raise TypeError(f"{target}.{method}: bad error reply {value!r}")

    def _check(self) -> None:
        if self._lost:
            raise StateUnavailable("the server is shutting down")

    def _gone(self, exc: BaseException) -> StateUnavailable:
        """The pipe broke: stop this worker (the first to find out); the error to raise.

        A pipe this process closed itself (a test, or the helper thread
        racing the close) is no broken pipe: nothing is logged or stopped.
        """
        with self._lost_lock:
            first, self._lost = not self._lost, True
        if first and not self._conn.closed:
            log.error("the main process is gone (%s); this worker stops", exc or "pipe closed")
            self._on_lost()
        return StateUnavailable("the server is shutting down")


def worker_pipe() -> tuple[OwnerEnd, WorkerEnd]:
    """A new pipe: the supervisor's end and the worker's."""
    return Pipe()


def _stop_this_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def expect(value: object, kind: type[T], where: str = "reply") -> T:
    """``value`` if it is a ``kind``; TypeError otherwise (a bug on the other end)."""
    if not isinstance(value, kind):
        raise TypeError(f"{where}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def fields(message: object, count: int, where: str) -> Args:
    """``message`` as a tuple of ``count`` items; TypeError if it is not one."""
    items: Args = expect(message, tuple, where)
    if len(items) != count:
        raise TypeError(f"{where}: expected {count} items, got {len(items)}")
    return items


def arg(args: Args, index: int, kind: type[T]) -> T:
    """Argument ``index`` of a request, checked to be a ``kind``."""
    if index >= len(args):
        raise TypeError(f"argument {index + 1} missing")
    return expect(args[index], kind, f"argument {index + 1}")
