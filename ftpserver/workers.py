"""Several worker processes serving one listening socket, and the state they share.

A Python process runs Python code on one core at a time (the GIL), and when
its threads are spread over several cores every hand-over of the GIL costs a
cross-core wake-up: with many busy sessions a thread-per-session server
spends more time passing the GIL than serving.  With ``workers`` other than 1
the main process (the *supervisor*) binds the socket and forks that many
workers, each pinned to one CPU and running an ordinary
:class:`~ftpserver.server.FileTransferServer` on the shared socket: the
kernel hands each new connection to one of them.

What every session must share lives once, in the supervisor (a
:class:`~ftpserver.state.shared.LocalState`): the quota book (so
reservations by one user's sessions add up wherever they run), the session
slots, the ban list and the bandwidth buckets.  A worker reaches them
through typed proxies (:func:`~ftpserver.state.pipe.remote_shared`), one
call and one answer over a pipe per method call (pipelined uploads ask ahead
and post what needs no answer: :class:`~ftpserver.state.wire.PipeClient`);
:class:`~ftpserver.state.owner.StateOwner` answers each worker in its own
thread.  A second pipe per worker carries the administrator's questions the
other way (:mod:`ftpserver.adminpipe`, :mod:`ftpserver.services`): the
supervisor asks each worker for its sessions, or to end some of them, and
the worker answers.  When a worker's pipe closes (the worker stopped or was
killed), the owner gives back the session slots and upload reservations it
still held, and the supervisor starts a new worker in its place.  The
supervisor forks only while no call is being answered, so a new worker
inherits no lock taken mid-call.

Signals go to the supervisor: SIGHUP checks the new settings and users once
(:func:`~ftpserver.server.reload_config`, which also reopens the log file),
applies them to the shared state and passes the reload on to the workers;
SIGTERM and SIGINT are passed on as SIGTERM (a second one cuts running
transfers off, as with one process).  Workers ignore SIGINT so that a Ctrl-C
in a terminal reaches them only through the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ftpserver.activity import ReloadLog
from ftpserver.adminpipe import admin_pipe
from ftpserver.audit import set_process_label
from ftpserver.cluster.serving import admin_state, join, leave, open_cluster
from ftpserver.config import Settings
from ftpserver.server import FileTransferServer, reload_config, report_reload
from ftpserver.services import AdminServices
from ftpserver.signals import SignalCounter
from ftpserver.state.owner import StateOwner
from ftpserver.state.pipe import flush_remote, remote_shared
from ftpserver.state.shared import LocalState
from ftpserver.state.wire import WorkerEnd, worker_pipe
from ftpserver.users import UserStore

__all__ = ["cpu_plan", "serve_workers"]

log = logging.getLogger("ftpserver")

_FORWARDED = {signal.SIGTERM, signal.SIGHUP}
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
RESPAWN_PAUSE = 1.0  # seconds before replacing a worker that ended this soon after its start
READY_TIMEOUT = 60.0  # seconds the first workers get to start serving before "listening on"
# run(server, stop signals, serving): serves until stopped; serving() once it accepts
Runner = Callable[[FileTransferServer, tuple[signal.Signals, ...], Callable[[], None]], int]


def cpu_plan(workers: int) -> list[int]:
    """The CPU each worker is pinned to: ``workers`` of them, 0 meaning one per CPU."""
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
    else:  # no CPU affinity on this system (macOS): the workers are not pinned
        cpus = list(range(os.cpu_count() or 1))
    count = workers or len(cpus)
    return [cpus[i % len(cpus)] for i in range(count)]


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
    conn: WorkerEnd,
    settings: Settings,
    users: UserStore,
    reload_settings: Callable[[], Settings],
    run: Runner,
    prepare: Callable[[FileTransferServer], None],
    ready: int,
) -> int:
    """Serve as worker ``index``; ``ready`` (a pipe, or -1) gets a byte once it accepts."""
    set_process_label(f"worker {index}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as exc:
            log.warning("worker %d not pinned to CPU %d: %s", index, cpu, exc)
    shared = remote_shared(conn)
    cluster = open_cluster(settings, f"/{index}")  # shared_state: its own pool
    if cluster is not None:
        shared = cluster.shared
    server = FileTransferServer(settings, users, reload_settings, shared=shared, listener=listener)
    join(cluster, server)
    prepare(server)
    if index == 0:
        server.start_sweeper()
    try:
        return run(server, (signal.SIGTERM,), lambda: _serving(index, cpu, ready))
    finally:
        leave(cluster)
        flush_remote(shared)  # the settles still held back, before the process ends


def serve_workers(
    settings: Settings,
    users: UserStore,
    reload_settings: Callable[[], Settings],
    run: Runner,
    on_started: Callable[[], None] = lambda: None,
) -> int:
    """Run the supervisor until SIGTERM/SIGINT; ``run`` serves one worker's server.

    ``on_started`` is called once the workers are up (it logs the start-up figures).
    The ``listening on`` line is printed once every first worker accepts
    (:func:`_wait_ready`): a crowd that connects on seeing it is spread over
    all of them, not taken by whichever started first.
    """
    listener = _listen(settings)
    set_process_label("supervisor")
    state = LocalState.create(settings)
    owner = StateOwner(state)
    cpus = cpu_plan(settings.workers)
    workers: dict[int, int] = {}  # pid -> index
    started: dict[int, float] = {}  # pid -> time.monotonic() at its start
    current = _Config(settings, users)
    signals = SignalCounter((signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD))
    supervisor = os.getpid()
    ready_read, ready_write = os.pipe()  # each first worker writes a byte once it accepts
    shown = admin_state(settings, state, listener.getsockname()[1])  # bans, nodes, health
    admin = AdminServices.supervisor(settings, shown, lambda: current.users, listener)
    admin.start()

    def spawn(index: int) -> None:
        mine, theirs = worker_pipe()
        asks, answers = admin_pipe()  # the control socket's requests to the worker
        # The worker starts with these blocked, until its own handlers are in
        # place (SignalCounter unblocks them): a reload or stop sent meanwhile
        # waits instead of killing it with the default action.
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        pid = -1
        try:
            pid = owner.fork()  # while no state thread is mid-call, holding a lock
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        if pid == 0:  # the worker
            code = 1
            try:
                _close(ready_read)
                _stop_with(supervisor)
                signals.close()
                owner.close_in_child()
                admin.close_in_child()
                mine.close()
                asks.close()
                code = _worker(
                    index,
                    cpus[index],
                    listener,
                    theirs,
                    current.settings,
                    current.users,
                    reload_settings,
                    run,
                    lambda server: admin.prepare_worker(index, server, answers),
                    ready_write,
                )
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        theirs.close()
        answers.close()
        admin.links.add(index, pid, asks)
        workers[pid] = index
        started[pid] = time.monotonic()
        owner.attach(mine, index)

    for index in range(len(cpus)):
        spawn(index)
    _close(ready_write)
    ready_write = -1  # a worker started later has no one waiting for it
    _wait_ready(ready_read, len(cpus), lambda: signals[signal.SIGTERM] + signals[signal.SIGINT])
    _close(ready_read)
    ready_read = -1  # closed: a later worker must not close whatever reuses the number
    host, port = listener.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    log.info("serving %d users from %s with %d workers", len(users.users), settings.home, len(cpus))
    on_started()
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
                admin.stopping = True
                for pid in workers:
                    _signal(pid, signal.SIGTERM)
            if signals[signal.SIGHUP] > reloads and not stops:
                reloads = signals[signal.SIGHUP]
                pids = list(workers)
                current = _reload(current, reload_settings, state, pids, admin.view.reloads)
            for pid, code in _reap():
                if pid not in workers:
                    continue
                index = workers.pop(pid)
                admin.links.drop(pid)
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
        admin.close()
        for pid in workers:
            _signal(pid, signal.SIGKILL)
    log.info("stopped")
    return 0


def _serving(index: int, cpu: int, fd: int) -> None:
    """Worker ``index`` accepts now: say so, with a byte to the supervisor on ``fd`` (or -1)."""
    log.info("worker %d serving (pid %d, CPU %d)", index, os.getpid(), cpu)
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.write(fd, b".")
        _close(fd)


def _close(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def _wait_ready(fd: int, count: int, stops: Callable[[], int]) -> None:
    """Wait until ``count`` workers said they accept, or every one of them ended.

    The pipe reads end of file once no worker holds its end: a worker that
    failed at start says nothing, and the supervisor's loop replaces it.
    A stop signal, or :data:`READY_TIMEOUT`, ends the wait too.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    told = 0
    while told < count and not stops():
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("%d of %d workers serve after %g s", told, count, READY_TIMEOUT)
            return
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not readable:
                continue
            data = os.read(fd, count)
            if not data:
                return  # every worker has ended or told
            told += len(data)


@dataclass(frozen=True)
class _Config:
    settings: Settings
    users: UserStore


def _reload(
    current: _Config,
    reload_settings: Callable[[], Settings],
    state: LocalState,
    pids: list[int],
    reloads: ReloadLog,
) -> _Config:
    """Check the files once; if good, apply them to the shared state and tell the workers.

    Each worker then reloads itself; the outcome is logged here, once.
    """
    loaded = reload_config(current.settings, current.users, reload_settings, reloads)
    if loaded is None:
        return current
    state.configure(loaded.settings, loaded.users)
    report_reload(loaded.restart, loaded.users)
    for pid in pids:
        _signal(pid, signal.SIGHUP)
    reloads.record(True, loaded.lines)
    return _Config(loaded.settings, loaded.users)


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
