"""The account settings of users.yaml beyond password, home and keys: rights, limits, state.

``quota``, ``upload_rate`` and ``download_rate`` are sizes (``10G``);
``perms`` is ``all``, ``read-only`` or a list of rights; ``locked: true``
refuses every login; ``expires: 2027-01-31`` refuses logins from that day
(UTC) on; ``max_sessions: 3`` bounds the user's sessions at once over the
whole server.  The parsers here check a value from the file or from the
command line; :class:`AccountChange` is what ``ftpserver usermod`` asks to
change, and :func:`apply_change` writes it into a user's entry as the
administrator wrote it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from ftpproto.commands import READ_ONLY, RIGHTS
from ftpproto.units import parse_quantity

__all__ = [
    "ACCOUNT_KEYS",
    "AccountChange",
    "apply_change",
    "parse_expires",
    "parse_locked",
    "parse_max_sessions",
    "parse_perms",
    "parse_quota",
    "perms_text",
]

ACCOUNT_KEYS = ("locked", "expires", "max_sessions")  # beside users.py's own keys


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


def parse_quota(value: Any) -> int | None:
    """A quota in bytes from ``10G``-style text or an integer; ``None``/``none`` for no limit."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "unlimited")):
        return None
    return parse_quantity(value)


def parse_perms(value: Any) -> frozenset[str]:
    """Rights from ``all``, ``read-only``, a comma-separated string or a list of rights."""
    if value == "all":
        return frozenset(RIGHTS)
    if value == "read-only":
        return frozenset(READ_ONLY)
    words = value.split(",") if isinstance(value, str) else value
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ValueError("perms must be all, read-only or a list of rights")
    rights = frozenset(w.strip() for w in words if w.strip())
    unknown = sorted(rights - set(RIGHTS))
    if unknown:
        raise ValueError(f"unknown right {unknown[0]!r} (rights: {', '.join(RIGHTS)})")
    return rights


def perms_text(rights: frozenset[str]) -> str | list[str]:
    """How ``rights`` are written in users.yaml: a shorthand where one fits."""
    if rights == frozenset(RIGHTS):
        return "all"
    if rights == frozenset(READ_ONLY):
        return "read-only"
    return [r for r in RIGHTS if r in rights]


def _as_written(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.isdigit() else text


def apply_change(entry: MutableMapping[str, Any], change: AccountChange) -> None:
    """Check every value first, then change ``entry`` (a bad value changes nothing)."""
    updates: dict[str, Any] = {}  # key -> new value, None to remove the key
    for key in ("quota", "upload_rate", "download_rate"):
        text = getattr(change, key)
        if text is not None:
            updates[key] = None if parse_quota(text) is None else _as_written(text)
    if change.perms is not None:
        rights = parse_perms(change.perms)
        updates["perms"] = None if rights == frozenset(RIGHTS) else perms_text(rights)
    if change.locked is not None:
        updates["locked"] = True if change.locked else None
    if change.expires is not None:
        day = parse_expires(change.expires)
        updates["expires"] = day
    if change.max_sessions is not None:
        count = parse_max_sessions(change.max_sessions)
        updates["max_sessions"] = count or None
    for key, value in updates.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
