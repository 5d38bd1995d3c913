"""A worker's side of the shared state: one small typed proxy per concern.

Each proxy implements its protocol (:mod:`ftpserver.state.protocols`,
:class:`~ftpserver.state.ledger.QuotaLedger`) with calls through one
:class:`~ftpserver.state.wire.PipeClient`, checking the type of every
result.  Giving back (``release``) after the supervisor is gone is not an
error: what was held went with it.
"""

from __future__ import annotations

import contextlib

from ftpserver.state.quotas import RemoteLedger
from ftpserver.state.shared import Shared
from ftpserver.state.wire import PipeClient, StateUnavailable, WorkerEnd, expect

__all__ = [
    "RemoteBandwidth",
    "RemoteBans",
    "RemoteSlots",
    "RemoteUserSessions",
    "flush_remote",
    "remote_shared",
]


class RemoteSlots:
    """A worker's :class:`~ftpserver.state.protocols.SessionSlots`."""

    def __init__(self, client: PipeClient) -> None:
        self._client = client

    def acquire(self, ip: str) -> str | None:
        refused = self._client.call("limiter", "acquire", ip)
        return None if refused is None else expect(refused, str)

    def release(self, ip: str) -> None:
        with contextlib.suppress(StateUnavailable):  # the supervisor is gone, its count too
            self._client.call("limiter", "release", ip)


class RemoteUserSessions:
    """A worker's :class:`~ftpserver.state.protocols.UserSessionSlots`."""

    def __init__(self, client: PipeClient) -> None:
        self._client = client

    def acquire(self, name: str, limit: int) -> bool:
        return expect(self._client.call("user_sessions", "acquire", name, limit), bool)

    def release(self, name: str) -> None:
        with contextlib.suppress(StateUnavailable):  # the supervisor is gone, its count too
            self._client.call("user_sessions", "release", name)


class RemoteBans:
    """A worker's :class:`~ftpserver.state.protocols.Bans`."""

    def __init__(self, client: PipeClient) -> None:
        self._client = client

    def is_banned(self, ip: str) -> bool:
        return expect(self._client.call("bans", "is_banned", ip), bool)

    def failure(self, ip: str) -> bool:
        return expect(self._client.call("bans", "failure", ip), bool)


class RemoteBandwidth:
    """A worker's :class:`~ftpserver.state.protocols.BandwidthBudget`."""

    def __init__(self, client: PipeClient) -> None:
        self._client = client

    def take(self, user: str, direction: str, rate: int, count: int) -> float:
        return expect(self._client.call("bandwidth", "take", user, direction, rate, count), float)


def remote_shared(conn: WorkerEnd) -> Shared:
    """:class:`Shared` made of proxies on the supervisor's state, over the pipe ``conn``."""
    client = PipeClient(conn)
    return Shared(
        RemoteLedger(client),
        RemoteSlots(client),
        RemoteBans(client),
        RemoteBandwidth(client),
        RemoteUserSessions(client),
    )


def flush_remote(shared: Shared) -> None:
    """Send what the proxies of :func:`remote_shared` hold back (posted settles) now."""
    if isinstance(shared.quotas, RemoteLedger):
        shared.quotas.flush()
