"""Several worker processes serving one listening socket, and the state they share.

A Python process runs Python code on one core at a time (the GIL), and when
its threads are spread over several cores every hand-over of the GIL costs a
cross-core wake-up: with many busy sessions a thread-per-session server
spends more time passing the GIL than serving.  With ``workers`` other than 1
the main process (the *supervisor*) binds the socket and forks that many
workers, each pinned to one CPU and running an ordinary
:class:`~ftpserver.server.FileTransferServer` on the shared socket: the
kernel hands each new connection to one of them.

What every session must share lives once, in the supervisor: the quota book
(so reservations by one user's sessions add up wherever they run), the
session limiter, the ban list and the bandwidth buckets.  A worker reaches
them through :class:`Remote` handles, one call and one answer over a pipe
per method call; :class:`StateOwner` answers each worker in its own thread.
When a worker's pipe closes (the worker stopped or was killed), the owner
gives back the session slots and upload reservations it still held, and the
supervisor starts a new worker in its place.

Signals go to the supervisor: SIGHUP checks the new settings and users once,
applies them to the shared state and passes the reload on to the workers;
SIGTERM and SIGINT are passed on as SIGTERM (a second one cuts running
transfers off, as with one process).  Workers ignore SIGINT so that a Ctrl-C
in a terminal reaches them only through the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any, ClassVar, cast

from ftpserver.audit import configure_logging, set_process_label
from ftpserver.config import Settings
from ftpserver.quota import Reservation
from ftpserver.server import (
    FIXED_SETTINGS,
    FileTransferServer,
    Shared,
    apply_shared_settings,
    report_reload,
)
from ftpserver.signals import SignalCounter
from ftpserver.users import UserStore, load_users

__all__ = ["Remote", "StateOwner", "cpu_plan", "serve_workers"]

log = logging.getLogger("ftpserver")

_FORWARDED = {signal.SIGTERM, signal.SIGHUP}
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
RESPAWN_PAUSE = 1.0  # seconds before replacing a worker that ended this soon after its start
Runner = Callable[[FileTransferServer, tuple[signal.Signals, ...]], int]


def cpu_plan(workers: int) -> list[int]:
    """The CPU each worker is pinned to: ``workers`` of them, 0 meaning one per CPU."""
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
    else:  # no CPU affinity on this system (macOS): the workers are not pinned
        cpus = list(range(os.cpu_count() or 1))
    count = workers or len(cpus)
    return [cpus[i % len(cpus)] for i in range(count)]


class Remote:
    """A worker's handle on one shared object in the supervisor.

    Any method call is sent over the worker's pipe and waits for the answer;
    an exception raised there is raised here.  One lock per pipe keeps the
    calls of the worker's threads apart.  If the pipe is broken the
    supervisor is gone: the call fails and the worker stops itself (SIGTERM,
    so running transfers get the usual grace), since without the shared
    state it cannot keep its limits.
    """

    def __init__(self, conn: Connection, name: str, lock: threading.Lock) -> None:
        self._conn = conn
        self._name = name
        self._lock = lock

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                with self._lock:
                    self._conn.send((self._name, method, args, kwargs))
                    ok, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                log.error("the main process is gone (%s); this worker stops", exc)
                os.kill(os.getpid(), signal.SIGTERM)
                raise ConnectionAbortedError("the server is shutting down") from exc
            if ok:
                return value
            raise value

        return call


def remote_shared(conn: Connection) -> Shared:
    """:class:`Shared` made of handles on the supervisor's objects."""
    lock = threading.Lock()
    names = ("quotas", "limiter", "bans", "bandwidth", "user_sessions")
    return Shared(*(cast(Any, Remote(conn, name, lock)) for name in names))


@dataclass
class _Held:
    """What one worker holds in the shared state, to give back if it dies."""

    slots: Counter[str] = field(default_factory=Counter)
    reservations: list[Reservation] = field(default_factory=list)
    user_slots: Counter[str] = field(default_factory=Counter)


class StateOwner:
    """Keeps the shared state and answers the workers' calls on it."""

    # What workers may call; limits change only through the supervisor's reload.
    METHODS: ClassVar[dict[str, set[str]]] = {
        "quotas": {"usage", "reserve", "release", "replace", "claim", "remove"},
        "limiter": {"acquire", "release"},
        "bans": {"is_banned", "failure"},
        "bandwidth": {"take"},
        "user_sessions": {"acquire", "release"},
    }

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._lock = threading.Lock()
        self._held: dict[int, _Held] = {}  # by pipe: a new worker may reuse an index
        self._pipes = itertools.count()
        self._conns: list[Connection] = []

    def attach(self, conn: Connection, worker: int) -> threading.Thread:
        """Answer the calls of worker number ``worker`` on ``conn`` in a thread until it closes."""
        pipe = next(self._pipes)
        with self._lock:
            self._held[pipe] = _Held()
            self._conns.append(conn)
        thread = threading.Thread(
            target=self._serve, args=(conn, pipe, worker), name=f"state-{worker}", daemon=True
        )
        thread.start()
        return thread

    def _serve(self, conn: Connection, pipe: int, worker: int) -> None:
        try:
            while True:
                try:
                    name, method, args, kwargs = conn.recv()
                except (EOFError, OSError):
                    return
                conn.send(self._call(pipe, name, method, tuple(args), dict(kwargs)))
        except OSError:
            return
        finally:
            conn.close()
            with self._lock:
                self._conns.remove(conn)
            self._give_back(pipe, worker)

    def close_in_child(self) -> None:
        """In a newly forked worker: close the copies of the other workers' pipes.

        Otherwise a worker would keep its siblings' pipes open, and none of
        them would see the pipe break when the supervisor is gone.
        """
        for conn in self._conns:
            conn.close()

    def _call(
        self,
        pipe: int,
        name: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
    ) -> tuple[bool, Any]:
        if method not in self.METHODS.get(name, ()):
            return False, AttributeError(f"{name}.{method} is not shared")
        if (name, method) == ("quotas", "release"):
            self._forget_reservation(pipe, args[0])  # before release zeroes it
        elif (name, method) == ("quotas", "replace") and (kwargs or {}).get("release"):
            self._forget_reservation(pipe, (kwargs or {})["release"])  # replace gives it back
        try:
            result = getattr(getattr(self.shared, name), method)(*args, **(kwargs or {}))
        except Exception as exc:
            return False, exc
        with self._lock:
            held = self._held.setdefault(pipe, _Held())
            if (name, method) == ("limiter", "acquire") and result is None:
                held.slots[args[0]] += 1
            elif (name, method) == ("limiter", "release"):
                held.slots[args[0]] -= 1
            elif (name, method) == ("quotas", "reserve"):
                held.reservations.append(result)
            elif (name, method) == ("user_sessions", "acquire") and result:
                held.user_slots[args[0]] += 1
            elif (name, method) == ("user_sessions", "release"):
                held.user_slots[args[0]] -= 1
        return True, result

    def _forget_reservation(self, pipe: int, copy: Reservation) -> None:
        """The worker sent back a copy: stop holding the first reservation equal to it."""
        with self._lock:
            held = self._held.setdefault(pipe, _Held()).reservations
            for index, reservation in enumerate(held):
                if reservation == copy:
                    del held[index]
                    return

    def _give_back(self, pipe: int, worker: int) -> None:
        with self._lock:
            held = self._held.pop(pipe, _Held())
        for ip, count in held.slots.items():
            for _ in range(count):
                self.shared.limiter.release(ip)
        for reservation in held.reservations:
            self.shared.quotas.abandon(reservation)
        for name, count in held.user_slots.items():
            for _ in range(count):
                self.shared.user_sessions.release(name)
        if +held.slots or held.reservations:
            log.warning(
                "worker %d left %d sessions and %d uploads behind; released",
                worker,
                sum(held.slots.values()),
                len(held.reservations),
            )


def _listen(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listener = socket.create_server(
        (settings.host, settings.port), family=family, backlog=settings.listen_backlog
    )
    # Every worker waits on this socket; the ones that lose the race to accept
    # a connection must get EAGAIN, not block.
    listener.setblocking(False)
    return listener


def _worker(
    index: int,
    cpu: int,
    listener: socket.socket,
    conn: Connection,
    settings: Settings,
    users: UserStore,
    reload_settings: Callable[[], Settings],
    run: Runner,
) -> int:
    set_process_label(f"worker {index}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as exc:
            log.warning("worker %d not pinned to CPU %d: %s", index, cpu, exc)
    server = FileTransferServer(
        settings, users, reload_settings, shared=remote_shared(conn), listener=listener
    )
    if index == 0:
        server.start_sweeper()
    return run(server, (signal.SIGTERM,))


def serve_workers(
    settings: Settings,
    users: UserStore,
    reload_settings: Callable[[], Settings],
    run: Runner,
) -> int:
    """Run the supervisor until SIGTERM/SIGINT; ``run`` serves one worker's server."""
    listener = _listen(settings)
    set_process_label("supervisor")
    shared = Shared.create(settings)
    owner = StateOwner(shared)
    cpus = cpu_plan(settings.workers)
    workers: dict[int, int] = {}  # pid -> index
    started: dict[int, float] = {}  # pid -> time.monotonic() at its start
    current = _Config(settings, users)
    signals = SignalCounter((signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD))
    supervisor = os.getpid()

    def spawn(index: int) -> None:
        mine, theirs = Pipe()
        # The worker starts with these blocked, until its own handlers are in
        # place (SignalCounter unblocks them): a reload or stop sent meanwhile
        # waits instead of killing it with the default action.
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        if pid == 0:  # the worker
            code = 1
            try:
                _stop_with(supervisor)
                signals.close()
                owner.close_in_child()
                mine.close()
                code = _worker(
                    index,
                    cpus[index],
                    listener,
                    theirs,
                    current.settings,
                    current.users,
                    reload_settings,
                    run,
                )
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        theirs.close()
        workers[pid] = index
        started[pid] = time.monotonic()
        owner.attach(mine, index)

    for index in range(len(cpus)):
        spawn(index)
    host, port = listener.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    log.info("serving %d users from %s with %d workers", len(users.users), settings.home, len(cpus))
    forwarded = reloads = 0
    try:
        while workers:
            signals.wait(1.0)
            stops = signals[signal.SIGTERM] + signals[signal.SIGINT]
            if forwarded < stops and not forwarded:
                grace = current.settings.shutdown_grace
                log.info("stopping: no new sessions; running transfers get %g s", grace)
            while forwarded < stops:
                forwarded += 1
                for pid in workers:
                    _signal(pid, signal.SIGTERM)
            if signals[signal.SIGHUP] > reloads and not stops:
                reloads = signals[signal.SIGHUP]
                current = _reload(current, reload_settings, shared, list(workers))
            for pid, code in _reap():
                if pid not in workers:
                    continue
                index = workers.pop(pid)
                lived = time.monotonic() - started.pop(pid)
                if stops:
                    log.info("worker %d stopped", index)
                    continue
                log.error("worker %d ended unexpectedly (%s); starting another", index, code)
                if lived < RESPAWN_PAUSE:  # failing at start: do not spin
                    signals.wait(RESPAWN_PAUSE)
                spawn(index)
    finally:
        listener.close()
        for pid in workers:
            _signal(pid, signal.SIGKILL)
    log.info("stopped")
    return 0


@dataclass(frozen=True)
class _Config:
    settings: Settings
    users: UserStore


def _reload(
    current: _Config,
    reload_settings: Callable[[], Settings],
    shared: Shared,
    pids: list[int],
) -> _Config:
    """Check the files once; if good, apply them to the shared state and tell the workers.

    Each worker then reloads itself; the outcome is logged here, once.
    """
    try:
        fixed = {key: getattr(current.settings, key) for key in FIXED_SETTINGS}
        asked = reload_settings()
        changed = [key for key, value in fixed.items() if getattr(asked, key) != value]
        fresh = asked.replace(**fixed)
        fresh_users = load_users(fresh.users, fresh.home)
    except Exception as exc:
        log.error("reload refused, the old configuration stays in force: %s", exc)
        return current
    apply_shared_settings(shared, fresh, fresh_users)
    configure_logging(fresh)
    report_reload(changed, fresh_users)
    for pid in pids:
        _signal(pid, signal.SIGHUP)
    return _Config(fresh, fresh_users)


def _stop_with(supervisor: int) -> None:
    """Have the kernel send this new worker SIGTERM when ``supervisor`` dies (Linux).

    The worker then stops as if told to, idle sessions included; it stays
    blocked until the worker's handlers are in place.  Elsewhere a worker
    notices only when its next call to the shared state finds the pipe broken.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    if prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        reason = os.strerror(ctypes.get_errno())
        log.warning("worker will not stop with the main process: %s", reason)
    elif os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _reap() -> list[tuple[int, str]]:
    """Workers that have ended: ``(pid, how)``."""
    ended: list[tuple[int, str]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        if os.WIFSIGNALED(status):
            ended.append((pid, f"signal {os.WTERMSIG(status)}"))
        else:
            ended.append((pid, f"exit status {os.waitstatus_to_exitcode(status)}"))
