"""The pieces of a users file both its reader and its editor need.

Name and password rules, the bcrypt hash, where a home may be, the
``keys:`` list, and reading the file's layout: :mod:`ftpserver.users`
validates a whole file with them, :mod:`ftpserver.useredit` the one entry
it writes.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Any

import bcrypt

from ftpserver import yamlfile
from ftpserver.keys import AuthorizedKey, parse_key_line

__all__ = [
    "MAX_PASSWORD_BYTES",
    "USERS_HEADER",
    "check_name",
    "check_password_rules",
    "hash_password",
    "home_path",
    "parse_keys",
    "read_users",
]

MAX_PASSWORD_BYTES = 72  # bcrypt looks at no more than this
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\Z")
USERS_HEADER = (
    "# Users of ftpserver, written by 'ftpserver useradd/passwd/userdel'.\n"
    "# See config/users.example.yaml for the format.\n"
)


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a valid user name."""
    if not _NAME.match(name) or name in (".", ".."):
        raise ValueError(
            f"invalid user name {name!r}: use 1-32 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'"
        )


def check_password_rules(password: str) -> None:
    """Raise ValueError for an empty password or one longer than bcrypt takes."""
    if not password:
        raise ValueError("the password must not be empty")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise ValueError(f"the password must be at most {MAX_PASSWORD_BYTES} bytes")


def hash_password(password: str, rounds: int) -> str:
    """A bcrypt hash of ``password`` as text for the YAML file."""
    check_password_rules(password)
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def read_users(path: Path) -> tuple[yamlfile.Document, dict[str, Any]]:
    """The parsed users file and its ``users`` mapping, or a ConfigError with the line."""
    doc = yamlfile.load(path)
    data = doc.data if doc.data is not None else {"users": {}}
    if not isinstance(data, dict) or set(data) != {"users"}:
        raise doc.error((), "expected one top-level key 'users'")
    users = data["users"] if data["users"] is not None else {}
    if not isinstance(users, dict):
        raise doc.error(("users",), "'users' must map user names to their settings")
    return doc, users


def parse_keys(value: Any) -> tuple[AuthorizedKey, ...]:
    """A user's ``keys:``: a list of ``ssh-ed25519 AAAA... [comment]`` lines."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("keys must be a list of 'ssh-ed25519 AAAA... comment' lines")
    keys = []
    for number, line in enumerate(value, 1):
        try:
            keys.append(parse_key_line(line))
        except ValueError as exc:
            raise ValueError(f"key {number}: {exc}") from None
    return tuple(keys)


def home_path(home_root: Path, home: Any) -> Path:
    """The real home folder for a relative ``home`` value; it must stay under the root."""
    if not isinstance(home, str) or not home or "\0" in home:
        raise ValueError("home must be a folder name under the home root")
    relative = posixpath.normpath(home)
    if relative.startswith(("/", "..")) or relative == ".":
        raise ValueError(f"home {home!r} must be a folder inside the home root")
    root = Path(os.path.realpath(home_root))
    real = os.path.realpath(root / relative)
    if os.path.commonpath([root, real]) != str(root):
        raise ValueError(f"home {home!r} leads outside the home root (through a symlink)")
    return root / relative
