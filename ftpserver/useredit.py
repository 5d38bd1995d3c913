"""Changing the users file for the command line: add, modify, remove users and keys.

Each function rewrites ``users.yaml`` atomically in one round trip, keeping
its comments and the way its values are written (:mod:`ftpserver.yamledit`);
a file the server would not accept is refused first.  The names stay
importable from :mod:`ftpserver.users`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ftpserver import yamledit
from ftpserver.accounts import AccountChange, apply_change
from ftpserver.keys import AuthorizedKey, parse_key_lines, select_keys
from ftpserver.userfields import (
    USERS_HEADER,
    check_name,
    hash_password,
    home_path,
    parse_keys,
    read_users,
)

if TYPE_CHECKING:
    from ruamel.yaml.comments import CommentedMap

__all__ = [
    "add_user",
    "change_keys",
    "modify_user",
    "remove_user",
    "require_user",
    "set_password",
]


@contextmanager
def _editing(path: Path) -> Iterator[CommentedMap]:
    """The users mapping of ``path`` (round trip), written back if the block succeeds."""
    if path.exists():
        read_users(path)  # the layout the server expects, or a ConfigError with the line
    with yamledit.edit_mapping(path, "users", USERS_HEADER + "users:\n") as users:
        yield users


def _entry(users: CommentedMap, name: str) -> CommentedMap:
    from ruamel.yaml.comments import CommentedMap  # only the user commands edit the file

    entry = users.get(name)
    if name not in users or not isinstance(entry, CommentedMap):
        raise ValueError(f"no such user: {name}")
    return entry


def require_user(path: Path, name: str) -> None:
    """Raise ValueError unless ``name`` is in the users file (before asking for a password)."""
    _, users = read_users(path) if path.exists() else (None, {})
    if not isinstance(users.get(name), dict):
        raise ValueError(f"no such user: {name}")


def add_user(
    path: Path,
    home_root: Path,
    name: str,
    password: str,
    rounds: int,
    quota: str | None = None,
    perms: str | None = None,
) -> Path:
    """Add ``name`` to the users file (created if missing) and create the home; return it.

    ``quota`` and ``perms`` are as written in users.yaml (``10G``, ``read-only``, ...).
    """
    check_name(name)
    home = home_path(home_root, name)
    with _editing(path) as users:
        if name in users:
            raise ValueError(f"user {name} already exists")
        entry = type(users)(password=hash_password(password, rounds))  # a CommentedMap
        apply_change(entry, AccountChange(quota=quota, perms=perms))
        users[name] = entry
    home.mkdir(parents=True, exist_ok=True)
    return home


def modify_user(
    path: Path,
    name: str,
    quota: str | None = None,
    perms: str | None = None,
    change: AccountChange | None = None,
) -> None:
    """Change a user's settings: ``quota`` (``none`` removes it), rights, and ``change``."""
    change = change or AccountChange()
    if quota is not None or perms is not None:
        change = dataclasses.replace(change, quota=quota, perms=perms)
    with _editing(path) as users:
        apply_change(_entry(users, name), change)


def set_password(path: Path, name: str, password: str, rounds: int) -> None:
    """Replace the password hash of an existing user."""
    with _editing(path) as users:
        entry = _entry(users, name)
        entry["password"] = hash_password(password, rounds)


def remove_user(path: Path, name: str) -> None:
    """Remove a user from the file; the home folder and its files are kept."""
    with _editing(path) as users:
        if name not in users:
            raise ValueError(f"no such user: {name}")
        del users[name]


def change_keys(
    path: Path, name: str, add: str = "", remove: Sequence[str] = (), drop_password: bool = False
) -> tuple[list[AuthorizedKey], list[AuthorizedKey]]:
    """Change a user's keys in one rewrite; return ``(added, removed)``.

    ``remove`` names keys by fingerprint, key line or comment and goes first;
    ``add`` is OpenSSH public key lines; ``drop_password`` leaves the keys as
    the only way in.  A user keeps at least a password or a key.
    """
    with _editing(path) as users:
        entry = _entry(users, name)
        added, removed = _change_keys(entry, name, add, remove, drop_password)
    return added, removed


def _change_keys(
    entry: CommentedMap, name: str, add: str, remove: Sequence[str], drop_password: bool
) -> tuple[list[AuthorizedKey], list[AuthorizedKey]]:
    parsed = parse_keys(entry.get("keys"))
    keys = list(zip(entry.get("keys") or [], parsed, strict=True))
    removed: list[AuthorizedKey] = []
    for which in remove:
        chosen = select_keys([key for _, key in keys], which)
        if not chosen:
            raise ValueError(f"user {name} has no key {which.strip()!r}")
        removed += chosen
        keys = [(line, key) for line, key in keys if key not in chosen]
    added = parse_key_lines(add) if add else []
    for key in added:
        if any(key.blob == have.blob for _, have in keys):
            raise ValueError(f"user {name} already has the key {key.fingerprint}")
        keys.append((key.text, key))
    if drop_password:
        entry.pop("password", None)
    if not keys and entry.get("password") is None:
        raise ValueError(f"user {name} would have neither a password nor a key")
    if keys:
        entry["keys"] = [line for line, _ in keys]
    else:
        entry.pop("keys", None)
    return added, removed
