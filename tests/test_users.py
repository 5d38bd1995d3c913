"""Tests for ftpserver.users: loading and validating users.yaml, login checks, and edits."""

from __future__ import annotations

import datetime
import os
import stat
import textwrap
from pathlib import Path

import bcrypt
import pytest

from ftpserver.users import (
    MAX_PASSWORD_BYTES,
    AccountChange,
    UserStore,
    add_user,
    check_name,
    check_password_rules,
    hash_password,
    load_users,
    modify_user,
    remove_user,
    require_user,
    set_password,
)
from ftpserver.yamlfile import ConfigError, file_signature

ROUNDS = 4
HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(ROUNDS)).decode("ascii")
SALT_AND_HASH = HASH[7:]  # the 53 characters after "$2b$04$"


def write(tmp_path: Path, text: str) -> Path:
    """Write ``text`` (dedented) to ``tmp_path/users.yaml`` and return the path."""
    path = tmp_path / "users.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    """A users file with alice (password 'right') and bob, written by add_user."""
    path = tmp_path / "etc" / "users.yaml"
    add_user(path, tmp_path / "home", "alice", "right", ROUNDS)
    add_user(path, tmp_path / "home", "bob", "bobs password", ROUNDS)
    return path


@pytest.fixture
def store(tmp_path: Path, store_file: Path) -> UserStore:
    """The store loaded from ``store_file``."""
    return load_users(store_file, tmp_path / "home")


# --- load_users: valid files ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", {}, id="empty-file"),
        pytest.param("# only a comment\n", {}, id="only-comment"),
        pytest.param("users:\n", {}, id="null-users"),
        pytest.param("users: {}\n", {}, id="no-users"),
        pytest.param(f"users:\n  alice:\n    password: '{HASH}'\n", {"alice": "alice"}, id="one"),
        pytest.param(
            f"users:\n  alice: {{password: '{HASH}', home: shared/a}}\n"
            f"  bob.b-2_: {{password: '{HASH}'}}\n",
            {"alice": "shared/a", "bob.b-2_": "bob.b-2_"},
            id="two-with-home",
        ),
        pytest.param(
            f"users:\n  carol:\n    password: '$2a$04${SALT_AND_HASH}'\n    home: ./c/\n",
            {"carol": "c"},
            id="2a-hash-and-dot-home",
        ),
    ],
)
def test_load_users_valid(tmp_path: Path, text: str, expected: dict[str, str]) -> None:
    root = tmp_path / "home"
    store = load_users(write(tmp_path, text), root)
    assert {name: user.home for name, user in store.users.items()} == {
        name: Path(os.path.realpath(root)) / home for name, home in expected.items()
    }
    for name, user in store.users.items():
        assert user.name == name


# --- load_users: errors name the file and the line ---------------------------------

BAD_FILES = [
    pytest.param("- alice\n", 1, "top-level key 'users'", id="top-level-list"),
    pytest.param("alice: {}\n", 1, "top-level key 'users'", id="missing-users-key"),
    pytest.param("users: {}\nextra: 1\n", 1, "top-level key 'users'", id="extra-top-key"),
    pytest.param("# c\nusers: [alice, bob]\n", 2, "must map user names", id="users-is-list"),
    pytest.param("users: 5\n", 1, "must map user names", id="users-is-number"),
    pytest.param("users:\n  alice: 5\n", 2, "expected a mapping", id="user-not-mapping"),
    pytest.param("users:\n  alice:\n", 2, "expected a mapping", id="user-null"),
    pytest.param(
        "users:\n  alice:\n    password: plain\n", 3, "not a bcrypt hash", id="plain-password"
    ),
    pytest.param(
        "users:\n  alice:\n    password: 12345\n", 3, "not a bcrypt hash", id="number-password"
    ),
    pytest.param(
        "users:\n  alice:\n    home: alice\n", 2, "'password' is missing", id="missing-password"
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH[:-1]}'\n", 3, "not a bcrypt hash", id="short"
    ),
    pytest.param(f"users:\n  alice:\n    password: '{HASH}x'\n", 3, "not a bcrypt hash", id="long"),
    pytest.param(
        f"users:\n  alice:\n    password: '$1$04${SALT_AND_HASH}'\n",
        3,
        "not a bcrypt hash",
        id="md5-crypt",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '$2b$03${SALT_AND_HASH}'\n",
        3,
        "password",
        id="cost-below-4",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '$2b$99${SALT_AND_HASH}'\n",
        3,
        "password",
        id="cost-above-31",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '$2b$\u0661\u0662${SALT_AND_HASH}'\n",
        3,
        "password",
        id="cost-arabic-digits",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    quota_limit: 5\n",
        4,
        "unknown key 'quota_limit'",
        id="unknown-key",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    password: '{HASH}'\n",
        4,
        "duplicate key 'password'",
        id="duplicate-field",
    ),
    pytest.param(
        f"users:\n  alice: {{password: '{HASH}'}}\n  alice: {{password: '{HASH}'}}\n",
        3,
        "duplicate key 'alice'",
        id="duplicate-user",
    ),
    pytest.param(
        f"users:\n  bad name: {{password: '{HASH}'}}\n", 2, "invalid user name", id="space-name"
    ),
    pytest.param(
        f"users:\n  -bad: {{password: '{HASH}'}}\n", 2, "invalid user name", id="dash-first"
    ),
    pytest.param(
        f"users:\n  '..': {{password: '{HASH}'}}\n", 2, "invalid user name", id="dotdot-name"
    ),
    pytest.param(
        f"users:\n  {'a' * 33}: {{password: '{HASH}'}}\n", 2, "invalid user name", id="long-name"
    ),
    pytest.param(
        f"users:\n  al/ice: {{password: '{HASH}'}}\n", 2, "invalid user name", id="slash-name"
    ),
    pytest.param(
        f"users:\n  \u00e9ve: {{password: '{HASH}'}}\n", 2, "invalid user name", id="unicode-name"
    ),
    pytest.param(
        f"users:\n  # comment\n  bad name:\n    password: '{HASH}'\n",
        3,
        "invalid user name",
        id="bad-name-block-style",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    home: ../x\n",
        4,
        "inside the home root",
        id="home-dotdot",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    home: /abs\n",
        4,
        "inside the home root",
        id="home-absolute",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    home: a/../../x\n",
        4,
        "inside the home root",
        id="home-climbs",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    home: .\n",
        4,
        "inside the home root",
        id="home-is-root",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    home: ''\n",
        4,
        "home must be",
        id="home-empty",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    home: 7\n", 4, "home must be", id="home-int"
    ),
    pytest.param("users:\n  alice: [\n", 3, "not valid YAML", id="unclosed-flow"),
    pytest.param("users:\n  alice:\n\t password: x\n", 3, "not valid YAML", id="tab-indent"),
    pytest.param("users: {}\n---\nusers: {}\n", 2, "not valid YAML", id="two-documents"),
    pytest.param("users:\n  ? [a, b]\n  : {}\n", 2, "keys must be plain words", id="list-key"),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    quot: 1G\n",
        4,
        "unknown key 'quot' (did you mean 'quota'?)",
        id="misspelt-key",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    locked: yes please\n",
        4,
        "locked: expected true or false",
        id="locked-text",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    expires: 31/01/2027\n",
        4,
        "expected a date like 2027-01-31",
        id="expires-not-iso",
    ),
    pytest.param(
        f"users:\n  alice:\n    password: '{HASH}'\n    max_sessions: -1\n",
        4,
        "expected a number of sessions",
        id="max-sessions-negative",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD_FILES)
def test_load_users_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_users(path, tmp_path / "home")
    assert (info.value.path, info.value.line) == (str(path), line)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert message in str(info.value)


def test_load_users_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_users(path, tmp_path)
    assert str(info.value).startswith(f"{path}: cannot read")


def test_load_users_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_bytes(b"users:\n  \xff: {}\n")
    with pytest.raises(ConfigError) as info:
        load_users(path, tmp_path)
    assert str(path) in str(info.value)


# --- authenticate ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "password", "expected"),
    [
        ("alice", "right", "alice"),
        ("bob", "bobs password", "bob"),
        ("alice", "wrong", None),
        ("alice", "", None),
        ("alice", "right ", None),
        ("alice", "Right", None),
        ("alice", "bobs password", None),
        ("Alice", "right", None),
        ("carol", "right", None),
        ("", "", None),
        ("alice", "right\0", None),
        ("alice", "x" * (MAX_PASSWORD_BYTES + 1), None),
        ("alice", "right" + "x" * 100, None),
        ("alice", "\u00e9" * 37, None),
        ("carol", "x" * 1000, None),
    ],
)
def test_authenticate(store: UserStore, name: str, password: str, expected: str | None) -> None:
    user = store.authenticate(name, password)
    assert (user.name if user else None) == expected


def test_authenticate_at_72_bytes(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    password = "p" * MAX_PASSWORD_BYTES
    add_user(path, tmp_path / "home", "alice", password, ROUNDS)
    store = load_users(path, tmp_path / "home")
    user = store.authenticate("alice", password)
    assert user is not None
    assert user.home == Path(os.path.realpath(tmp_path / "home")) / "alice"
    assert store.authenticate("alice", password[:-1]) is None


# --- checks and hashing -------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "alice", "Bob_2", "_x", "0", "a.b-c", "a" * 32])
def test_check_name_accepts(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", "-x", "a b", "a/b", "a" * 33, "\u00e9", "a\n", "a\0"]
)
def test_check_name_rejects(name: str) -> None:
    with pytest.raises(ValueError, match="invalid user name"):
        check_name(name)


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("x", True),
        ("p" * MAX_PASSWORD_BYTES, True),
        ("\u00e9" * 36, True),
        ("", False),
        ("p" * (MAX_PASSWORD_BYTES + 1), False),
        ("\u00e9" * 37, False),
    ],
)
def test_check_password_rules(password: str, ok: bool) -> None:
    if ok:
        check_password_rules(password)
    else:
        with pytest.raises(ValueError, match="password"):
            check_password_rules(password)


def test_hash_password() -> None:
    hashed = hash_password("pw", ROUNDS)
    assert hashed.startswith("$2b$04$")
    assert bcrypt.checkpw(b"pw", hashed.encode())


# --- add_user / set_password / remove_user -------------------------------------------


def assert_clean_users_file(path: Path) -> None:
    """Mode 0600, the comment header, and no temporary files beside it."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("# Users of ftpserver")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_add_user_creates_file_and_home(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "users.yaml"
    root = tmp_path / "home"
    home = add_user(path, root, "alice", "right", ROUNDS)
    assert home == Path(os.path.realpath(root)) / "alice"
    assert home.is_dir()
    assert_clean_users_file(path)
    store = load_users(path, root)
    assert set(store.users) == {"alice"}
    assert store.authenticate("alice", "right") is not None


def test_add_user_keeps_others(tmp_path: Path, store_file: Path) -> None:
    before = store_file.stat().st_ino
    add_user(store_file, tmp_path / "home", "carol", "c", ROUNDS)
    assert store_file.stat().st_ino != before  # replaced by a rename, not rewritten in place
    assert_clean_users_file(store_file)
    store = load_users(store_file, tmp_path / "home")
    assert set(store.users) == {"alice", "bob", "carol"}
    assert store.authenticate("alice", "right") is not None
    assert "right" not in store_file.read_text()


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("alice", "new", "already exists"),
        ("bad name", "pw", "invalid user name"),
        ("..", "pw", "invalid user name"),
        ("carol", "", "must not be empty"),
        ("carol", "p" * (MAX_PASSWORD_BYTES + 1), "at most 72 bytes"),
    ],
)
def test_add_user_refuses(
    tmp_path: Path, store_file: Path, name: str, password: str, message: str
) -> None:
    before = store_file.read_bytes()
    with pytest.raises(ValueError, match=message):
        add_user(store_file, tmp_path / "home", name, password, ROUNDS)
    assert store_file.read_bytes() == before
    assert_clean_users_file(store_file)
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["alice", "bob"]


def test_add_user_refuses_a_broken_file(tmp_path: Path) -> None:
    path = write(tmp_path, "users: [\n")
    with pytest.raises(ConfigError):
        add_user(path, tmp_path / "home", "alice", "pw", ROUNDS)
    assert path.read_text() == "users: [\n"


def test_set_password(tmp_path: Path, store_file: Path) -> None:
    set_password(store_file, "alice", "new one", ROUNDS)
    assert_clean_users_file(store_file)
    store = load_users(store_file, tmp_path / "home")
    assert store.authenticate("alice", "right") is None
    assert store.authenticate("alice", "new one") is not None
    assert store.authenticate("bob", "bobs password") is not None


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [("carol", "pw", "no such user"), ("", "pw", "no such user"), ("alice", "", "empty")],
)
def test_set_password_refuses(store_file: Path, name: str, password: str, message: str) -> None:
    before = store_file.read_bytes()
    with pytest.raises(ValueError, match=message):
        set_password(store_file, name, password, ROUNDS)
    assert store_file.read_bytes() == before


def test_remove_user_keeps_home(tmp_path: Path, store_file: Path) -> None:
    (tmp_path / "home" / "alice" / "f.txt").write_text("kept")
    remove_user(store_file, "alice")
    assert_clean_users_file(store_file)
    store = load_users(store_file, tmp_path / "home")
    assert set(store.users) == {"bob"}
    assert store.authenticate("alice", "right") is None
    assert (tmp_path / "home" / "alice" / "f.txt").read_text() == "kept"


@pytest.mark.parametrize("name", ["carol", "", "Alice"])
def test_remove_user_refuses_unknown(store_file: Path, name: str) -> None:
    before = store_file.read_bytes()
    with pytest.raises(ValueError, match="no such user"):
        remove_user(store_file, name)
    assert store_file.read_bytes() == before


def test_remove_last_user_leaves_a_loadable_file(tmp_path: Path, store_file: Path) -> None:
    remove_user(store_file, "alice")
    remove_user(store_file, "bob")
    assert_clean_users_file(store_file)
    assert load_users(store_file, tmp_path / "home").users == {}


# --- account state, problems in line order, round-trip rewriting (issue 17) ------------


def test_state_locked_and_expired(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        users:
          alice: {{password: '{HASH}', expires: 2027-01-31, max_sessions: 2}}
          bob: {{password: '{HASH}', locked: true, expires: never}}
          carol: {{password: '{HASH}', expires: '2027-01-31', locked: false}}
        """,
    )
    users = load_users(path, tmp_path / "home").users
    before, on_the_day = datetime.date(2027, 1, 30), datetime.date(2027, 1, 31)
    assert users["alice"].state(before) == "active" and users["alice"].refusal(before) is None
    assert users["alice"].state(on_the_day) == "expired"
    assert users["alice"].refusal(on_the_day) == "account expired"
    assert users["alice"].max_sessions == 2 and users["bob"].max_sessions == 0
    assert users["bob"].state(before) == "locked" and users["bob"].expires is None
    assert users["carol"].expires == on_the_day and not users["carol"].locked


def test_problems_come_in_line_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        users:
          alice:
            zebra: 1
            password: '{HASH}'
            quota: lots
            apple: 2
          bob:
            home: bob
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_users(path, tmp_path / "home")
    found = [(p.line, p.text) for p in info.value.problems]
    assert [line for line, _ in found] == [3, 5, 6, 7], found
    assert "unknown key 'zebra'" in found[0][1] and "unknown key 'apple'" in found[2][1]
    assert found[3][1] == "user bob: 'password' is missing (set it with 'ftpserver passwd bob')"


ADMIN_FILE = f"""\
# Our users.  Ask Jane before changing anything.
users:
  # the boss
  bob:
    password: "{HASH}"   # reset 2026-11
    quota: 10G           # as agreed
    perms: [list, read]
  alice:
    password: '{HASH}'
    download_rate: 1.5M
"""


def test_rewriting_keeps_the_administrators_writing(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(ADMIN_FILE)
    modify_user(
        path, "alice", change=AccountChange(locked=True, max_sessions="3", expires="2027-01-31")
    )
    add_user(path, tmp_path / "home", "carol", "carol pw", ROUNDS, quota="500M")
    text = path.read_text()
    assert text.startswith(ADMIN_FILE), text  # comments, quotes, order and 10G kept
    added = text[len(ADMIN_FILE) :]
    assert added.startswith(
        "    locked: true\n    expires: 2027-01-31\n    max_sessions: 3\n  carol:\n"
    )
    assert "    quota: 500M\n" in added
    set_password(path, "carol", "new pw", ROUNDS)
    remove_user(path, "carol")
    modify_user(
        path, "alice", change=AccountChange(locked=False, max_sessions="0", expires="never")
    )
    assert path.read_text() == ADMIN_FILE
    store = load_users(path, tmp_path / "home")
    assert store.users["bob"].quota == 10 * 1024**3
    assert store.users["alice"].download_rate == int(1.5 * 1024**2)


@pytest.mark.parametrize(
    "change",
    [
        AccountChange(expires="tomorrow"),
        AccountChange(max_sessions="many"),
        AccountChange(upload_rate="fast"),
        AccountChange(locked=True, download_rate="-1"),
    ],
)
def test_modify_user_refuses_bad_values(store_file: Path, change: AccountChange) -> None:
    before = store_file.read_bytes()
    with pytest.raises(ValueError):
        modify_user(store_file, "alice", change=change)
    assert store_file.read_bytes() == before


def test_file_signature_changes_with_a_rewrite(tmp_path: Path, store_file: Path) -> None:
    store = load_users(store_file, tmp_path / "home")
    assert store.signature == file_signature(store_file) is not None
    set_password(store_file, "bob", "another", ROUNDS)
    assert file_signature(store_file) != store.signature
    assert file_signature(tmp_path / "missing.yaml") is None


def test_require_user(store_file: Path) -> None:
    require_user(store_file, "alice")
    with pytest.raises(ValueError, match="no such user: nobody"):
        require_user(store_file, "nobody")
