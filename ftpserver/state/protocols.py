"""The shared-state interfaces a session uses, one typed Protocol per concern.

Each is implemented in process (:mod:`ftpserver.guards`) and by a worker's
proxy on the supervisor's copy (:mod:`ftpserver.state.pipe`); a backend that
keeps the state elsewhere (a database shared by several hosts) is one more
class per protocol.  Limits are not part of them: whoever owns the state
configures it (see :class:`~ftpserver.state.shared.LocalState`).  The quota
ledger's protocol is :class:`ftpserver.state.ledger.QuotaLedger`.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["BandwidthBudget", "Bans", "SessionSlots", "UserSessionSlots"]


class SessionSlots(Protocol):
    """Open sessions, counted in total and per client address."""

    def acquire(self, ip: str) -> str | None:
        """Take a slot for ``ip``: None, or why it was refused (a reply text)."""
        ...

    def release(self, ip: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        ...


class UserSessionSlots(Protocol):
    """Logged-in sessions per user, for each user's ``max_sessions``."""

    def acquire(self, name: str, limit: int) -> bool:
        """Take a slot for user ``name`` unless ``limit`` (0: no limit) are taken already."""
        ...

    def release(self, name: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        ...


class Bans(Protocol):
    """Failed logins per client address, and the bans they lead to."""

    def is_banned(self, ip: str) -> bool:
        """Whether ``ip`` is banned now."""
        ...

    def failure(self, ip: str) -> bool:
        """Count a failed login from ``ip``; True if that bans it."""
        ...


class BandwidthBudget(Protocol):
    """Byte allowances per user and direction, shared by all of that user's sessions."""

    def take(self, user: str, direction: str, rate: int, count: int) -> float:
        """Spend ``count`` bytes at ``rate`` bytes/s; the seconds the caller must wait."""
        ...
