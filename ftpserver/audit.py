"""Logging set-up and the audit trail.

The server logs with the standard :mod:`logging` module, to stderr or to
``log_file``, at ``log_level``.  The log file is opened again on every
reload (SIGHUP), and by any process that writes to it after it was moved
or removed (a log rotation): no line goes to the rotated file.  Audit
events (logins, transfers, changes) go to the ``ftpserver.audit`` logger:
as ``key=value`` text, or as one JSON object per line with
``audit_json: true``.  Passwords are never passed here.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from typing import Any

from ftpserver.config import Settings, log_level

__all__ = ["Audit", "configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "ftpserver"


def configure_logging(settings: Settings) -> None:
    """Send the server's logs to stderr or ``log_file`` at ``log_level`` (again on reload).

    ``log_file`` is a ``WatchedFileHandler``: before each line it checks
    that the path still names the file it writes to, and opens it again if
    not.  Every worker process inherits it, so after a rotation each one
    writes to the new file at once, whether or not it gets a SIGHUP.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
            old.close()
    handler: logging.Handler
    if settings.log_file is not None:
        handler = logging.handlers.WatchedFileHandler(settings.log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(log_level(settings))


class Audit:
    """Writes audit events as text or JSON lines (``json_lines`` may change on reload)."""

    def __init__(self, json_lines: bool = False) -> None:
        self.json_lines = json_lines
        self.log = logging.getLogger("ftpserver.audit")

    def __call__(self, event: str, **fields: Any) -> None:
        """Log one event, e.g. ``audit("login", user="alice", ip="10.0.0.1", outcome="ok")``."""
        if not self.log.isEnabledFor(logging.INFO):
            return
        if self.json_lines:
            self.log.info("%s", json.dumps({"event": event, **fields}, ensure_ascii=False))
        else:
            text = " ".join(
                f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
                for key, value in fields.items()
            )
            self.log.info("%s %s", event, text)
