"""A changed users file is noticed at the next login, without a signal (issue 13).

``ftpserver useradd`` on one machine must take effect on every node reading
the same file; a single server behaves the same.  A broken file is refused
with one log line and the last good users stay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ALICE, ALICE_PASSWORD, CLIENT_TIMEOUT, HOST, RunningServer

from ftpclient.client import FileTransferClient
from ftpproto.errors import RemoteError
from ftpserver.users import add_user, remove_user

pytestmark = pytest.mark.timeout(60)


def login(running: RunningServer, user: str, password: str) -> str:
    with FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT) as conn:
        name = conn.login(user, password)
        conn.quit()
        return name


def test_an_added_user_logs_in_without_a_reload(
    make_configured_server: Callable[..., RunningServer],
    users_file: Path,
    homes: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    running = make_configured_server()
    with pytest.raises(RemoteError):
        login(running, "dora", "dora-secret-1")
    add_user(users_file, homes, "dora", "dora-secret-1", rounds=4)
    assert login(running, "dora", "dora-secret-1") == "dora"
    assert "users file changed: 3 users" in caplog.text
    remove_user(users_file, "dora")
    with pytest.raises(RemoteError) as info:
        login(running, "dora", "dora-secret-1")
    assert info.value.code == 430


def test_a_broken_users_file_keeps_the_last_good_one(
    make_configured_server: Callable[..., RunningServer],
    users_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    running = make_configured_server()
    good = users_file.read_text()
    users_file.write_text("users:\n  alice: [this is not\n")
    assert login(running, ALICE, ALICE_PASSWORD) == ALICE
    assert "users file changed but refused, the last good one stays" in caplog.text
    assert login(running, ALICE, ALICE_PASSWORD) == ALICE  # refused once, not at every login
    assert caplog.text.count("users file changed but refused") == 1
    users_file.write_text(good + "\n")  # fixed: taken at the next login
    assert login(running, ALICE, ALICE_PASSWORD) == ALICE
    assert "users file changed: 2 users" in caplog.text
