"""Tests for ftpproto.commands: the command table is the allow-list for dispatch."""

from __future__ import annotations

import re

import pytest

from ftpproto.commands import COMMANDS, CommandSpec, lookup
from ftpproto.messages import Message
from ftpserver.handler import SessionHandler

# name -> (usage, accepted argument counts among 0..4, needs_login, right needed)
TABLE: dict[str, tuple[str, set[int], bool, str | None]] = {
    "login": ("login USER PASSWORD", {2}, False, None),
    "help": ("help [COMMAND]", {0, 1}, False, None),
    "challenge": ("challenge", {0}, False, None),
    "login_key": ("login_key USER ALGORITHM KEY SIGNATURE", {4}, False, None),
    "quit": ("quit", {0}, False, None),
    "pwd": ("pwd", {0}, True, None),
    "cd": ("cd PATH", {1}, True, None),
    "ls": ("ls [PATH]", {0, 1}, True, "list"),
    "stat": ("stat PATH [blake3]", {1, 2}, True, "list"),
    "get": ("get PATH [OFFSET] [PREFIX_BLAKE3]", {1, 2, 3}, True, "read"),
    "put": ("put PATH SIZE [OFFSET] [PREFIX_BLAKE3]", {2, 3, 4}, True, "write"),
    "partial": ("partial PATH", {1}, True, "write"),
    "mkdir": ("mkdir PATH [parents]", {1, 2}, True, "mkdir"),
    "rmdir": ("rmdir PATH", {1}, True, "delete"),
    "rm": ("rm PATH [recursive] [folders]", {1, 2, 3}, True, "delete"),
    "mv": ("mv OLD NEW [replace]", {2, 3}, True, "rename"),
    "touch": ("touch PATH MTIME", {2}, True, "write"),
    "tree": ("tree PATH [blake3]", {1, 2}, True, "list"),
    "quota": ("quota", {0}, True, None),
    "window": ("window", {0}, True, None),
    "fetch": ("fetch PATH", {1}, True, "read"),
    "offer": ("offer PATH SIZE", {2}, True, "write"),
    "send": ("send [abort]", {0, 1}, True, None),
}


def test_table_has_exactly_the_documented_commands() -> None:
    assert set(COMMANDS) == set(TABLE)


@pytest.mark.parametrize(("name", "usage"), [(n, u) for n, (u, _, _, _) in TABLE.items()])
def test_usage(name: str, usage: str) -> None:
    assert COMMANDS[name].usage == usage


@pytest.mark.parametrize(("name", "counts"), [(n, c) for n, (_, c, _, _) in TABLE.items()])
def test_accepts(name: str, counts: set[int]) -> None:
    spec = COMMANDS[name]
    assert {n for n in range(5) if spec.accepts(n)} == counts


@pytest.mark.parametrize(("name", "needs_login"), [(n, g) for n, (_, _, g, _) in TABLE.items()])
def test_needs_login(name: str, needs_login: bool) -> None:
    assert COMMANDS[name].needs_login is needs_login


@pytest.mark.parametrize(("name", "right"), [(n, r) for n, (_, _, _, r) in TABLE.items()])
def test_permission(name: str, right: str | None) -> None:
    assert COMMANDS[name].permission == right


@pytest.mark.parametrize("name", sorted(TABLE))
def test_lookup_known(name: str) -> None:
    spec = lookup(name)
    assert isinstance(spec, CommandSpec)
    assert spec.name == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "GET",
        "Get",
        "get ",
        "nosuch",
        "cmd_get",
        "__init__",
        "__class__",
        "__dict__",
        "handle",
        "setup",
        "finish",
        "server",
        "dispatch",
        "request",
        "keys",
        "get\0",
    ],
)
def test_lookup_unknown_is_none(name: str) -> None:
    assert lookup(name) is None


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_name_is_a_lowercase_identifier(name: str) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert name.isidentifier()
    assert not name.startswith("_")
    assert COMMANDS[name].name == name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_name_survives_the_wire(name: str) -> None:
    assert Message.parse(Message(name).encode()).command == name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_spec_has_summary(name: str) -> None:
    assert COMMANDS[name].summary.strip()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_handler_method(name: str) -> None:
    assert callable(getattr(SessionHandler, "cmd_" + name, None))


def test_every_handler_method_is_in_the_table() -> None:
    methods = {m[4:] for m in dir(SessionHandler) if m.startswith("cmd_")}
    assert methods == set(COMMANDS)
