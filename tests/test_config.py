"""Tests for ftpserver.config: server.yaml over the built-in defaults, validated with file:line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ftpserver.config import (
    RESTART_ONLY,
    ConfigError,
    Settings,
    keep_restart_only,
    load_settings,
    log_level,
)

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "server.yaml") -> Path:
    """Write ``text`` to ``tmp_path/name`` and return the path."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text", ["", "# nothing but comments\n", "---\n", "null\n"])
def test_empty_file_gives_defaults(tmp_path: Path, text: str) -> None:
    assert load_settings(write(tmp_path, text)) == Settings()


def test_defaults() -> None:
    assert Settings() == Settings(
        host="127.0.0.1",
        port=9002,
        users=Path("config/users.yaml"),
        home=Path("home"),
        listen_backlog=256,
        idle_timeout=300.0,
        login_failure_delay=1.0,
        max_login_attempts=3,
        bcrypt_rounds=12,
        fsync_uploads=True,
        log_level="INFO",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host: 0.0.0.0\n", {"host": "0.0.0.0"}),
        ("host: '::'\n", {"host": "::"}),
        ("port: 0\n", {"port": 0}),
        ("port: 65535\n", {"port": 65535}),
        ("listen_backlog: 1\n", {"listen_backlog": 1}),
        ("idle_timeout: 1\n", {"idle_timeout": 1.0}),
        ("idle_timeout: 2.5\n", {"idle_timeout": 2.5}),
        ("login_timeout: 5\n", {"login_timeout": 5.0}),
        ("login_failure_delay: 0\n", {"login_failure_delay": 0.0}),
        ("login_failure_delay: 60\n", {"login_failure_delay": 60.0}),
        ("max_login_attempts: 100\n", {"max_login_attempts": 100}),
        ("bcrypt_rounds: 4\n", {"bcrypt_rounds": 4}),
        ("bcrypt_rounds: 31\n", {"bcrypt_rounds": 31}),
        ("fsync_uploads: false\n", {"fsync_uploads": False}),
        ("log_level: debug\n", {"log_level": "DEBUG"}),
        ("log_level: Warning\n", {"log_level": "WARNING"}),
        ("port: 2121\nhost: localhost\n", {"port": 2121, "host": "localhost"}),
        ("users: /etc/ftp/users.yaml\n", {"users": Path("/etc/ftp/users.yaml")}),
        ("home: /srv/ftp\n", {"home": Path("/srv/ftp")}),
        ("proxy_protocol: true\n", {"proxy_protocol": True}),
        (
            "proxy_trusted: [10.0.0.1, 10.1.0.0/16]\n",
            {"proxy_trusted": ("10.0.0.1/32", "10.1.0.0/16")},
        ),
        ("proxy_trusted: '::1'\n", {"proxy_trusted": ("::1/128",)}),
        (
            "shared_state: postgresql://ftp@db:5432/ft\n",
            {"shared_state": "postgresql://ftp@db:5432/ft"},
        ),
        ("node_name: a\nnode_lease: 3\n", {"node_name": "a", "node_lease": 3.0}),
    ],
)
def test_overrides(tmp_path: Path, text: str, expected: dict[str, Any]) -> None:
    settings = load_settings(write(tmp_path, text))
    assert settings == Settings().replace(**expected)
    for key, value in expected.items():
        assert type(getattr(settings, key)) is type(value)


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("users: users.yaml\n", "users", "conf/users.yaml"),
        ("users: sub/u.yaml\n", "users", "conf/sub/u.yaml"),
        ("home: ../home\n", "home", "home"),
        ("users: ./a/../u.yaml\n", "users", "conf/u.yaml"),
        ("home: homes\n", "home", "conf/homes"),
    ],
)
def test_relative_paths_follow_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str, expected: str
) -> None:
    path = write(tmp_path, text, "conf/server.yaml")
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)  # the process's cwd must not matter
    assert getattr(load_settings(path), key) == tmp_path / expected


def test_base_settings_are_kept(tmp_path: Path) -> None:
    base = Settings(port=1234, bcrypt_rounds=4)
    settings = load_settings(write(tmp_path, "host: 0.0.0.0\n"), base)
    assert (settings.host, settings.port, settings.bcrypt_rounds) == ("0.0.0.0", 1234, 4)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"port": None}, Settings()),
        ({"port": 21, "host": None}, Settings(port=21)),
        ({"users": Path("u.yaml")}, Settings(users=Path("u.yaml"))),
    ],
)
def test_replace_ignores_none(changes: dict[str, Any], expected: Settings) -> None:
    assert Settings().replace(**changes) == expected


def test_shipped_server_yaml_matches_the_defaults() -> None:
    path = REPO / "config" / "server.yaml"
    settings = load_settings(path)
    relative = {"users": Path("config/users.yaml"), "home": Path("home")}
    relative["control_socket"] = Path("config/control.sock")
    assert settings.replace(**relative) == Settings()
    assert settings.users.resolve() == (REPO / "config" / "users.yaml").resolve()
    assert settings.control_socket == (REPO / "config" / "control.sock").resolve()
    assert settings.home.resolve() == (REPO / "home").resolve()


BAD = [
    pytest.param("- port\n", 1, "expected a mapping", id="top-level-list"),
    pytest.param("just text\n", 1, "expected a mapping", id="top-level-scalar"),
    pytest.param(
        "# c\nprot: 21\n", 2, "unknown setting 'prot' (did you mean 'port'?)", id="unknown-key"
    ),
    pytest.param(
        "idle_timout: 5\n",
        1,
        "unknown setting 'idle_timout' (did you mean 'idle_timeout'?)",
        id="misspelt-key",
    ),
    pytest.param("zzz: 5\n", 1, "unknown setting 'zzz' (known: audit_json,", id="far-key"),
    pytest.param("port: 21\n1: 2\n", 2, "unknown setting 1", id="numeric-key"),
    pytest.param("port: 21\nport: 22\n", 2, "duplicate key 'port'", id="duplicate-key"),
    pytest.param("port: '21'\n", 1, "port: expected an integer", id="string-for-int"),
    pytest.param("port: 21.0\n", 1, "port: expected an integer", id="float-for-int"),
    pytest.param("port: true\n", 1, "port: expected an integer", id="bool-for-int"),
    pytest.param("port:\n", 1, "port: expected an integer", id="null-for-int"),
    pytest.param("port: [21]\n", 1, "port: expected an integer", id="list-for-int"),
    pytest.param("port: -1\n", 1, "out of range (from 0 to 65535)", id="port-negative"),
    pytest.param("port: 65536\n", 1, "out of range", id="port-too-high"),
    pytest.param("listen_backlog: 0\n", 1, "out of range", id="backlog-zero"),
    pytest.param("max_login_attempts: 0\n", 1, "out of range", id="attempts-zero"),
    pytest.param("max_login_attempts: 101\n", 1, "out of range", id="attempts-101"),
    pytest.param("bcrypt_rounds: 3\n", 1, "out of range", id="rounds-3"),
    pytest.param("bcrypt_rounds: 32\n", 1, "out of range", id="rounds-32"),
    pytest.param("idle_timeout: 0.5\n", 1, "out of range (from 1 up)", id="idle-below-1"),
    pytest.param("login_timeout: 0\n", 1, "out of range (from 1 up)", id="login-timeout-0"),
    pytest.param("idle_timeout: yes\n", 1, "expected a number", id="bool-for-float"),
    pytest.param("idle_timeout: '5'\n", 1, "expected a number", id="string-for-float"),
    pytest.param("login_failure_delay: -0.1\n", 1, "out of range", id="delay-negative"),
    pytest.param("login_failure_delay: 61\n", 1, "out of range", id="delay-61"),
    pytest.param("idle_timeout: .nan\n", 1, "idle_timeout", id="idle-nan"),
    pytest.param("login_failure_delay: .nan\n", 1, "login_failure_delay", id="delay-nan"),
    pytest.param("idle_timeout: .inf\n", 1, "idle_timeout", id="idle-inf"),
    pytest.param("idle_timeout: 1" + "0" * 400 + "\n", 1, "idle_timeout", id="idle-huge-int"),
    pytest.param("fsync_uploads: 1\n", 1, "expected true or false", id="int-for-bool"),
    pytest.param("fsync_uploads: 'yes'\n", 1, "expected true or false", id="string-for-bool"),
    pytest.param("log_level: verbose\n", 1, "log_level: expected one of", id="bad-log-level"),
    pytest.param("log_level: 10\n", 1, "non-empty string", id="int-log-level"),
    pytest.param("log_level: ''\n", 1, "non-empty string", id="empty-log-level"),
    pytest.param("host: ''\n", 1, "host: expected a non-empty string", id="empty-host"),
    pytest.param("host: 127\n", 1, "host: expected a non-empty string", id="int-host"),
    pytest.param("users: ''\n", 1, "users: expected a path", id="empty-path"),
    pytest.param("home: 5\n", 1, "home: expected a path", id="int-path"),
    pytest.param("home:\n", 1, "home: expected a path", id="null-path"),
    pytest.param("port: 21\nhost: [\n", 3, "not valid YAML", id="unclosed-flow"),
    pytest.param("port: 21\n  host: x\n", 2, "not valid YAML", id="bad-indent"),
    pytest.param("port: 1\n---\nport: 2\n", 2, "not valid YAML", id="two-documents"),
    pytest.param("port: &p [*p]\n", 1, "port", id="recursive-alias"),
    pytest.param("proxy_trusted: [10.0.0.300]\n", 1, "not an address", id="bad-network"),
    pytest.param("proxy_trusted: []\n", 1, "expected a list", id="no-networks"),
    pytest.param("proxy_trusted: [[1]]\n", 1, "proxy_trusted", id="nested-networks"),
    pytest.param("shared_state: mysql://x\n", 1, "postgresql:// URL", id="bad-url"),
    pytest.param("shared_state: 5\n", 1, "non-empty string", id="int-url"),
    pytest.param("node_lease: 1\n", 1, "out of range", id="lease-1"),
    pytest.param("proxy_protocol: 1\n", 1, "true or false", id="int-proxy-protocol"),
    pytest.param("storage: disk\n", 1, "storage: expected one of local, s3", id="bad-storage"),
    pytest.param("port: 1\nstorage: s3\n", 2, "storage: s3 needs s3_bucket", id="s3-no-bucket"),
    pytest.param("s3_part_size: 1024\n", 1, "out of range", id="part-too-small"),
    pytest.param("s3_prefix: a/../b\n", 1, "s3_prefix: no empty", id="prefix-dotdot"),
    pytest.param("s3_bucket: ''\n", 1, "non-empty string", id="empty-bucket"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert (info.value.path, info.value.line) == (str(path), line)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert message in str(info.value)


def test_s3_settings(tmp_path: Path) -> None:
    text = "storage: s3\ns3_bucket: b\ns3_prefix: ftp/homes\ns3_part_size: 16777216\n"
    settings = load_settings(write(tmp_path, text))
    assert (settings.storage, settings.s3_bucket, settings.s3_prefix) == ("s3", "b", "ftp/homes")
    assert settings.s3_part_size == 16 * 1024 * 1024
    assert (settings.s3_endpoint, settings.s3_region) == ("", "")


def test_the_default_server_does_not_import_boto3(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import ftpserver.__main__, ftpserver.server, sys; print('boto3' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip() == "False", done.stderr


def test_error_on_a_later_line(tmp_path: Path) -> None:
    text = "# settings\n\nhost: 127.0.0.1\nport: 21\n\n# the timeout\nidle_timeout: 0\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r":7: idle_timeout: 0 is out of range"):
        load_settings(path)


def test_problems_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, "port: x\nidle_timout: 5\nhost: ''\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert [p.line for p in info.value.problems] == [1, 2, 3]
    assert "did you mean 'idle_timeout'?" in info.value.problems[1].text


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: cannot read")


@pytest.mark.parametrize(
    ("name", "level"),
    [("DEBUG", logging.DEBUG), ("INFO", logging.INFO), ("WARNING", logging.WARNING)],
)
def test_log_level(name: str, level: int) -> None:
    assert log_level(Settings(log_level=name)) == level


@pytest.mark.parametrize(
    ("running", "fresh", "changed"),
    [
        # Started without TLS; the file gained it: TLS stays off until a restart.
        (
            Settings(),
            Settings(tls_cert=Path("c.pem"), tls_key=Path("k.pem"), max_sessions=7),
            ["tls_cert", "tls_key"],
        ),
        # Started with TLS; the file dropped it: TLS stays on.
        (
            Settings(tls_cert=Path("c.pem"), tls_key=Path("k.pem")),
            Settings(max_sessions=7),
            ["tls_cert", "tls_key"],
        ),
        (
            Settings(port=0, workers=2),
            Settings(port=9002, workers=1, max_sessions=7),
            ["port", "workers"],
        ),
        (Settings(), Settings(max_sessions=7), []),
    ],
)
def test_reload_keeps_restart_only_settings(
    running: Settings, fresh: Settings, changed: list[str]
) -> None:
    kept, names = keep_restart_only(running, fresh)
    assert names == changed
    assert kept.max_sessions == fresh.max_sessions  # a run-time setting: the file's
    assert {key: getattr(kept, key) for key in RESTART_ONLY} == {
        key: getattr(running, key) for key in RESTART_ONLY
    }
