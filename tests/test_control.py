"""The control socket (:mod:`ftpserver.control`) and its command table, without an FTP server.

* one JSON request -> one JSON answer; malformed, unknown, over-long and
  failing requests get an error answer and the socket keeps serving;
* the socket file is 0600; a stale one is replaced, a live one or a file
  that is not a socket is left alone; a path longer than a socket address
  allows still works; close removes only its own file;
* another user is refused (run as root only: it needs a second uid);
* :func:`ftpserver.live.commands` over a :class:`BanList`, and
  :class:`~ftpserver.activity.ReloadLog`;
* :func:`ftpserver.changes.changes` in words.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import subprocess_env

from ftpserver.activity import ReloadLog
from ftpserver.adminstate import LocalAdminState
from ftpserver.changes import changes, problems_of
from ftpserver.config import Settings
from ftpserver.control import MAX_REQUEST, ControlError, ControlServer, call
from ftpserver.guards import BanList
from ftpserver.live import commands
from ftpserver.state.shared import LocalState
from ftpserver.users import User, UserStore
from ftpserver.yamlfile import ConfigError

pytestmark = pytest.mark.timeout(30)


def boom(args: dict[str, Any]) -> Any:
    raise RuntimeError("broken on purpose")


TABLE = {
    "echo": lambda args: args,
    "missing": lambda args: {}["nothing"],
    "boom": boom,
}


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlServer]:
    server = ControlServer(tmp_path / "ctl.sock", TABLE)
    server.start()
    yield server
    server.close()


def raw_exchange(path: Path, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        conn.sendall(data)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    result = json.loads(answer)
    assert isinstance(result, dict)
    return result


def cut_off(path: Path, data: bytes) -> bool:
    """Whether the server closes the connection without an answer after ``data``."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        try:
            conn.sendall(data)
            return conn.recv(4096) == b""
        except ConnectionResetError:
            return True
        except BrokenPipeError:
            return True


def test_requests_and_answers(control: ControlServer) -> None:
    path = control.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert call(path, "echo", who="me", n=3) == {"who": "me", "n": 3}
    assert call(path, "ping") == "pong"
    with pytest.raises(ControlError, match=r"^unknown command: nope$"):
        call(path, "nope")
    with pytest.raises(ControlError, match="'nothing'"):
        call(path, "missing")
    with pytest.raises(ControlError, match=r"^internal error: broken on purpose$"):
        call(path, "boom")
    for garbage in (b"not json\n", b"[1, 2]\n", b'{"args": {}}\n', b'{"command": 5}\n'):
        assert raw_exchange(path, garbage) == {"ok": False, "error": "malformed request"}
    assert cut_off(path, b"x" * (MAX_REQUEST + 10))
    assert call(path, "echo") == {}  # still serving


def test_stale_live_and_foreign_files(tmp_path: Path, control: ControlServer) -> None:
    with pytest.raises(FileExistsError, match="belongs to a server that is running"):
        ControlServer(control.path, TABLE)
    assert call(control.path, "ping") == "pong"

    stale_path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(stale_path))  # bound, never listening: connections are refused
    with pytest.raises(ControlError, match="is stale"):
        call(stale_path, "ping")
    fresh = ControlServer(stale_path, TABLE)
    fresh.start()
    assert call(stale_path, "ping") == "pong"
    fresh.close()
    assert not stale_path.exists()

    plain = tmp_path / "plain.txt"
    plain.write_text("keep me")
    with pytest.raises(FileExistsError, match="is not a socket"):
        ControlServer(plain, TABLE)
    assert plain.read_text() == "keep me"
    with pytest.raises(ControlError, match="no server is running here"):
        call(tmp_path / "none.sock", "ping")


def test_a_path_longer_than_a_socket_address(tmp_path: Path) -> None:
    folder = tmp_path / ("d" * 60) / ("e" * 60)
    path = folder / "control.sock"
    assert len(str(path)) > 108
    server = ControlServer(path, TABLE)  # makes the folder, mode 0700
    server.start()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert call(path, "echo", long=True) == {"long": True}
    server.close()
    assert not path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_another_user_is_refused() -> None:
    folder = Path(tempfile.mkdtemp(prefix="ftp-ctl-"))  # /tmp itself: reachable by nobody
    try:
        folder.chmod(0o755)
        server = ControlServer(folder / "ctl.sock", TABLE)
        server.start()
        server.path.chmod(0o666)  # even past the file's mode, the peer's uid is checked
        script = (
            "import os, sys\n"
            "from pathlib import Path\n"
            "from ftpserver.control import call, ControlError\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "try:\n    call(Path(sys.argv[1]), 'ping')\nexcept ControlError as exc:\n"
            "    print(exc)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, str(server.path)],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.stdout.strip() == "permission denied", result.stderr
        assert call(server.path, "ping") == "pong"
        server.close()
    finally:
        shutil.rmtree(folder)


# -- the command table over a ban list and a reload log ----------------------------------------


class FakeView:
    """A view with a real BanList (in its admin state) and ReloadLog and fixed sessions."""

    def __init__(self) -> None:
        self.started = 0.0
        self.bans = BanList(1, 60, 900)
        settings = Settings()
        local = LocalState.create(settings)
        self.state = LocalAdminState(
            LocalState(local.quotas, local.limiter, self.bans, local.bandwidth)
        )
        self.reloads = ReloadLog()
        self.kicked: list[dict[str, Any]] = []

    def workers(self) -> list[dict[str, Any]]:
        return [{"worker": 1, "pid": 10}]

    def sessions(self) -> list[dict[str, Any]]:
        return [{"id": "1.1", "transfer": None}, {"id": "1.2", "transfer": {"bytes": 5}}]

    def kick(self, selector: dict[str, Any]) -> list[str]:
        self.kicked.append(selector)
        return ["1.1"]


def test_command_table() -> None:
    view = FakeView()
    view.bans.failure("192.0.2.7")
    table = commands(view, on_reload=lambda: view.reloads.record(True, ["x: 1 -> 2"]))
    state = table["status"]({})
    assert state["sessions"] == 2 and state["bans"] == 1 and state["nodes"] == []
    assert [row["id"] for row in state["transfers"]] == ["1.2"]
    assert table["bans"]({}) == [{"ip": "192.0.2.7", "seconds_left": 900}]
    assert table["kick"]({"ip": "::ffff:192.0.2.7"}) == {"kicked": ["1.1"], "silent_workers": []}
    assert [row["id"] for row in table["sessions"]({})["sessions"]] == ["1.1", "1.2"]
    assert view.kicked == [{"ip": "::ffff:c000:207"}]  # addresses compared in one spelling
    for bad in ({}, {"user": "a", "ip": "192.0.2.7"}):
        with pytest.raises(ValueError, match="name one of"):
            table["kick"](bad)
    assert table["unban"]({"ip": "192.0.2.7"}) == {"unbanned": "192.0.2.7"}
    with pytest.raises(LookupError, match=r"192\.0\.2\.7 is not banned"):
        table["unban"]({"ip": "192.0.2.7"})
    assert table["reload"]({}) == {"applied": True, "lines": ["x: 1 -> 2"]}


def test_reload_log_waits_for_the_next_outcome() -> None:
    log = ReloadLog()
    assert log.wait_after(0, 0.05) is None
    seen = log.count
    threading.Timer(0.1, log.record, (False, ["bad.yaml:3: unknown setting"])).start()
    outcome = log.wait_after(seen, 5)
    assert outcome is not None and not outcome.applied
    assert outcome.lines == ("bad.yaml:3: unknown setting",)


def test_changes_in_words(tmp_path: Path) -> None:
    def user(name: str, quota: int | None = None) -> User:
        return User(name, b"hash", tmp_path / name, quota)

    old = UserStore({"a": user("a"), "b": user("b")})
    new = UserStore({"a": user("a", 10), "c": user("c")})
    fresh = Settings(idle_timeout=60, port=1)
    assert changes(Settings(), fresh, old, new) == [
        "port: needs a restart to change (9002 stays)",
        "idle_timeout: 300.0 -> 60",
        "user c: added",
        "user b: removed",
        "user a: changed",
    ]
    assert changes(Settings(), Settings(), old, old) == []
    error = ConfigError("f.yaml", 1, "one")
    error.problems.append(ConfigError("f.yaml", 2, "two"))
    assert problems_of(error) == ["f.yaml:1: one", "f.yaml:2: two"]
    assert problems_of(OSError("gone")) == ["gone"]
