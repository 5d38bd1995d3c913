"""Where a server process joins the cluster: build, start and leave its shared state.

Called by ``ftpserver serve`` (one process) and by each worker process; it
imports ``psycopg`` only when ``shared_state`` is set, so a single server
needs no database and no database driver.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from ftpserver.config import Settings

if TYPE_CHECKING:
    from ftpserver.adminstate import AdminState
    from ftpserver.cluster.node import ClusterState
    from ftpserver.server import FileTransferServer
    from ftpserver.state.shared import LocalState

__all__ = ["admin_services", "admin_state", "join", "leave", "open_cluster", "print_nodes"]

log = logging.getLogger("ftpserver")


def open_cluster(settings: Settings, suffix: str = "") -> ClusterState | None:
    """The node's shared state in PostgreSQL, or None without ``shared_state``.

    ``suffix`` tells apart the worker processes of one node.
    """
    if settings.shared_state is None:
        return None
    try:
        from ftpserver.cluster.node import ClusterState
    except ImportError as exc:
        need = "pip install 'filetransfer[cluster]'"
        raise ValueError(f"shared_state needs psycopg and psycopg_pool: {need} ({exc})") from None
    return ClusterState(settings, suffix)


def join(cluster: ClusterState | None, server: FileTransferServer) -> None:
    """Register ``server`` as a node and start renewing its lease.

    Its calls to the shared state are timed into the process's metrics, once
    they are on.
    """
    if cluster is None:
        return

    def stats() -> tuple[int, int]:
        sessions = server.sessions.snapshot()
        return len(sessions), sum(1 for s in sessions if s.activity.transfer is not None)

    def observe(operation: str, seconds: float) -> None:
        metrics = server.admin.metrics
        if metrics is not None:
            metrics.shared_state_call(operation, seconds)

    cluster.db.observe = observe
    cluster.start(server.address, lambda: server.settings, stats)
    server.upload_owners = cluster  # its temporary uploads carry its name; dead nodes' are adopted


def admin_services(
    cluster: ClusterState | None, server: FileTransferServer
) -> AbstractContextManager[object]:
    """The administrator's services of a server serving alone (``workers: 1``).

    They read the server's own shared state, or the cluster's in PostgreSQL.
    """
    from ftpserver.services import AdminServices

    if cluster is None:
        return AdminServices.alone(server)
    return AdminServices.alone(server, admin_state(server.settings, None, server.address[1]))


def admin_state(settings: Settings, local: LocalState | None, port: int) -> AdminState:
    """What the administrator sees of the shared state: the cluster's, or ``local``.

    ``port`` is the one this node listens on (its name by default).
    """
    if settings.shared_state is None:
        from ftpserver.adminstate import LocalAdminState

        assert local is not None, "a server without shared_state keeps its own"
        return LocalAdminState(local)
    from ftpserver.cluster.node import default_node_name
    from ftpserver.cluster.pgadmin import PgAdminState

    return PgAdminState(settings.shared_state, default_node_name(settings, port))


def leave(cluster: ClusterState | None) -> None:
    """Leave the cluster (the node's row and slots go)."""
    if cluster is not None:
        cluster.close()


def print_nodes(settings: Settings) -> int:
    """``ftpserver nodes``: the nodes in the shared state, one line each; the exit status."""
    if settings.shared_state is None:
        print("no shared_state in the settings: this server runs alone")
        return 0
    try:
        from ftpserver.cluster.node import list_nodes

        rows = list_nodes(settings.shared_state)
    except ImportError as exc:
        need = "pip install 'filetransfer[cluster]'"
        raise ValueError(f"shared_state needs psycopg: {need} ({exc})") from None
    except Exception as exc:  # psycopg.Error, without importing psycopg here
        raise ValueError(f"shared state unavailable: {str(exc).strip().splitlines()[0]}") from None
    print(f"{'NODE':<24} {'ADDRESS':<24} {'LEASE AGE':>9} {'SESSIONS':>8} {'TRANSFERS':>9}")
    for row in rows:
        age = f"{row.lease_age:.1f}s" + ("" if row.alive else " (expired)")
        print(f"{row.name:<24} {row.address:<24} {age:>9} {row.sessions:>8} {row.transfers:>9}")
    return 0
