"""File descriptors at their limit: raising the soft limit, checking the fit, pacing accept.

Every session holds its socket, and a transfer holds its file and, for a
big upload, a splice pipe: :data:`PER_SESSION` descriptors in the worst
case.  :func:`raise_nofile_limit` lifts the process's soft
``RLIMIT_NOFILE`` to the hard limit at start (workers inherit it), and
:func:`fit_warning` says when ``max_sessions`` cannot fit under it.

Out of descriptors, ``accept`` fails with ``EMFILE``/``ENFILE`` while the
listening socket stays readable, so a plain accept loop spins on it.
:class:`AcceptGate` paces it instead: before each ``accept`` it checks that
the lowest free descriptor is below the limit less a reserve (so logged-in
sessions can still open their files); when it is not, or ``accept`` fails
for want of descriptors or memory, it evicts the session that has waited
longest without logging in (:func:`evict_oldest_waiting`: one connected
for a second or more, so never a real client, which logs in within a round
trip), and waits until a session ends (or a short pause passes).  It logs
the first such spell, and then at most one a minute (counting the ones in
between), so a flood cannot fill the log.  Connections that arrive
meanwhile wait in the kernel's listen queue.  When no thread can be started
for a connection (the process or cgroup limit on threads), the server
answers it with the error 421, closes it and backs off the same way
(:meth:`AcceptGate.no_thread`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.framing import encode_frame
from ftpproto.messages import error

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "BASE_DESCRIPTORS",
    "PER_SESSION",
    "AcceptGate",
    "Evictable",
    "descriptors_needed",
    "evict_oldest_waiting",
    "fit_warning",
    "nofile_limits",
    "prepare_descriptors",
    "raise_nofile_limit",
    "refuse_busy",
]

log = logging.getLogger("ftpserver")

PER_SESSION = 4  # the socket, the open file, the two ends of a splice pipe
BASE_DESCRIPTORS = 64  # the process itself: standard streams, listener, logs, worker pipes
LOG_EVERY = 60.0  # seconds: at most one "out of descriptors" warning per this time
EVICT_AFTER = 1.0  # seconds connected without a login before a session may be evicted
PAUSE = 0.2  # seconds between tries while out of descriptors, if no session ends sooner
_STARVED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_UNLIMITED = 1 << 20  # what "unlimited" is taken to mean (Linux's default nr_open)


def nofile_limits() -> tuple[int, int]:
    """The process's ``(soft, hard)`` descriptor limits; "unlimited" as 2**20."""
    if resource is None:
        return _UNLIMITED, _UNLIMITED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def finite(value: int) -> int:
        return _UNLIMITED if value == resource.RLIM_INFINITY else int(value)

    return finite(soft), finite(hard)


def raise_nofile_limit() -> tuple[int, str]:
    """Raise the soft descriptor limit to the hard one; ``(soft limit now, what to log)``."""
    soft, hard = nofile_limits()
    if resource is not None and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:  # macOS refuses above OPEN_MAX
            return soft, f"could not raise the open file limit from {soft} to {hard}: {exc}"
        return hard, f"raised the open file limit from {soft} to {hard}"
    return soft, f"open file limit: {soft}"


def descriptors_needed(max_sessions: int) -> int:
    """Descriptors one process may need with ``max_sessions`` sessions, all transferring."""
    return BASE_DESCRIPTORS + PER_SESSION * max_sessions


def fit_warning(max_sessions: int, limit: int) -> str | None:
    """A one-line warning if ``max_sessions`` may not fit under ``limit`` descriptors."""
    if max_sessions == 0:
        return (
            f"max_sessions is 0 (no limit): sessions are bounded only by the "
            f"open file limit ({limit}, about {_sessions_under(limit)} sessions)"
        )
    needed = descriptors_needed(max_sessions)
    if needed <= limit:
        return None
    return (
        f"max_sessions {max_sessions} may need {needed} open files but the limit is "
        f"{limit} (about {_sessions_under(limit)} sessions): raise it (ulimit -n, "
        f"LimitNOFILE= in the systemd unit) or lower max_sessions"
    )


def prepare_descriptors(max_sessions: int) -> Callable[[], None]:
    """At start: raise the soft limit; returns what logs it, once the server is up.

    The figure (and a warning if ``max_sessions`` may not fit) is logged
    after the "listening" line, so that a server refusing to start says
    only why.
    """
    limit, figure = raise_nofile_limit()
    warning = fit_warning(max_sessions, limit)

    def report() -> None:
        log.info("%s", figure)
        if warning is not None:
            log.warning("%s", warning)

    return report


def _sessions_under(limit: int) -> int:
    return max(0, (limit - BASE_DESCRIPTORS) // PER_SESSION)


class Evictable(Protocol):
    """A session as :func:`evict_oldest_waiting` sees it."""

    @property
    def user(self) -> object:
        """None until logged in."""

    @property
    def connected_at(self) -> float:
        """``time.monotonic()`` at the connection."""

    @property
    def evicted(self) -> bool:
        """Whether :meth:`evict` was called."""

    def evict(self) -> None:
        """Close the session from another thread."""


def evict_oldest_waiting(sessions: Iterable[Evictable], min_age: float = EVICT_AFTER) -> bool:
    """Evict the session that has waited longest without logging in (at least ``min_age`` s).

    Out of descriptors, this lets each new connection take the place of one
    that never logged in, rather than wait for its ``login_timeout``: a real
    client logs in within a round trip, so only silent ones are old enough.
    Returns False when there is none to evict.
    """
    now = time.monotonic()
    waiting = [
        s for s in sessions if s.user is None and not s.evicted and now - s.connected_at >= min_age
    ]
    if not waiting:
        return False
    min(waiting, key=lambda s: s.connected_at).evict()
    return True


def refuse_busy(request: socket.socket, plain: bool) -> None:
    """Tell a connection no session could be started for it (error 421), over plain TCP.

    Over TLS nothing can be said before the handshake, which needs the
    session's thread: the connection is just closed.
    """
    if plain:
        busy = ProtocolError(ErrorCode.TOO_MANY_SESSIONS, "server busy, try again later")
        with contextlib.suppress(OSError):
            request.send(encode_frame(error("error", busy).encode()))


def _lowest_free_descriptor(sock: socket.socket) -> int:
    """The number the next new descriptor gets (the kernel hands out the lowest free one)."""
    probe = os.dup(sock.fileno())
    os.close(probe)
    return probe


class AcceptGate:
    """Accepts connections while descriptors last; otherwise waits without spinning."""

    def __init__(
        self, limit: int | None = None, make_room: Callable[[], bool] | None = None
    ) -> None:
        """``make_room`` (if given) is called when out of descriptors, to end one session."""
        self.limit = limit if limit is not None else nofile_limits()[0]
        self.make_room = make_room
        self.reserve = min(32, self.limit // 4)
        self._freed = threading.Event()
        self._starved_since: float | None = None  # when the current spell began
        self._spell_logged = False
        self._logged_at = -LOG_EVERY
        self._logged_spells = 0
        self.spells = 0  # how many times the server ran out

    def freed(self) -> None:
        """A session ended and gave its descriptors back: try to accept again now."""
        self._freed.set()

    def accept(self, sock: socket.socket) -> tuple[socket.socket, object]:
        """``sock.accept()``, or back off and raise ``BlockingIOError`` when out of descriptors.

        The caller (socketserver's loop) treats ``OSError`` as "nothing
        accepted this time" and comes back when the socket is readable.
        """
        try:
            lowest = _lowest_free_descriptor(sock)
        except OSError as exc:
            if exc.errno not in _STARVED:
                raise
            lowest = self.limit
        if lowest >= self.limit - self.reserve:
            self._starve("file descriptors", f"{lowest} of {self.limit} open files in use")
            raise BlockingIOError(errno.EAGAIN, "out of descriptors")
        try:
            conn, address = sock.accept()
        except OSError as exc:
            if exc.errno in _STARVED:
                self._starve("file descriptors", os.strerror(exc.errno or 0))
            raise
        if self._starved_since is not None:
            if self._spell_logged:
                waited = time.monotonic() - self._starved_since
                log.warning("accepting connections again after %.1f s", waited)
            self._starved_since = None
        return conn, address

    def no_thread(self, why: str) -> None:
        """No thread could be started for an accepted connection: log it and back off."""
        self._starve("threads", why)

    def _starve(self, what: str, why: str) -> None:
        """Make room if we can; log the first time in a while; wait for a session to end."""
        if self.make_room is not None:
            self.make_room()
        now = time.monotonic()
        if self._starved_since is None:
            self._starved_since = now
            self.spells += 1
            self._spell_logged = now - self._logged_at >= LOG_EVERY
            if self._spell_logged:
                again = self.spells - self._logged_spells
                more = f"; {again - 1} more time(s) since the last warning" if again > 1 else ""
                log.warning(
                    "out of %s (%s): serving the sessions there are, "
                    "new connections wait until some end%s",
                    what,
                    why,
                    more,
                )
                self._logged_at, self._logged_spells = now, self.spells
        self._freed.wait(PAUSE)
        self._freed.clear()
