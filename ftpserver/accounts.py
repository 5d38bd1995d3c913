"""The account settings of users.yaml beyond password and home: state and limits.

``locked: true`` refuses every login; ``expires: 2027-01-31`` refuses logins
from that day (UTC) on; ``max_sessions: 3`` bounds the user's sessions at
once over the whole server.  The parsers here check a value from the file or
from the command line; :class:`AccountChange` is what ``ftpserver usermod``
asks to change, as the administrator wrote it.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from typing import Any

__all__ = ["AccountChange", "parse_expires", "parse_locked", "parse_max_sessions"]


def parse_locked(value: Any) -> bool:
    """``locked:`` must be true or false (no key: false)."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def parse_expires(value: Any) -> datetime.date | None:
    """The expiry day from a YAML date or ``YYYY-MM-DD``; ``None``/``never`` for none."""
    if value is None or (isinstance(value, str) and value.lower() == "never"):
        return None
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a date like 2027-01-31 or never, not {value!r}")


def parse_max_sessions(value: Any) -> int:
    """Sessions at once for one user, 0 (or none) for no limit."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "unlimited")):
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise ValueError(f"expected a number of sessions from 0 (no limit) up, not {value!r}")
    return value


@dataclass(frozen=True)
class AccountChange:
    """What ``usermod`` changes, as the administrator wrote it; None leaves a setting alone.

    Sizes and rates are kept as written (``10G`` stays ``10G``); ``none``
    removes a limit, ``never`` an expiry, ``0`` the session limit.
    """

    quota: str | None = None
    perms: str | None = None
    upload_rate: str | None = None
    download_rate: str | None = None
    locked: bool | None = None
    expires: str | None = None
    max_sessions: str | None = None

    def empty(self) -> bool:
        """Whether nothing would change."""
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))
