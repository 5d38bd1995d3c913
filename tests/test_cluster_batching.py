"""The batcher that sends a node's session starts and ends to PostgreSQL together.

Threads calling at once must each get the answer to their own request,
requests that arrive while a batch is in flight must go in the next one
(not wait for a timer, and not be lost), a lone call must be sent at once,
and a failed batch must fail each of its callers.  The database side
(``ft_open_many``, ``ft_release_many``) is tested through the node in
``test_pgstate.py`` and ``test_pgstate_costs.py``.
"""

from __future__ import annotations

import threading
import time

import pytest

from ftpserver.cluster.batching import Batcher

pytestmark = pytest.mark.timeout(60)


def test_a_lone_call_is_sent_at_once_and_alone() -> None:
    sent: list[list[int]] = []

    def send(items: list[int]) -> list[int]:
        sent.append(items)
        return [i * 10 for i in items]

    batcher = Batcher(send)
    assert batcher(1) == 10
    assert batcher(2) == 20
    assert sent == [[1], [2]]


def test_calls_during_a_round_trip_go_together_in_the_next_one() -> None:
    sent: list[list[int]] = []
    first_in_flight = threading.Event()
    let_go = threading.Event()

    def send(items: list[int]) -> list[str]:
        sent.append(items)
        if len(sent) == 1:
            first_in_flight.set()
            assert let_go.wait(30)
        return [f"answer {i}" for i in items]

    batcher = Batcher(send)
    answers: dict[int, str] = {}

    def call(i: int) -> None:
        answers[i] = batcher(i)

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert first_in_flight.wait(30)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 21)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 30
    while len(batcher._queue) < 20 and time.monotonic() < deadline:  # all queued behind it
        time.sleep(0.01)
    let_go.set()
    for thread in [first, *others]:
        thread.join(30)
    assert answers == {i: f"answer {i}" for i in range(21)}
    assert sent[0] == [0]
    assert sorted(sent[1]) == list(range(1, 21)) and len(sent) == 2


def test_many_threads_each_get_their_own_answer() -> None:
    batches: list[int] = []

    def send(items: list[int]) -> list[int]:
        batches.append(len(items))
        time.sleep(0.002)  # a round trip
        return [-i for i in items]

    batcher = Batcher(send, most=8)
    wrong: list[tuple[int, int]] = []

    def call(base: int) -> None:
        for i in range(base, base + 50):
            answer = batcher(i)
            if answer != -i:
                wrong.append((i, answer))

    threads = [threading.Thread(target=call, args=(1000 * t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not wrong
    assert sum(batches) == 16 * 50
    assert max(batches) <= 8  # no batch over its limit
    assert len(batches) < 16 * 50  # and some went together
    assert not batcher._busy and not batcher._queue


def test_a_failed_batch_fails_each_caller_and_the_next_one_is_sent() -> None:
    in_flight = threading.Event()
    let_go = threading.Event()
    calls = 0

    def send(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            in_flight.set()
            assert let_go.wait(30)
            return [1 for _ in items]
        if calls == 2:
            raise ConnectionError("the database went away")
        return [2 for _ in items]

    batcher = Batcher(send)
    outcomes: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            outcomes[i] = batcher(i)
        except ConnectionError as exc:
            outcomes[i] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert in_flight.wait(30)
    failing = [threading.Thread(target=call, args=(i,)) for i in (1, 2, 3)]
    for thread in failing:
        thread.start()
    deadline = time.monotonic() + 30
    while len(batcher._queue) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    let_go.set()
    for thread in [first, *failing]:
        thread.join(30)
    assert outcomes[0] == 1
    assert all(isinstance(outcomes[i], ConnectionError) for i in (1, 2, 3))
    assert batcher(4) == 2  # the batcher goes on


def test_a_wrong_number_of_answers_is_an_error_for_every_caller() -> None:
    batcher: Batcher[int, int] = Batcher(lambda items: [])
    with pytest.raises(RuntimeError, match="0 answers to a batch of 1"):
        batcher(1)
