"""Unit tests: byte counts in and out (ftpproto.units), and the quota and rights
settings of users.yaml (users.parse_quota, parse_perms, modify_user).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ftpproto.commands import READ_ONLY, RIGHTS
from ftpproto.units import format_size, parse_quantity
from ftpserver.users import add_user, load_users, modify_user, parse_perms, parse_quota

pytestmark = pytest.mark.timeout(60)

K, M, G, T, P, E = (1024**n for n in range(1, 7))

# -- parse_quantity -------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (0, 0),
        (1, 1),
        (10**20, 10**20),
        ("0", 0),
        ("532", 532),
        ("1K", K),
        ("1k", K),
        ("500M", 500 * M),
        ("500m", 500 * M),
        ("10G", 10 * G),
        ("2T", 2 * T),
        ("3P", 3 * P),
        ("1E", E),
        ("1.5G", 3 * G // 2),
        ("0.5K", 512),
        ("1.25M", 5 * M // 4),
        ("500MiB", 500 * M),
        ("500MB", 500 * M),
        ("500mib", 500 * M),
        ("7B", 7),
        ("  10G  ", 10 * G),
        ("10 G", 10 * G),
        ("12345678901234567890", 12345678901234567890),
    ],
)
def test_parse_quantity(text: int | str, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        -1,
        True,
        False,
        "",
        " ",
        "-1",
        "-1G",
        "+5",
        "G",
        "1X",
        "10GG",
        "1.G",
        ".5G",
        "1,5G",
        "1e3",
        "nan",
        "inf",
        "10 G extra",
        "0x10",
        "1.5",  # a fraction of a byte
    ],
)
def test_parse_quantity_refuses(text: int | str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


# -- format_size ------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, expected",
    [
        (0, "0 B"),
        (1, "1 B"),
        (532, "532 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (300_000, "293.0 KiB"),
        (M, "1.0 MiB"),
        (3 * M + M // 10, "3.1 MiB"),
        (500 * M, "500.0 MiB"),
        (G, "1.0 GiB"),
        (10 * G, "10.0 GiB"),
        (T, "1.0 TiB"),
        (P, "1.0 PiB"),
        (E, "1.0 EiB"),
        (2048 * E, "2048.0 EiB"),
    ],
)
def test_format_size(size: int, expected: str) -> None:
    assert format_size(size) == expected


@pytest.mark.parametrize("size", [M - 1, M - 50, G - 1, T - 1])
def test_format_size_never_shows_1024_of_a_unit(size: int) -> None:
    """Just under a unit boundary the text must not read "1024.0 KiB" (it is 1.0 MiB)."""
    text = format_size(size)
    number = float(text.split()[0])
    assert number < 1024, f"format_size({size}) = {text!r}: 1024 or more of a unit"


@pytest.mark.parametrize("size", [0, 1, 999, 1024, 5000, M + 1, 7 * G + 12345, 3 * T])
def test_format_then_parse_is_close(size: int) -> None:
    number, unit = format_size(size).split()
    back = parse_quantity(number + unit[0] if unit != "B" else number)
    assert abs(back - size) <= max(1, size // 100), (size, format_size(size), back)


# -- parse_quota / parse_perms ----------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("none", None),
        ("None", None),
        ("NONE", None),
        ("unlimited", None),
        ("Unlimited", None),
        (0, 0),
        (1000, 1000),
        ("1M", M),
        ("10G", 10 * G),
        ("1.5T", 3 * T // 2),
    ],
)
def test_parse_quota(value: object, expected: int | None) -> None:
    assert parse_quota(value) == expected


@pytest.mark.parametrize("value", [-1, True, "-5M", "lots", "", "none please", [1]])
def test_parse_quota_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_quota(value)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("all", set(RIGHTS)),
        ("read-only", set(READ_ONLY)),
        ("list,read", {"list", "read"}),
        (" list , read ,write ", {"list", "read", "write"}),
        ("delete", {"delete"}),
        (["list", "read", "write", "mkdir"], {"list", "read", "write", "mkdir"}),
        (["rename"], {"rename"}),
        ("list,list,read", {"list", "read"}),
        (list(RIGHTS), set(RIGHTS)),
    ],
)
def test_parse_perms(value: object, expected: set[str]) -> None:
    parsed = parse_perms(value)
    assert isinstance(parsed, frozenset)
    assert parsed == expected


@pytest.mark.parametrize(
    "value",
    ["everything", "list,fly", ["list", "fly"], ["list", 3], 5, None, {"list": True}, "ALL"],
)
def test_parse_perms_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_perms(value)


def test_read_only_is_list_and_read() -> None:
    assert set(READ_ONLY) == {"list", "read"}
    assert set(RIGHTS) == {"list", "read", "write", "mkdir", "delete", "rename"}


# -- modify_user --------------------------------------------------------------------


@pytest.fixture
def users_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    add_user(path, tmp_path / "homes", "carol", "carol-pw", rounds=4)
    add_user(path, tmp_path / "homes", "dave", "dave-pw", rounds=4, quota="2M", perms="read-only")
    return path


def entry(path: Path, name: str) -> dict[str, object]:
    data = yaml.safe_load(path.read_text())
    result: dict[str, object] = data["users"][name]
    return result


def test_add_user_writes_quota_and_perms(users_yaml: Path, tmp_path: Path) -> None:
    assert set(entry(users_yaml, "carol")) == {"password"}
    dave = entry(users_yaml, "dave")
    assert dave["quota"] == "2M" and dave["perms"] == "read-only"  # as written
    store = load_users(users_yaml, tmp_path / "homes")
    assert store.users["dave"].quota == 2 * M
    assert store.users["dave"].perms == frozenset(READ_ONLY)
    assert store.users["carol"].quota is None
    assert store.users["carol"].perms == frozenset(RIGHTS)


@pytest.mark.parametrize(
    "quota, perms, yaml_quota, yaml_perms, quota_bytes, rights",
    [
        ("1M", None, "1M", None, M, set(RIGHTS)),
        ("1500", None, 1500, None, 1500, set(RIGHTS)),
        (None, "read-only", None, "read-only", None, set(READ_ONLY)),
        (None, "list,read,write", None, ["list", "read", "write"], None, {"list", "read", "write"}),
        (None, "write,list", None, ["list", "write"], None, {"list", "write"}),
        ("10G", "rename,delete", "10G", ["delete", "rename"], 10 * G, {"delete", "rename"}),
        ("none", "all", None, None, None, set(RIGHTS)),
    ],
)
def test_modify_user(
    users_yaml: Path,
    tmp_path: Path,
    quota: str | None,
    perms: str | None,
    yaml_quota: int | str | None,
    yaml_perms: object,
    quota_bytes: int | None,
    rights: set[str],
) -> None:
    password = entry(users_yaml, "carol")["password"]
    dave_before = entry(users_yaml, "dave")
    modify_user(users_yaml, "carol", quota, perms)
    carol = entry(users_yaml, "carol")
    assert carol.get("quota") == yaml_quota, carol
    assert carol.get("perms") == yaml_perms, carol
    assert carol["password"] == password, "modify_user changed the password"
    assert entry(users_yaml, "dave") == dave_before, "modify_user changed another user"
    user = load_users(users_yaml, tmp_path / "homes").users["carol"]
    assert user.quota == quota_bytes
    assert user.perms == frozenset(rights)


def test_modify_user_removes_quota_and_perms(users_yaml: Path, tmp_path: Path) -> None:
    modify_user(users_yaml, "dave", "none", "all")
    dave = entry(users_yaml, "dave")
    assert "quota" not in dave and "perms" not in dave, dave
    user = load_users(users_yaml, tmp_path / "homes").users["dave"]
    assert user.quota is None and user.perms == frozenset(RIGHTS)


def test_modify_user_keeps_what_is_not_named(users_yaml: Path) -> None:
    modify_user(users_yaml, "dave", "5M", None)
    assert entry(users_yaml, "dave")["perms"] == "read-only"
    modify_user(users_yaml, "dave", None, "list")
    assert entry(users_yaml, "dave")["quota"] == "5M"
    assert entry(users_yaml, "dave")["perms"] == ["list"]


@pytest.mark.parametrize(
    "name, quota, perms",
    [
        ("nobody", "1M", None),
        ("carol", "lots", None),
        ("carol", "-1M", None),
        ("carol", None, "list,fly"),
        ("carol", "1M", "bogus"),
    ],
)
def test_modify_user_errors_leave_the_file(
    users_yaml: Path, name: str, quota: str | None, perms: str | None
) -> None:
    before = users_yaml.read_bytes()
    with pytest.raises(ValueError):
        modify_user(users_yaml, name, quota, perms)
    assert users_yaml.read_bytes() == before, "a failed modify_user changed the file"
