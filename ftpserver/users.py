"""The user store: who may log in, with which bcrypt hash, and where their home is.

``users.yaml`` looks like::

    users:
      alice:
        password: "$2b$12$..."   # a bcrypt hash, never a plain password
        home: alice               # optional; a folder under the home root
        quota: 10G                # optional; bytes, or with K/M/G/T
        perms: read-only          # optional; "all", "read-only" or a list of rights
        locked: true              # optional; a locked account cannot log in
        expires: 2027-01-31       # optional; the account stops working on this day (UTC)
        max_sessions: 3           # optional; sessions at once on the whole server
        keys:                     # optional; OpenSSH public keys (then password is optional)
          - ssh-ed25519 AAAAC3Nza... alice@laptop

:func:`load_users` validates the file and refuses to go on with a bad one.
:meth:`UserStore.authenticate` checks a dummy hash for unknown names, so an
unknown user and a wrong password cost the same time and get the same answer;
:meth:`User.refusal` then says why a right password is still refused (a
locked or expired account), for the audit; sizes, rights and those keys are
parsed in :mod:`ftpserver.accounts`.  :attr:`UserStore.signature` (see
:func:`~ftpserver.yamlfile.file_signature`) tells a server that the file
changed since it was loaded.
:func:`add_user`, :func:`set_password` and :func:`remove_user` (written in
:mod:`ftpserver.useredit`, the rules they share with the reader in
:mod:`ftpserver.userfields`, all importable from here) rewrite the
file atomically for the command line, keeping its comments and the way its
values are written (:mod:`ftpserver.yamledit`); :func:`change_keys`
manages public keys (parsed in :mod:`ftpserver.keys`).
"""

from __future__ import annotations

import datetime
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from ftpproto.commands import RIGHTS
from ftpserver import yamlfile
from ftpserver.accounts import (
    ACCOUNT_KEYS,
    AccountChange,
    parse_expires,
    parse_locked,
    parse_max_sessions,
    parse_perms,
    parse_quota,
)
from ftpserver.guards import PasswordGate
from ftpserver.keys import AuthorizedKey
from ftpserver.useredit import (
    add_user,
    change_keys,
    modify_user,
    remove_user,
    require_user,
    set_password,
)
from ftpserver.userfields import (
    MAX_PASSWORD_BYTES,
    check_name,
    check_password_rules,
    hash_password,
    home_path,
    parse_keys,
    read_users,
)
from ftpserver.yamlfile import ConfigError, FileSignature, file_signature

__all__ = [
    "MAX_PASSWORD_BYTES",
    "AccountChange",
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
    "require_user",
    "set_password",
]

_HASH = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}\Z")
_USER_KEYS: tuple[str, ...] = ("password", "home", "quota", "perms", "upload_rate", "download_rate")
_USER_KEYS += ("keys", *ACCOUNT_KEYS)


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
    locked: bool = False
    expires: datetime.date | None = None  # the first day (UTC) the account no longer works
    max_sessions: int = 0  # this user's sessions at once over the whole server; 0: no limit
    keys: tuple[AuthorizedKey, ...] = ()  # public keys that may log in (ftpserver.login)

    def may(self, right: str) -> bool:
        """Whether this user has ``right`` (one of :data:`~ftpproto.commands.RIGHTS`)."""
        return right in self.perms

    def state(self, today: datetime.date | None = None) -> str:
        """``locked``, ``expired`` or ``active`` (``today`` defaults to today in UTC)."""
        if self.locked:
            return "locked"
        today = today or datetime.datetime.now(datetime.timezone.utc).date()
        if self.expires is not None and today >= self.expires:
            return "expired"
        return "active"

    def refusal(self, today: datetime.date | None = None) -> str | None:
        """Why this account may not log in even with the right password, or None."""
        state = self.state(today)
        return None if state == "active" else f"account {state}"


class UserStore:
    """The users the server knows, read-only once loaded."""

    def __init__(
        self,
        users: dict[str, User],
        dummy_rounds: int = 12,
        signature: FileSignature | None = None,
    ) -> None:
        self.users = users
        self.signature = signature  # of the file as it was read (see :func:`file_signature`)
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


def load_users(path: Path, home_root: Path) -> UserStore:
    """Read and validate ``path``.

    Every problem is collected; if there are any, a ConfigError naming file
    and line is raised whose ``problems`` lists them all.
    """
    signature = file_signature(path)  # before reading: a change meanwhile is seen next time
    doc, entries = read_users(path)
    users: dict[str, User] = {}
    problems: list[ConfigError] = []
    for name, entry in entries.items():
        user = _load_user(doc, str(name), entry, home_root, problems)
        if user is not None:
            users[user.name] = user
    yamlfile.raise_all(problems)
    rounds = Counter(int(u.password_hash[4:6]) for u in users.values() if u.password_hash)
    dummy_rounds = rounds.most_common(1)[0][0] if rounds else 12
    return UserStore(users, dummy_rounds, signature)


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
    for key in map(str, entry):
        if key not in _USER_KEYS:
            text = f"user {name}: unknown key {key!r}{yamlfile.closest(key, _USER_KEYS)}"
            problems.append(doc.error((*where, key), text))
    hashed = entry.get("password")
    match = _HASH.match(hashed) if isinstance(hashed, str) else None
    keys_only = hashed is None and bool(entry.get("keys"))
    if hashed is None and not keys_only:
        text = f"user {name}: 'password' is missing (set it with 'ftpserver passwd {name}')"
        problems.append(doc.error((*where, "password"), text))
    elif not keys_only and (match is None or not 4 <= int(match.group(1)) <= 31):
        problems.append(
            doc.error((*where, "password"), f"user {name}: password is not a bcrypt hash")
        )
    values: dict[str, Any] = {}
    parsers: tuple[tuple[str, Callable[[Any], Any]], ...] = (
        ("home", lambda v: home_path(home_root, name if v is None else v)),
        ("quota", parse_quota),
        ("perms", lambda v: parse_perms("all" if v is None else v)),
        ("upload_rate", parse_quota),
        ("download_rate", parse_quota),
        ("locked", parse_locked),
        ("expires", parse_expires),
        ("max_sessions", parse_max_sessions),
        ("keys", parse_keys),
    )
    for key, parse in parsers:
        if key == "home" and not name_ok and entry.get("home") is None:
            continue  # a bad name: its default home would only repeat the problem
        try:
            values[key] = parse(entry.get(key))
        except ValueError as exc:
            problems.append(doc.error((*where, key), f"user {name}: {key}: {exc}"))
    if len(problems) > found:
        return None
    return User(name, match.group(0).encode("ascii") if match else None, **values)


def key_fingerprints(user: User) -> list[str]:
    """The fingerprints (``SHA256:...``) of the user's keys, for listings."""
    return [key.fingerprint for key in user.keys]
