"""Unit tests of the shared-state layer (:mod:`ftpserver.state`) over a multiprocessing Pipe.

* each worker proxy answers what the supervisor's in-process object answers,
  with the same types; an exception raised there is raised in the worker;
* the owner answers only its listed methods, with the right count and types
  of arguments; a proxy refuses a reply of the wrong type;
* once the supervisor's end is gone: one log line, one stop of the worker,
  quiet releases, and :class:`StateUnavailable` for everything else;
* :meth:`StateOwner.fork` waits for a call in progress, so the new process
  inherits no lock taken mid-call.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from conftest import wait_until

from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.config import Settings
from ftpserver.guards import SessionLimiter
from ftpserver.jail import TEMP_PREFIX
from ftpserver.state import wire
from ftpserver.state.ledger import QuotaBook, Reservation, Unmeasured, Usage
from ftpserver.state.owner import StateOwner
from ftpserver.state.pipe import (
    RemoteBandwidth,
    RemoteBans,
    RemoteSlots,
    flush_remote,
    remote_shared,
)
from ftpserver.state.quotas import RemoteLedger
from ftpserver.state.shared import LocalState, Shared
from ftpserver.state.wire import PipeClient, StateUnavailable
from ftpserver.storage.homeaccount import HomeAccount

pytestmark = pytest.mark.timeout(20)

IP = "10.0.0.9"
SETTINGS = Settings(max_sessions=3, max_sessions_per_ip=2, ban_failures=2)


@dataclass
class Linked:
    """The supervisor's state and owner, and a worker's proxies on them over one pipe."""

    state: LocalState
    remote: Shared
    worker_end: Connection


@pytest.fixture
def linked() -> Iterator[Callable[..., Linked]]:
    """``linked(state=None)``: a StateOwner answering a pipe; the pipe is closed on teardown."""
    opened: list[tuple[Connection, threading.Thread]] = []

    def link(state: LocalState | None = None) -> Linked:
        state = state or LocalState.create(SETTINGS)
        mine, theirs = Pipe()
        opened.append((theirs, StateOwner(state).attach(mine, 0)))
        return Linked(state, remote_shared(theirs), theirs)

    yield link
    for conn, thread in opened:
        conn.close()
        thread.join(5)


def test_session_slots_per_ip_and_in_total(linked: Callable[..., Linked]) -> None:
    pair = linked()
    slots = pair.remote.limiter
    assert [slots.acquire(IP), slots.acquire(IP)] == [None, None]
    assert slots.acquire(IP) == "too many sessions from your address"
    assert slots.acquire("10.0.0.10") is None
    assert slots.acquire("10.0.0.11") == "too many sessions on the server"
    assert pair.state.limiter.count == 3
    slots.release(IP)
    assert pair.state.limiter.count == 2
    assert slots.acquire(IP) is None


def test_bans(linked: Callable[..., Linked]) -> None:
    pair = linked()
    bans = pair.remote.bans
    assert (bans.is_banned(IP), bans.failure(IP)) == (False, False)
    assert bans.failure(IP) is True
    assert bans.is_banned(IP) is True and pair.state.bans.is_banned(IP)
    assert bans.is_banned("10.0.0.10") is False


def test_bandwidth(linked: Callable[..., Linked]) -> None:
    budget = linked().remote.bandwidth
    first = budget.take("alice", "upload", 1000, 500)
    assert isinstance(first, float) and first == 0.0  # a second's burst holds it
    assert budget.take("alice", "upload", 1000, 1000) == pytest.approx(0.5, abs=0.1)
    assert budget.take("alice", "download", 1000, 500) == 0.0  # another bucket


def test_quota_ledger(linked: Callable[..., Linked], tmp_path: Path) -> None:
    pair = linked()
    quotas, book = pair.remote.quotas, pair.state.quotas
    free = 10**12
    with pytest.raises(Unmeasured):  # raised in the supervisor, raised here
        quotas.usage("carol", 1000, free)
    quotas.record("carol", 100)  # the storage measured the home
    usage = quotas.usage("carol", 1000, free)
    assert isinstance(usage, Usage) and (usage.used, usage.reserved, usage.quota) == (100, 0, 1000)

    temp = str(tmp_path / f"{TEMP_PREFIX}a")
    reservation = quotas.reserve("carol", 1000, 600, 0, free, temp)
    assert isinstance(reservation, Reservation) and reservation.quota_bytes == 600
    assert book.usage("carol", 1000, free).reserved == 600
    with pytest.raises(ProtocolError) as caught:
        quotas.reserve("carol", 1000, 400, 0, free, str(tmp_path / f"{TEMP_PREFIX}b"))
    assert caught.value.code == ErrorCode.QUOTA_EXCEEDED

    quotas.settle("carol", 600, 1000, reservation)
    assert (book.usage("carol", 1000, free).used, book.usage("carol", 1000, free).reserved) == (
        700,
        0,
    )
    assert reservation.quota_bytes == reservation.disk_bytes == 0  # spent, as in the book
    quotas.release(reservation)  # a second release gives nothing back
    assert book.usage("carol", 1000, free).reserved == 0

    quotas.settle("carol", -100)
    assert quotas.usage("carol", 1000, free).used == 600
    with pytest.raises(ProtocolError) as caught:  # over the limit: nothing counted
        quotas.settle("carol", 500, 1000)
    assert quotas.usage("carol", 1000, free).used == 600


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (("limiter", "configure", (0, 0)), "limiter.configure is not shared"),
        (("quotas", "abandon", (None,)), "quotas.abandon is not shared"),
        (("quotas", "forget", ("alice",)), "quotas.forget is not shared"),
        (("limiter", "__init__", (0, 0)), "limiter.__init__ is not shared"),
        (("state", "limiter", ()), "state.limiter is not shared"),
        (("limiter", "acquire", ()), "limiter.acquire takes 1 arguments, not 0"),
        (("limiter", "acquire", (IP, IP)), "limiter.acquire takes 1 arguments, not 2"),
        (("limiter", "acquire", (5,)), "argument 1: expected str, got int"),
        (("bandwidth", "take", ("a", "upload", "fast", 1)), "argument 3: expected int, got str"),
        (("quotas", "usage", ("alice", None, "lots")), "argument 3: expected int, got str"),
        (("limiter", "release", (IP,)), f"no session slot held for {IP}"),
        ("acquire", "request (target, method, arguments): expected tuple, got str"),
        (("limiter", "acquire"), "request (target, method, arguments): expected 3 items, got 2"),
        (("limiter", "acquire", [IP]), "arguments: expected tuple, got list"),
    ],
)
def test_the_owner_answers_only_listed_methods_with_checked_arguments(
    linked: Callable[..., Linked], request_: object, error: str
) -> None:
    pair = linked()
    pair.worker_end.send(request_)
    ok, value = pair.worker_end.recv()
    assert not ok and isinstance(value, (AttributeError, TypeError, ValueError))
    assert str(value) == error
    assert pair.state.limiter.count == 0
    assert pair.remote.limiter.acquire(IP) is None  # the pipe still serves


def answering(reply: object) -> tuple[PipeClient, threading.Thread]:
    """A client whose other end answers each request with ``reply`` (a broken supervisor)."""
    mine, theirs = Pipe()

    def serve() -> None:
        try:
            while True:
                mine.recv()
                mine.send(reply)
        except (EOFError, OSError):
            mine.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return PipeClient(theirs), thread


@pytest.mark.parametrize(
    ("reply", "call"),
    [
        ((True, "yes"), lambda client: RemoteBans(client).is_banned(IP)),
        ((True, 1), lambda client: RemoteBandwidth(client).take("a", "upload", 1, 1)),
        ((True, 7), lambda client: RemoteSlots(client).acquire(IP)),
        ((True, None), lambda client: RemoteLedger(client).usage("a", None, 1)),
        ((False, "not an exception"), lambda client: RemoteBans(client).failure(IP)),
    ],
)
def test_a_proxy_refuses_a_reply_of_the_wrong_type(
    reply: object, call: Callable[[PipeClient], object]
) -> None:
    client, thread = answering(reply)
    with pytest.raises(TypeError):
        call(client)
    client._conn.close()
    thread.join(5)


def test_when_the_supervisor_is_gone_one_line_one_stop_quiet_releases(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    mine, theirs = Pipe()
    mine.close()
    stops: list[int] = []
    client = PipeClient(theirs, on_lost=lambda: stops.append(1))
    slots, quotas = RemoteSlots(client), RemoteLedger(client)
    reservation = Reservation("carol", 10, 10, str(tmp_path / f"{TEMP_PREFIX}x"))
    with caplog.at_level(logging.INFO, logger="ftpserver"):
        slots.release(IP)  # the supervisor's count went with it: nothing to give back
        quotas.release(reservation)
        with pytest.raises(StateUnavailable):
            slots.acquire(IP)
        with pytest.raises(StateUnavailable):
            quotas.usage("carol", None, 1)
    assert stops == [1]
    assert reservation.quota_bytes == reservation.disk_bytes == 0
    lines = [r.getMessage() for r in caplog.records if "main process is gone" in r.getMessage()]
    assert len(lines) == 1, lines
    assert isinstance(StateUnavailable(), ConnectionAbortedError)


class _SlowLimiter(SessionLimiter):
    """Holds its lock for a while inside ``acquire``."""

    def __init__(self) -> None:
        super().__init__(0, 0)
        self.inside = threading.Event()
        self.done = threading.Event()

    def acquire(self, ip: str) -> str | None:
        with self._lock:
            self.inside.set()
            time.sleep(0.5)
        try:
            return super().acquire(ip)
        finally:
            self.done.set()


def test_fork_waits_for_a_call_in_progress() -> None:
    """A lock taken mid-call (here the limiter's) is not inherited held by a new worker."""
    limiter = _SlowLimiter()
    state = LocalState.create(SETTINGS)
    owner = StateOwner(LocalState(state.quotas, limiter, state.bans, state.bandwidth))
    mine, theirs = Pipe()
    thread = owner.attach(mine, 0)
    call = threading.Thread(target=remote_shared(theirs).limiter.acquire, args=(IP,))
    call.start()
    try:
        assert limiter.inside.wait(5)
        pid = owner.fork()
        if pid == 0:  # the new process: the limiter's lock must be free
            code = 3
            try:
                code = 0 if limiter._lock.acquire(timeout=2) else 4
            finally:
                os._exit(code)
        assert limiter.done.is_set(), "forked before the call ended"
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child inherited the lock held"
    finally:
        call.join(5)
        theirs.close()
        thread.join(5)


def test_asked_requests_cross_together_and_a_post_gets_no_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``submit`` waits to be sent with the next post or wait; a posted call is not answered."""
    shared = LocalState.create(Settings(max_sessions=0, max_sessions_per_ip=0))
    owner = StateOwner(shared)
    mine, theirs = Pipe()
    thread = owner.attach(mine, 0)
    client = PipeClient(theirs)
    ledger = RemoteLedger(client)
    ledger.record("a", 0)
    first = ledger.reserve_later("a", 100, 60, 0, 10**9, "")
    second = ledger.reserve_later("a", 100, 60, 0, 10**9, "")  # 60 + 60 > 100
    assert not theirs.poll(0.2) and shared.quotas.usage("a", 100, 10**9).reserved == 0
    ledger.settle("a", 10)  # posted: the two reservations go first, in one message
    assert first().quota_bytes == 60
    with pytest.raises(ProtocolError) as refused:
        second()
    assert refused.value.code == ErrorCode.QUOTA_EXCEEDED
    assert ledger.usage("a", 100, 10**9) == Usage(10, 60, 100, 30)
    with caplog.at_level(logging.WARNING, logger="ftpserver"):
        client.post("quotas", "settle", "a", "ten", None, None)  # refused, and not answered
        assert ledger.usage("a", 100, 10**9) == Usage(10, 60, 100, 30)  # still in step
    assert "a posted" in caplog.text
    theirs.close()
    thread.join(5)
    with pytest.raises(Unmeasured):  # given back with the pipe (else the figures would stay)
        shared.quotas.usage("a", 100, 10**9)


def test_posted_settles_are_held_back_then_give_back_their_reservations(
    linked: Callable[..., Linked],
) -> None:
    """A settle is posted later than it is made, yet gives back the reservation it was made with."""
    pair = linked()
    quotas, book, free = pair.remote.quotas, pair.state.quotas, 10**9
    quotas.record("a", 0)
    held = [quotas.reserve("a", None, 100, 0, free, "") for _ in range(3)]
    for reservation in held:
        quotas.settle("a", 100, None, reservation)
        assert reservation.quota_bytes == reservation.disk_bytes == 0  # zeroed here at once
    # no other request: the helper thread sends them, with every byte they hold
    assert wait_until(lambda: book.usage("a", None, free).used == 300)
    assert book.usage("a", None, free) == Usage(300, 0, None, free)


def test_flush_sends_the_held_back_settles_at_once(
    linked: Callable[..., Linked], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker about to exit sends what it holds back (``flush_remote``), not a delay later."""
    monkeypatch.setattr(wire, "POST_DELAY", 60.0)
    pair = linked()
    quotas, book, free = pair.remote.quotas, pair.state.quotas, 10**9
    quotas.record("a", 0)
    quotas.settle("a", -5)
    time.sleep(0.1)
    assert book.usage("a", None, free).used == 0  # still held back
    flush_remote(pair.remote)
    assert wait_until(lambda: book.usage("a", None, free).used == -5)


def test_a_worker_gone_with_settles_held_back_has_its_users_measured_again() -> None:
    """Its reservations are given back and its users' figures dropped, sent or not."""
    state = LocalState.create(SETTINGS)
    mine, theirs = Pipe()
    thread = StateOwner(state).attach(mine, 0)
    ledger = RemoteLedger(PipeClient(theirs, on_lost=lambda: None))
    ledger.record("a", 0)
    ledger.record("b", 0)  # figures only: nothing of "b" can be held back
    reservation = ledger.reserve("a", None, 100, 0, 10**9, "")
    ledger.settle("a", 100, None, reservation)  # held back...
    theirs.close()  # ...and the worker is gone, perhaps before it went out
    thread.join(5)
    with pytest.raises(Unmeasured):  # measured again by the next session that needs them
        state.quotas.usage("a", None, 10**9)
    assert state.quotas.usage("b", None, 10**9).used == 0
    state.quotas.record("a", 100)
    assert state.quotas.usage("a", None, 10**9) == Usage(100, 0, None, 10**9)


def test_a_post_goes_out_while_another_thread_waits_for_a_reply() -> None:
    """An upload's helper thread posts a settle while the session's thread waits for a reply."""
    mine, theirs = Pipe()
    client = PipeClient(theirs)
    got: list[object] = []

    def supervisor() -> None:
        got.append(mine.recv())  # the call's request: its caller now waits for the reply
        got.append(mine.recv() if mine.poll(5) else None)  # the post, sent meanwhile
        mine.send((True, "answered"))

    thread = threading.Thread(target=supervisor)
    thread.start()
    caller = threading.Thread(target=lambda: got.append(client.call("bans", "is_banned", IP)))
    caller.start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    client.post("quotas", "settle", "a", 1, None, None)
    caller.join(10)
    thread.join(10)
    assert got == [
        ("bans", "is_banned", (IP,)),
        ("quotas", "settle", ("a", 1, None, None), "post"),
        "answered",
    ]
    theirs.close()
    mine.close()


def test_a_measurement_loses_to_figures_recorded_meanwhile(
    linked: Callable[..., Linked], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Worker B measures a home after worker A committed a file whose settle A still holds back.

    A's figures, recorded first, stay and A's settle completes them: B's
    measurement already saw A's file, so recording it would count it twice.
    """
    monkeypatch.setattr(wire, "POST_DELAY", 60.0)
    a = linked()
    b = linked(a.state)
    free = 10**9
    home = tmp_path / "home"
    home.mkdir()
    a.remote.quotas.record("u", 0, first=True)  # A measured the empty home
    reservation = a.remote.quotas.reserve("u", None, 5, 0, free, "")
    (home / "f").write_bytes(b"12345")  # A's upload is in place...
    a.remote.quotas.settle("u", 5, None, reservation)  # ...and its settle held back
    asked: list[str] = []

    def usage() -> Usage:
        if not asked:  # B's first question reached the ledger before A's record
            asked.append("u")
            raise Unmeasured("u")
        return b.remote.quotas.usage("u", None, free)

    measure = lambda: sum(p.stat().st_size for p in home.iterdir())  # noqa: E731
    account = HomeAccount(b.remote.quotas, "u", None, str(home), measure)
    assert account.ask(usage).used == 0  # A's figure, A's settle not arrived yet
    flush_remote(a.remote)
    assert wait_until(lambda: a.state.quotas.usage("u", None, free).reserved == 0)
    assert a.state.quotas.usage("u", None, free).used == 5 == measure()


def test_record_first_keeps_figures_already_there() -> None:
    """``record(first=True)`` sets figures only for a user the ledger has none for."""
    book = QuotaBook()
    book.record("u", 7, first=True)
    book.record("u", 9, first=True)
    assert book.usage("u", None, 100).used == 7
    book.record("u", 9)  # a plain record sets them
    assert book.usage("u", None, 100).used == 9
