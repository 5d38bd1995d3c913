"""``ftpserver users``: every account with its quota, usage, rights and state.

Usage is measured on disk: the sizes of the regular files under the user's
home (symlinks are not followed, as the server does not follow them out of a
home).  The state is ``active``, ``locked`` or ``expired``
(:meth:`~ftpserver.users.User.state`).  ``--json`` prints one JSON object
with a list of users, for scripts; sizes and rates are in bytes there, and
the public keys are listed by fingerprint.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
from pathlib import Path
from typing import Any, TextIO

from ftpproto.units import format_size
from ftpserver.accounts import perms_text
from ftpserver.users import User, UserStore

__all__ = ["disk_usage", "print_users", "user_rows"]


def disk_usage(home: Path) -> int:
    """Bytes of the regular files under ``home`` (0 if it does not exist)."""
    total = 0
    for folder, _, files in os.walk(home):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue  # removed meanwhile
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def _row(user: User, today: datetime.date) -> dict[str, Any]:
    rights = perms_text(user.perms)
    return {
        "name": user.name,
        "state": user.state(today),
        "home": str(user.home),
        "quota": user.quota,
        "used": disk_usage(user.home),
        "rights": rights if isinstance(rights, str) else ",".join(rights),
        "max_sessions": user.max_sessions or None,
        "upload_rate": user.upload_rate,
        "download_rate": user.download_rate,
        "expires": user.expires.isoformat() if user.expires else None,
        "password": user.password_hash is not None,
        "keys": [key.fingerprint for key in user.keys],
    }


def user_rows(store: UserStore, today: datetime.date | None = None) -> list[dict[str, Any]]:
    """One dictionary per user, sorted by name (``None`` where there is no limit)."""
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    return [_row(store.users[name], today) for name in sorted(store.users)]


def _size(value: int | None, suffix: str = "") -> str:
    return "-" if value is None else format_size(value) + suffix


def print_users(store: UserStore, as_json: bool, out: TextIO) -> None:
    """Print the users as a table for people, or as JSON."""
    rows = user_rows(store)
    if as_json:
        json.dump({"users": rows}, out, indent=2)
        out.write("\n")
        return
    header = (
        "USER", "STATE", "USED", "QUOTA", "RIGHTS", "SESSIONS", "UP", "DOWN", "EXPIRES", "KEYS"
    )  # fmt: skip
    table = [header]
    for row in rows:
        table.append(
            (
                row["name"],
                row["state"],
                format_size(row["used"]),
                _size(row["quota"]),
                row["rights"],
                str(row["max_sessions"] or "-"),
                _size(row["upload_rate"], "/s"),
                _size(row["download_rate"], "/s"),
                row["expires"] or "-",
                str(len(row["keys"])),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
        out.write("\n")
    if not rows:
        out.write("(no users)\n")
