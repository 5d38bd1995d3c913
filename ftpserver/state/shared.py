"""The state a server's sessions share, as protocols, and its in-process implementation.

:class:`Shared` is what a :class:`~ftpserver.server.FileTransferServer`
holds: four protocols, whatever implements them.  :class:`LocalState` is the
one copy kept in this process (one process, or the supervisor of several
workers), with the limits it enforces; a worker holds
:func:`~ftpserver.state.pipe.remote_shared` proxies on the supervisor's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ftpserver.config import Settings
from ftpserver.guards import Bandwidth, BanList, SessionLimiter
from ftpserver.state.ledger import QuotaBook, QuotaLedger
from ftpserver.state.protocols import BandwidthBudget, Bans, SessionSlots, UserSessionSlots
from ftpserver.users import UserStore
from ftpserver.usersessions import UserSessions

__all__ = ["LocalState", "Shared"]


@dataclass(frozen=True)
class Shared:
    """The state every session of the server shares, whichever process serves it."""

    quotas: QuotaLedger
    limiter: SessionSlots
    bans: Bans
    bandwidth: BandwidthBudget
    user_sessions: UserSessionSlots


@dataclass(frozen=True)
class LocalState:
    """The shared state kept in this process, and the limits it enforces."""

    quotas: QuotaBook
    limiter: SessionLimiter
    bans: BanList
    bandwidth: Bandwidth
    user_sessions: UserSessions = field(default_factory=UserSessions)

    @classmethod
    def create(cls, settings: Settings) -> LocalState:
        """Fresh state for ``settings``."""
        return cls(
            QuotaBook(),
            SessionLimiter(settings.max_sessions, settings.max_sessions_per_ip),
            BanList(settings.ban_failures, settings.ban_window, settings.ban_time),
            Bandwidth(),
        )

    @property
    def shared(self) -> Shared:
        """The same objects, as the protocols sessions use."""
        return Shared(self.quotas, self.limiter, self.bans, self.bandwidth, self.user_sessions)

    def configure(self, settings: Settings, users: UserStore) -> None:
        """Take the limits of freshly reloaded settings and users.

        The users' figures are forgotten, and each home is measured again by
        the first session that needs it (outside the ledger's lock).
        """
        self.limiter.configure(settings.max_sessions, settings.max_sessions_per_ip)
        self.bans.configure(settings.ban_failures, settings.ban_window, settings.ban_time)
        for name in users.users:
            self.quotas.forget(name)
