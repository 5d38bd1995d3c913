"""What a reload changed, in words, for ``ftpserver reload`` and the log.

:func:`changes` compares the settings and users in force with the ones just
read (before the settings that need a restart are put back) and says, one
line each, which settings took a new value, which need a restart to change,
and which users were added, removed or changed.  :func:`problems_of` turns
the exception that refused a reload into its lines (every problem of a
:class:`~ftpserver.yamlfile.ConfigError`, with file and line).
"""

from __future__ import annotations

import dataclasses

from ftpserver.config import RESTART_ONLY, Settings
from ftpserver.users import UserStore

__all__ = ["changes", "problems_of"]


def changes(old: Settings, fresh: Settings, old_users: UserStore, users: UserStore) -> list[str]:
    """One line per difference; ``fresh`` is the new file as read (restart-only settings too)."""
    lines: list[str] = []
    for item in dataclasses.fields(Settings):
        before, after = getattr(old, item.name), getattr(fresh, item.name)
        if before == after:
            continue
        if item.name in RESTART_ONLY:
            lines.append(f"{item.name}: needs a restart to change ({before} stays)")
        else:
            lines.append(f"{item.name}: {before} -> {after}")
    before_names, after_names = set(old_users.users), set(users.users)
    for name in sorted(after_names - before_names):
        lines.append(f"user {name}: added")
    for name in sorted(before_names - after_names):
        lines.append(f"user {name}: removed")
    for name in sorted(before_names & after_names):
        if old_users.users[name] != users.users[name]:
            lines.append(f"user {name}: changed")
    return lines


def problems_of(exc: BaseException) -> list[str]:
    """The reasons a reload was refused, one line each."""
    problems = getattr(exc, "problems", None)
    if problems:
        return [str(problem) for problem in problems]
    return [str(exc) or type(exc).__name__]
