"""Logging set-up and the audit trail.

The server logs with the standard :mod:`logging` module, to stderr or to
``log_file``, at ``log_level``.  The log file is opened again on every
reload (SIGHUP), and by any process that writes to it after it was moved
or removed (a log rotation): no line goes to the rotated file.  Audit
events (logins, transfers, changes) go to the ``ftpserver.audit`` logger.
Passwords are never passed here.

Two formats:

* text, for people: ``TIME LEVEL LOGGER: [worker N: ]message``, an audit
  event as ``event key='value' ...``;
* with ``audit_json: true``, every line is one complete JSON object, for a
  log shipper: an audit event as ``{"time": ..., "event": "login", "user":
  ..., ...}``, any other message as ``{"time": ..., "level": ..., "logger":
  ..., "message": ...}``.  ``time`` is ISO 8601 in UTC.

With worker processes every line says which process wrote it
(:func:`set_process_label`: ``worker 2``, ``supervisor``), in text as a
``worker 2:`` prefix and in JSON as ``"process"``.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import sys
from typing import Any

from ftpserver.config import Settings, log_level

__all__ = ["Audit", "JsonFormatter", "TextFormatter", "configure_logging", "set_process_label"]

_HANDLER_NAME = "ftpserver"
_AUDIT_FIELDS = "audit_fields"  # the LogRecord attribute holding an audit event's fields


class _Process:
    """Which process of the server this is, for every log line (set once per process)."""

    label: str | None = None


def set_process_label(label: str | None) -> None:
    """Name this process in every later log line (``worker 2``); None for no name."""
    _Process.label = label


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: worker N: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(process_label)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.process_label = f"{_Process.label}: " if _Process.label else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: an audit event's own fields, or the message."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc)
        line: dict[str, Any] = {"time": when.isoformat(timespec="milliseconds")}
        line["time"] = line["time"].replace("+00:00", "Z")
        fields = getattr(record, _AUDIT_FIELDS, None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line.update(level=record.levelname, logger=record.name, message=record.getMessage())
            if record.exc_info:
                line["traceback"] = self.formatException(record.exc_info)
        if _Process.label is not None:
            line["process"] = _Process.label
        return json.dumps(line, ensure_ascii=False, default=str)


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
    handler.setFormatter(JsonFormatter() if settings.audit_json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(log_level(settings))


class Audit:
    """Writes audit events; the handler's formatter makes them text or JSON lines."""

    def __init__(self) -> None:
        self.log = logging.getLogger("ftpserver.audit")

    def __call__(self, event: str, **fields: Any) -> None:
        """Log one event, e.g. ``audit("login", user="alice", ip="10.0.0.1", outcome="ok")``."""
        if not self.log.isEnabledFor(logging.INFO):
            return
        text = " ".join(
            f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
            for key, value in fields.items()
        )
        self.log.info("%s %s", event, text, extra={_AUDIT_FIELDS: {"event": event, **fields}})
