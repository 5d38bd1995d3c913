"""Tests for ftpserver.finishing: the helper thread of remote commits, without a server."""

from __future__ import annotations

import threading
import time

import pytest

from ftpserver import finishing
from ftpserver.finishing import Finisher

pytestmark = pytest.mark.timeout(30)


def _boom() -> None:
    raise OSError(5, "Input/output error")


def test_jobs_run_in_order_on_one_other_thread() -> None:
    finisher = Finisher()
    seen: list[tuple[int, str]] = []
    gate = threading.Event()
    first = finisher.submit(
        lambda: (gate.wait(5), seen.append((1, threading.current_thread().name)))
    )
    jobs = [
        finisher.submit(lambda n=n: seen.append((n, threading.current_thread().name)))
        for n in (2, 3)
    ]
    failed = finisher.submit(_boom)
    assert not first.done  # held at the gate: the session's thread goes on meanwhile
    gate.set()
    finisher.drain()
    assert first.done and all(job.done for job in jobs) and failed.done
    assert [n for n, _ in seen] == [1, 2, 3]
    assert {name for _, name in seen} == {"upload-finisher"}
    finisher.result(jobs[-1])
    with pytest.raises(OSError, match="Input/output"):
        finisher.result(failed)
    finisher.close()


def test_result_waits_for_a_slow_job() -> None:
    finisher = Finisher()
    job = finisher.submit(lambda: time.sleep(0.3))
    started = time.monotonic()
    finisher.result(job)
    assert job.done and time.monotonic() - started > 0.2
    finisher.close()


def test_without_a_thread_jobs_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task limit (no thread can start): every job runs on the caller's thread, in turn."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(finishing.threading.Thread, "start", refuse)
    finisher = Finisher()
    seen: list[str] = []
    job = finisher.submit(lambda: seen.append(threading.current_thread().name))
    assert job.done and seen == [threading.current_thread().name]
    failed = finisher.submit(_boom)
    assert failed.done
    with pytest.raises(OSError):
        finisher.result(failed)
    finisher.drain()
    finisher.close()


def test_an_inline_job_runs_here_after_the_jobs_before_it() -> None:
    """A local commit (``inline``) waits for the remote ones before it, then runs on this thread."""
    finisher = Finisher()
    seen: list[tuple[str, str]] = []
    gate = threading.Event()
    remote = finisher.submit(
        lambda: (gate.wait(5), seen.append(("remote", threading.current_thread().name)))
    )
    threading.Timer(0.2, gate.set).start()
    local = finisher.submit(
        lambda: seen.append(("local", threading.current_thread().name)), inline=True
    )
    assert remote.done and local.done  # the inline job waited for the one before it
    assert seen == [("remote", "upload-finisher"), ("local", threading.current_thread().name)]
    failed = finisher.submit(_boom, inline=True)
    with pytest.raises(OSError, match="Input/output"):
        finisher.result(failed)
    finisher.close()


def test_inline_jobs_alone_start_no_thread() -> None:
    finisher = Finisher()
    before = threading.active_count()
    for _ in range(3):
        finisher.submit(lambda: None, inline=True)
    assert threading.active_count() == before
    finisher.close()
