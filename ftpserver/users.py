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
:func:`add_user`, :func:`set_password` and :func:`remove_user` rewrite the
file atomically for the command line, keeping its comments and the way its
values are written (:mod:`ftpserver.yamledit`); :func:`change_keys`
manages public keys (parsed in :mod:`ftpserver.keys`).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import posixpath
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
from ruamel.yaml.comments import CommentedMap

from ftpproto.commands import RIGHTS
from ftpserver import yamledit, yamlfile
from ftpserver.accounts import (
    ACCOUNT_KEYS,
    AccountChange,
    apply_change,
    parse_expires,
    parse_locked,
    parse_max_sessions,
    parse_perms,
    parse_quota,
)
from ftpserver.guards import PasswordGate
from ftpserver.keys import AuthorizedKey, parse_key_line, parse_key_lines, select_keys
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

MAX_PASSWORD_BYTES = 72  # bcrypt looks at no more than this
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\Z")
_HASH = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}\Z")
_USER_KEYS: tuple[str, ...] = ("password", "home", "quota", "perms", "upload_rate", "download_rate")
_USER_KEYS += ("keys", *ACCOUNT_KEYS)
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
    signature = file_signature(path)  # before reading: a change meanwhile is seen next time
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
        ("home", lambda v: _home_path(home_root, name if v is None else v)),
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


@contextmanager
def _editing(path: Path) -> Iterator[CommentedMap]:
    """The users mapping of ``path`` (round trip), written back if the block succeeds."""
    if path.exists():
        _read(path)  # the layout the server expects, or a ConfigError with the line
    with yamledit.edit_mapping(path, "users", _HEADER + "users:\n") as users:
        yield users


def _entry(users: CommentedMap, name: str) -> CommentedMap:
    entry = users.get(name)
    if name not in users or not isinstance(entry, CommentedMap):
        raise ValueError(f"no such user: {name}")
    return entry


def require_user(path: Path, name: str) -> None:
    """Raise ValueError unless ``name`` is in the users file (before asking for a password)."""
    _, users = _read(path) if path.exists() else (None, {})
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
    home = _home_path(home_root, name)
    with _editing(path) as users:
        if name in users:
            raise ValueError(f"user {name} already exists")
        entry = CommentedMap(password=hash_password(password, rounds))
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
