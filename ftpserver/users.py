"""The user store: who may log in, with which bcrypt hash, and where their home is.

``users.yaml`` looks like::

    users:
      alice:
        password: "$2b$12$..."   # a bcrypt hash, never a plain password
        home: alice               # optional; a folder under the home root
        quota: 10G                # optional; bytes, or with K/M/G/T
        perms: read-only          # optional; "all", "read-only" or a list of rights
        keys:                     # optional; OpenSSH public keys (then password is optional)
          - ssh-ed25519 AAAAC3Nza... alice@laptop

:func:`load_users` validates the file and refuses to go on with a bad one.
:meth:`UserStore.authenticate` checks a dummy hash for unknown names, so an
unknown user and a wrong password cost the same time and get the same answer.
:func:`add_user`, :func:`set_password` and :func:`remove_user` rewrite the
file atomically for the command line; :func:`change_keys`
manages public keys (parsed in :mod:`ftpserver.keys`).
"""

from __future__ import annotations

import os
import posixpath
import re
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from ftpproto.commands import READ_ONLY, RIGHTS
from ftpproto.units import parse_quantity
from ftpserver import yamlfile
from ftpserver.guards import PasswordGate
from ftpserver.keys import AuthorizedKey, parse_key_line, parse_key_lines, select_keys
from ftpserver.yamlfile import ConfigError

__all__ = [
    "MAX_PASSWORD_BYTES",
    "User",
    "UserStore",
    "add_user",
    "change_keys",
    "check_name",
    "check_password_rules",
    "hash_password",
    "key_fingerprints",
    "load_users",
    "modify_user",
    "parse_perms",
    "parse_quota",
    "remove_user",
    "set_password",
]

MAX_PASSWORD_BYTES = 72  # bcrypt looks at no more than this
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\Z")
_HASH = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}\Z")
_USER_KEYS = ("password", "home", "quota", "perms", "upload_rate", "download_rate", "keys")
_HEADER = (
    "# Users of ftpserver, written by 'ftpserver useradd/passwd/userdel'.\n"
    "# See config/users.example.yaml for the format.\n"
)


@dataclass(frozen=True)
class User:
    """One account: name, bcrypt hash (None: keys only) and the real path of the home folder."""

    name: str
    password_hash: bytes | None
    home: Path
    quota: int | None = None  # bytes; None for no limit
    perms: frozenset[str] = frozenset(RIGHTS)
    upload_rate: int | None = None  # bytes per second over all sessions; None for no limit
    download_rate: int | None = None
    keys: tuple[AuthorizedKey, ...] = ()  # public keys that may log in (ftpserver.login)

    def may(self, right: str) -> bool:
        """Whether this user has ``right`` (one of :data:`~ftpproto.commands.RIGHTS`)."""
        return right in self.perms


class UserStore:
    """The users the server knows, read-only once loaded."""

    def __init__(self, users: dict[str, User], dummy_rounds: int = 12) -> None:
        self.users = users
        self._dummy_hash = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(dummy_rounds))

    def authenticate(
        self, name: str, password: str, gate: PasswordGate | None = None
    ) -> User | None:
        """The user if ``password`` is right, else ``None``; the same work either way.

        With a ``gate`` the bcrypt check waits for a free slot, and a recent
        success for the same password is taken from its in-memory cache.
        """
        user = self.users.get(name)
        secret = password.encode("utf-8", "surrogateescape")
        hashed = user.password_hash if user and user.password_hash else self._dummy_hash
        if user is not None and user.password_hash is None:
            user = None  # an account with keys only: no password opens it
        if len(secret) > MAX_PASSWORD_BYTES:
            secret, hashed, user = b"", self._dummy_hash, None

        def verify() -> bool:
            return bcrypt.checkpw(secret, hashed)

        good = gate.check(name, password, hashed, verify) if gate else verify()
        return user if good else None


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


def _read(path: Path) -> tuple[yamlfile.Document, dict[str, Any]]:
    doc = yamlfile.load(path)
    data = doc.data if doc.data is not None else {"users": {}}
    if not isinstance(data, dict) or set(data) != {"users"}:
        raise doc.error((), "expected one top-level key 'users'")
    users = data["users"] if data["users"] is not None else {}
    if not isinstance(users, dict):
        raise doc.error(("users",), "'users' must map user names to their settings")
    return doc, users


def load_users(path: Path, home_root: Path) -> UserStore:
    """Read and validate ``path``.

    Every problem is collected; if there are any, a ConfigError naming file
    and line is raised whose ``problems`` lists them all.
    """
    doc, entries = _read(path)
    users: dict[str, User] = {}
    problems: list[ConfigError] = []
    for name, entry in entries.items():
        user = _load_user(doc, str(name), entry, home_root, problems)
        if user is not None:
            users[user.name] = user
    yamlfile.raise_all(problems)
    rounds = Counter(int(u.password_hash[4:6]) for u in users.values() if u.password_hash)
    dummy_rounds = rounds.most_common(1)[0][0] if rounds else 12
    return UserStore(users, dummy_rounds)


def _load_user(
    doc: yamlfile.Document, name: str, entry: Any, home_root: Path, problems: list[ConfigError]
) -> User | None:
    """One user from its YAML entry; each problem found is appended to ``problems``."""
    where = ("users", name)
    found = len(problems)
    name_ok = True
    try:
        check_name(name)
    except ValueError as exc:
        problems.append(doc.error(where, str(exc)))
        name_ok = False
    if not isinstance(entry, dict):
        problems.append(doc.error(where, f"user {name}: expected a mapping with 'password'"))
        return None
    for key in sorted(set(map(str, entry)) - set(_USER_KEYS)):
        problems.append(doc.error((*where, key), f"user {name}: unknown key {key!r}"))
    hashed = entry.get("password")
    match = _HASH.match(hashed) if isinstance(hashed, str) else None
    keys_only = hashed is None and bool(entry.get("keys"))
    if not keys_only and (match is None or not 4 <= int(match.group(1)) <= 31):
        problems.append(
            doc.error((*where, "password"), f"user {name}: password is not a bcrypt hash")
        )
    values: dict[str, Any] = {}
    for key, parse in (
        ("home", lambda v: _home_path(home_root, name if v is None else v)),
        ("quota", parse_quota),
        ("perms", lambda v: parse_perms("all" if v is None else v)),
        ("upload_rate", parse_quota),
        ("download_rate", parse_quota),
        ("keys", parse_keys),
    ):
        if key == "home" and not name_ok and entry.get("home") is None:
            continue  # a bad name: its default home would only repeat the problem
        try:
            values[key] = parse(entry.get(key))
        except ValueError as exc:
            problems.append(doc.error((*where, key), f"user {name}: {key}: {exc}"))
    if len(problems) > found:
        return None
    return User(name, match.group(0).encode("ascii") if match else None, **values)


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


def key_fingerprints(user: User) -> list[str]:
    """The fingerprints (``SHA256:...``) of the user's keys, for listings."""
    return [key.fingerprint for key in user.keys]


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


def _home_path(home_root: Path, home: Any) -> Path:
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


def _write(path: Path, users: dict[str, Any]) -> None:
    body = yaml.safe_dump({"users": users}, sort_keys=True, allow_unicode=True)
    yamlfile.write_atomic(path, _HEADER + body)


def _edit(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    return _read(path)[1]


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
    users = _edit(path)
    if name in users:
        raise ValueError(f"user {name} already exists")
    entry: dict[str, Any] = {"password": hash_password(password, rounds)}
    _apply_limits(entry, quota, perms)
    users[name] = entry
    home = _home_path(home_root, name)
    _write(path, users)
    home.mkdir(parents=True, exist_ok=True)
    return home


def _apply_limits(entry: dict[str, Any], quota: str | None, perms: str | None) -> None:
    if quota is not None:
        limit = parse_quota(quota)
        if limit is None:
            entry.pop("quota", None)
        else:
            entry["quota"] = limit
    if perms is not None:
        rights = parse_perms(perms)
        if rights == frozenset(RIGHTS):
            entry.pop("perms", None)
        else:
            entry["perms"] = perms_text(rights)


def modify_user(path: Path, name: str, quota: str | None, perms: str | None) -> None:
    """Change a user's quota (``none`` removes it) and/or rights."""
    users = _edit(path)
    if name not in users or not isinstance(users[name], dict):
        raise ValueError(f"no such user: {name}")
    _apply_limits(users[name], quota, perms)
    _write(path, users)


def set_password(path: Path, name: str, password: str, rounds: int) -> None:
    """Replace the password hash of an existing user."""
    users = _edit(path)
    if name not in users or not isinstance(users[name], dict):
        raise ValueError(f"no such user: {name}")
    users[name]["password"] = hash_password(password, rounds)
    _write(path, users)


def remove_user(path: Path, name: str) -> None:
    """Remove a user from the file; the home folder and its files are kept."""
    users = _edit(path)
    if name not in users:
        raise ValueError(f"no such user: {name}")
    del users[name]
    _write(path, users)


def change_keys(
    path: Path, name: str, add: str = "", remove: Sequence[str] = (), drop_password: bool = False
) -> tuple[list[AuthorizedKey], list[AuthorizedKey]]:
    """Change a user's keys in one rewrite; return ``(added, removed)``.

    ``remove`` names keys by fingerprint, key line or comment and goes first;
    ``add`` is OpenSSH public key lines; ``drop_password`` leaves the keys as
    the only way in.  A user keeps at least a password or a key.
    """
    users = _edit(path)
    entry = users.get(name)
    if not isinstance(entry, dict):
        raise ValueError(f"no such user: {name}")
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
    _write(path, users)
    return added, removed
