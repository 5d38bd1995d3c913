"""What the administrator's services read and change in the shared state: :class:`AdminState`.

The control socket (:mod:`ftpserver.live`) and the metrics
(:mod:`ftpserver.metrics`) see the shared state through this small
protocol, whichever keeps it:

* :class:`LocalAdminState`, the in-process
  :class:`~ftpserver.state.shared.LocalState` of a server serving alone or
  of a supervisor of workers;
* :class:`~ftpserver.cluster.pgadmin.PgAdminState`, the tables in
  PostgreSQL when ``shared_state`` is set: bans are the cluster's (an unban
  lifts the ban on every node), sessions this node's, and the nodes listed.
"""

from __future__ import annotations

from typing import Any, Protocol

from ftpserver.state.ledger import Unmeasured
from ftpserver.state.shared import LocalState

__all__ = ["AdminState", "LocalAdminState"]

Row = dict[str, Any]  # JSON, for the control socket


class AdminState(Protocol):
    """The shared state as the administrator sees it."""

    def banned(self) -> list[tuple[str, float]]:
        """``(address, seconds left)`` of every ban in force, soonest to end first."""
        ...

    def unban(self, ip: str) -> bool:
        """Lift the ban on ``ip`` (and forget its failed logins); whether it was banned."""
        ...

    def session_count(self) -> int:
        """Sessions open now on this server (every worker of it)."""
        ...

    def nodes(self) -> list[Row]:
        """The nodes of the cluster (name, address, lease age, sessions, transfers); [] alone."""
        ...

    def problem(self) -> str | None:
        """None when the shared state answers; else why not (for ``/healthz``)."""
        ...

    def quota_used(self, users: list[str]) -> dict[str, int]:
        """Bytes used by each of ``users`` whose home has been measured."""
        ...

    def close(self) -> None:
        """Let go of what it holds (connections)."""
        ...


class LocalAdminState:
    """The in-process shared state of one server (or one supervisor)."""

    def __init__(self, state: LocalState) -> None:
        self.state = state

    def banned(self) -> list[tuple[str, float]]:
        return self.state.bans.banned()

    def unban(self, ip: str) -> bool:
        return self.state.bans.unban(ip)

    def session_count(self) -> int:
        return self.state.limiter.count

    def nodes(self) -> list[Row]:
        return []

    def problem(self) -> str | None:
        self.state.limiter.count  # noqa: B018 (the shared state answers)
        return None

    def quota_used(self, users: list[str]) -> dict[str, int]:
        used: dict[str, int] = {}
        for name in users:
            try:
                used[name] = self.state.quotas.usage(name, None, 0).used
            except Unmeasured:  # no session has needed the figure yet (or a reload forgot it)
                continue
        return used

    def close(self) -> None:
        pass
