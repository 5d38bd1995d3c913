"""Unit tests of the administrator's pipe to each worker (:mod:`ftpserver.adminpipe`).

* a worker's answers arrive typed (:class:`SessionInfo`, session ids), and
  the supervisor's selector reaches the worker as it was sent;
* an answer of the wrong type is a TypeError on the supervisor's side, a
  malformed request is logged by the worker, which keeps answering;
* a worker that does not answer in time is named, and its late answer is
  skipped at the next question; a worker whose pipe is closed is named too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from ftpserver import adminpipe
from ftpserver.activity import SessionInfo, TransferInfo
from ftpserver.adminpipe import Selector, WorkerLinks, admin_pipe, answer_requests, selector_of

pytestmark = pytest.mark.timeout(20)

TRANSFER = TransferInfo("upload", "/up.bin", 10, 1.0, 10)
ALICE = SessionInfo("1.1", "alice", "127.0.0.1:5000", 0.0, 0.0, "put", TRANSFER)
IDLE = SessionInfo("1.2", None, "[::1]:5001", 0.0, 3.5, None, None)


@pytest.fixture
def links() -> Iterator[WorkerLinks]:
    made = WorkerLinks()
    yield made
    for _, pid in made.pids():
        made.drop(pid)


def test_answers_arrive_typed_and_the_selector_as_sent(links: WorkerLinks) -> None:
    asked: list[Selector] = []

    def kick(selector: Selector) -> list[str]:
        asked.append(selector)
        return ["1.1"]

    for index in (1, 0):  # asked in index order, whatever order they were added in
        asks, answers = admin_pipe()
        answer_requests(answers, lambda: [ALICE, IDLE], kick)
        links.add(index, 100 + index, asks)
    assert links.pids() == [(0, 100), (1, 101)]
    sessions, silent = links.ask("sessions", {}, SessionInfo)
    assert silent == [] and sessions == [(0, [ALICE, IDLE]), (1, [ALICE, IDLE])]
    assert ALICE.ip == "127.0.0.1" and IDLE.ip == "::1"
    assert ALICE.row()["transfer"] == {
        "direction": "upload",
        "path": "/up.bin",
        "bytes": 10,
        "seconds": 1.0,
        "rate": 10,
    }
    kicked, silent = links.ask("kick", {"user": "alice"}, str)
    assert kicked == [(0, ["1.1"]), (1, ["1.1"])] and silent == []
    assert asked == [{"user": "alice"}, {"user": "alice"}]


def test_an_answer_of_the_wrong_type_is_refused(links: WorkerLinks) -> None:
    asks, answers = admin_pipe()
    answer_requests(answers, lambda: [ALICE], lambda selector: [])
    links.add(0, 100, asks)
    with pytest.raises(TypeError, match="worker 1's answer: expected str, got SessionInfo"):
        links.ask("sessions", {}, str)  # a bug: the wrong kind asked for
    sessions, _ = links.ask("sessions", {}, SessionInfo)  # the pipe still works
    assert sessions == [(0, [ALICE])]


def test_a_malformed_request_is_logged_and_the_worker_keeps_answering(
    links: WorkerLinks, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adminpipe, "WORKER_TIMEOUT", 0.3)
    asks, answers = admin_pipe()
    answer_requests(answers, lambda: [IDLE], lambda selector: [])
    links.add(0, 100, asks)
    with caplog.at_level(logging.ERROR, "ftpserver"):
        assert links.ask("shutdown", {}, str) == ([], [0])  # not a command: no answer
        assert links.ask("kick", {"user": 7}, str) == ([], [0])  # type: ignore[dict-item]
    assert "unknown admin command 'shutdown'" in caplog.text
    assert "selector value: expected str, got int" in caplog.text
    assert links.ask("sessions", {}, SessionInfo) == ([(0, [IDLE])], [])


def test_a_silent_worker_is_named_and_its_late_answer_skipped(
    links: WorkerLinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adminpipe, "WORKER_TIMEOUT", 0.3)
    release = threading.Event()
    calls = 0

    def slow() -> list[SessionInfo]:
        nonlocal calls
        calls += 1
        if calls == 1:
            release.wait(10)  # stuck past the timeout, then answers late
            return [ALICE]
        return [IDLE]

    asks, answers = admin_pipe()
    answer_requests(answers, slow, lambda selector: [])
    links.add(0, 100, asks)
    assert links.ask("sessions", {}, SessionInfo) == ([], [0])
    release.set()
    assert links.ask("sessions", {}, SessionInfo) == ([(0, [IDLE])], [])


def test_a_worker_whose_pipe_is_closed_is_named(links: WorkerLinks) -> None:
    asks, answers = admin_pipe()
    answers.close()
    links.add(2, 102, asks)
    assert links.ask("sessions", {}, SessionInfo) == ([], [2])
    links.drop(102)
    assert links.pids() == [] and asks.closed


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["user", "alice"], "selector: expected dict, got list"),
        ({1: "alice"}, "selector key: expected str, got int"),
        ({"ip": None}, "selector value: expected str, got NoneType"),
    ],
)
def test_selector_of_checks_every_item(value: object, problem: str) -> None:
    assert selector_of({"session": "2.17"}) == {"session": "2.17"}
    with pytest.raises(TypeError, match=problem):
        selector_of(value)
