"""The supervisor's side of the shared state: answers the workers' calls, one thread per pipe.

Only the methods listed in :meth:`StateOwner._table` may be called, each
with its arguments checked (a posted call, :data:`~ftpserver.state.wire.POST`,
is answered with nothing, and logged if it failed); limits change only through the supervisor's
reload.  When a worker's pipe closes (the worker stopped or was killed),
the owner gives back the session slots and upload reservations it still
held.  :meth:`StateOwner.fork` forks while no call is being answered, so a
new worker inherits no lock taken mid-call.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ftpserver.state.quotas import TARGET as QUOTAS
from ftpserver.state.quotas import QuotaHolds, quota_methods
from ftpserver.state.shared import LocalState
from ftpserver.state.wire import POST, Args, OwnerEnd, Reply, arg, expect, fields, pack, unpack

__all__ = ["StateOwner"]

log = logging.getLogger("ftpserver")


@dataclass
class _Held:
    """What one worker holds in the shared state, to give back if it dies."""

    slots: Counter[str] = field(default_factory=Counter)
    quotas: QuotaHolds = field(default_factory=QuotaHolds)
    user_slots: Counter[str] = field(default_factory=Counter)  # per user, for max_sessions


Method = tuple[int, Callable[[_Held, Args], object]]  # argument count, call


class _Gate:
    """Calls pass in any number at once; :meth:`fork` waits until none runs, then forks."""

    def __init__(self) -> None:
        # A plain lock: the new process releases the copy it inherits held.
        self._cond = threading.Condition(threading.Lock())
        self._running = 0
        self._forking = False

    @contextmanager
    def passing(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._forking)
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def fork(self) -> int:
        """``os.fork()`` while no call runs; new calls wait meanwhile, so it is not starved."""
        with self._cond:
            self._forking = True
            self._cond.wait_for(lambda: self._running == 0)
            self._forking = False  # nobody passes before the lock is released, after the fork
            self._cond.notify_all()
            return os.fork()


class StateOwner:
    """Keeps the shared state and answers the workers' calls on it."""

    def __init__(self, state: LocalState) -> None:
        self.state = state
        self._lock = threading.Lock()
        self._pipes = itertools.count()
        self._conns: list[OwnerEnd] = []
        self._gate = _Gate()
        self._methods = self._table()

    def _table(self) -> dict[tuple[str, str], Method]:
        """What a worker may call: ``(target, method) -> (argument count, call)``."""
        state = self.state

        def acquire(held: _Held, args: Args) -> str | None:
            ip = arg(args, 0, str)
            refused = state.limiter.acquire(ip)
            if refused is None:
                held.slots[ip] += 1
            return refused

        def release(held: _Held, args: Args) -> None:
            ip = arg(args, 0, str)
            _give_back(held.slots, ip, state.limiter.release, ip)

        def take(held: _Held, args: Args) -> float:
            user, direction = arg(args, 0, str), arg(args, 1, str)
            return state.bandwidth.take(user, direction, arg(args, 2, int), arg(args, 3, int))

        def user_acquire(held: _Held, args: Args) -> bool:
            name = arg(args, 0, str)
            taken = state.user_sessions.acquire(name, arg(args, 1, int))
            if taken:
                held.user_slots[name] += 1
            return taken

        def user_release(held: _Held, args: Args) -> None:
            name = arg(args, 0, str)
            _give_back(held.user_slots, name, state.user_sessions.release, f"user {name}")

        table: dict[tuple[str, str], Method] = {
            ("limiter", "acquire"): (1, acquire),
            ("limiter", "release"): (1, release),
            ("bans", "is_banned"): (1, lambda held, args: state.bans.is_banned(arg(args, 0, str))),
            ("bans", "failure"): (1, lambda held, args: state.bans.failure(arg(args, 0, str))),
            ("bandwidth", "take"): (4, take),
            ("user_sessions", "acquire"): (2, user_acquire),
            ("user_sessions", "release"): (1, user_release),
        }
        for name, (count, call) in quota_methods(state.quotas).items():
            table[(QUOTAS, name)] = (count, _with_quota_holds(call))
        return table

    def attach(self, conn: OwnerEnd, worker: int) -> threading.Thread:
        """Answer the calls of worker number ``worker`` on ``conn`` in a thread until it closes."""
        pipe = next(self._pipes)
        with self._lock:
            self._conns.append(conn)
        thread = threading.Thread(
            target=self._serve, args=(conn, worker), name=f"state-{worker}.{pipe}", daemon=True
        )
        thread.start()
        return thread

    def fork(self) -> int:
        """``os.fork()`` while no call is being answered (for a new worker).

        A thread answering a call may hold a lock (the quota book's, the
        log's); a process forked meanwhile would keep it held forever.
        """
        return self._gate.fork()

    def close_in_child(self) -> None:
        """In a newly forked worker: close the copies of the other workers' pipes.

        Otherwise a worker would keep its siblings' pipes open, and none of
        them would see the pipe break when the supervisor is gone.
        """
        for conn in self._conns:
            conn.close()

    def _serve(self, conn: OwnerEnd, worker: int) -> None:
        held = _Held()
        try:
            while True:
                try:
                    message: object = conn.recv()
                except (EOFError, OSError):
                    return
                with self._gate.passing():
                    answered = (self._answer_one(held, worker, r) for r in unpack(message))
                    replies = [reply for reply in answered if reply is not None]
                if replies:  # one message for the batch's replies, as the requests came
                    conn.send_bytes(pack(replies))
        except OSError:
            return
        finally:
            conn.close()
            with self._lock:
                self._conns.remove(conn)
            with self._gate.passing():
                self._give_back(held, worker)

    def _answer_one(self, held: _Held, worker: int, request: object) -> Reply | None:
        """The reply to one request, or None for a posted one (logged if it failed)."""
        if not (isinstance(request, tuple) and len(request) == 4 and request[3] == POST):
            return self.answer(held, request)
        reply = self.answer(held, request[:3])
        if not reply[0]:
            log.warning("worker %d: a posted %s failed: %s", worker, request[:3], reply[1])
        return None

    def answer(self, held: _Held, request: object) -> Reply:
        """The reply to one request of a worker holding ``held``."""
        try:
            parts = fields(request, 3, "request (target, method, arguments)")
            target, method = expect(parts[0], str, "target"), expect(parts[1], str, "method")
            args: Args = expect(parts[2], tuple, "arguments")
            entry = self._methods.get((target, method))
            if entry is None:
                raise AttributeError(f"{target}.{method} is not shared")
            count, call = entry
            if len(args) != count:
                raise TypeError(f"{target}.{method} takes {count} arguments, not {len(args)}")
            return True, call(held, args)
        except Exception as exc:
            return False, exc

    def _give_back(self, held: _Held, worker: int) -> None:
        slots = sum(held.slots.values())
        for ip, count in held.slots.items():
            for _ in range(count):
                self.state.limiter.release(ip)
        uploads = held.quotas.give_back(self.state.quotas)
        for name, count in held.user_slots.items():
            for _ in range(count):
                self.state.user_sessions.release(name)
        if slots or uploads:
            log.warning(
                "worker %d left %d sessions and %d uploads behind; released",
                worker,
                slots,
                uploads,
            )


def _with_quota_holds(
    call: Callable[[QuotaHolds, Args], object],
) -> Callable[[_Held, Args], object]:
    return lambda held, args: call(held.quotas, args)


def _give_back(held: Counter[str], key: str, release: Callable[[str], None], what: str) -> None:
    """Release one slot a worker holds under ``key``; a worker that holds none is refused."""
    if held[key] <= 0:
        raise ValueError(f"no session slot held for {what}")
    release(key)
    held[key] -= 1
