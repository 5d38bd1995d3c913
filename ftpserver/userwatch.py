"""Noticing a changed users file at the next login.

``ftpserver useradd``, ``passwd``, ``usermod`` and ``userdel`` rewrite the
users file with a rename.  At each login the server compares the file's
device, inode, size and modification time with those of the file it loaded
(:func:`~ftpserver.users.file_signature`, one ``stat``); if they differ it
reads the file again, validated as a SIGHUP reload would.  A broken file is
refused with one log line and the last good users stay in force until the
file changes again.  Every worker process does this for itself.
"""

from __future__ import annotations

import logging
import threading

from ftpserver.config import Settings
from ftpserver.users import UserStore, load_users
from ftpserver.yamlfile import ConfigError, FileSignature, file_signature

__all__ = ["UsersFileWatch"]

log = logging.getLogger("ftpserver")


class UsersFileWatch:
    """Reloads the users file when it changed; one reload at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: FileSignature | None = None
        self._latest: UserStore | None = None  # the last store this watch read

    def check(self, settings: Settings, current: UserStore) -> UserStore:
        """``current``, or the users read again if the file changed since ``current`` was."""
        seen = file_signature(settings.users)
        if seen == current.signature or seen is None or seen == self._refused:
            return current
        with self._lock:
            seen = file_signature(settings.users)
            if seen == current.signature or seen is None or seen == self._refused:
                return current
            if self._latest is not None and seen == self._latest.signature:
                return self._latest  # another login read it while this one waited
            try:
                fresh = load_users(settings.users, settings.home)
            except ConfigError as exc:
                self._refused = seen
                more = len(exc.problems) - 1
                hint = f" (and {more} more: see 'ftpserver check-config')" if more else ""
                log.error(
                    "the users file changed but is refused; the last good one stays: %s%s",
                    exc.problems[0],
                    hint,
                )
                return current
            self._refused = None
            self._latest = fresh
        log.info("the users file changed: reloaded %d users", len(fresh.users))
        return fresh
