"""Sessions logged in per user, for each user's ``max_sessions`` limit.

One :class:`UserSessions` belongs to the server's shared state
(:class:`~ftpserver.state.shared.LocalState`; the protocol sessions use is
:class:`~ftpserver.state.protocols.UserSessionSlots`): with worker processes
it lives in the supervisor and the workers reach it through their pipe
(:class:`~ftpserver.state.pipe.RemoteUserSessions`), so the count covers
every worker; a worker that dies gives its users' slots back like its other
session slots.  Every login takes a slot (also without a limit, so a limit set
later by ``usermod --max-sessions`` counts the sessions already open) and the
end of the session gives it back.
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["UserSessions"]


class UserSessions:
    """Counts each user's logged-in sessions; refuses one over the user's limit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()

    def acquire(self, name: str, limit: int) -> bool:
        """Take a slot for ``name`` unless ``limit`` (0: none) are taken already."""
        with self._lock:
            if limit and self._open[name] >= limit:
                return False
            self._open[name] += 1
            return True

    def release(self, name: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        with self._lock:
            self._open[name] -= 1
            if self._open[name] <= 0:
                del self._open[name]

    def count(self, name: str) -> int:
        """Sessions ``name`` has open now."""
        with self._lock:
            return self._open[name]
