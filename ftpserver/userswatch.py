"""Noticing a changed users file at the next login, without a signal.

Every node of a cluster reads the same users file (deployed to each, or on
shared storage), so ``ftpserver useradd`` on one machine must take effect
everywhere; a single server behaves the same.  :class:`UsersWatch` compares
the file's size, modification time and inode with what was loaded, at each
login; when they differ it loads the file again, validated as a ``SIGHUP``
reload would, and swaps the server's users.  A broken file is refused with
one log line and the last good users stay (it is not read again until it
changes again).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ftpserver.users import load_users

if TYPE_CHECKING:
    from ftpserver.server import FileTransferServer

__all__ = ["UsersWatch"]

log = logging.getLogger("ftpserver")
Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


class UsersWatch:
    """The users file as last loaded; :meth:`check` loads it again if it changed."""

    def __init__(self, path: Path) -> None:
        self._seen = _stamp(path)
        self._lock = threading.Lock()

    def loaded(self, path: Path) -> None:
        """The server loaded ``path`` itself (a reload): remember it as seen."""
        self._seen = _stamp(path)

    def check(self, server: FileTransferServer) -> None:
        """Before a login: take a changed users file, or keep the last good one."""
        path = server.settings.users
        stamp = _stamp(path)
        if stamp == self._seen or stamp is None:
            return
        with self._lock:
            if stamp == self._seen:
                return  # another login took it meanwhile
            self._seen = stamp
            try:
                users = load_users(path, server.settings.home)
            except Exception as exc:
                log.error("users file changed but refused, the last good one stays: %s", exc)
                return
            server.users = users
            server.passwords.forget()
            log.info("users file changed: %d users", len(users.users))
