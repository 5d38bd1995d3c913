"""Requests of many session threads sent to the shared state together, in one round trip.

A session start takes a slot and a session end gives it back, each a round
trip to PostgreSQL.  When many sessions start (or end) at once on a node,
:class:`Batcher` sends theirs together: the first thread to arrive while no
batch is in flight sends its own request at once (a lone session waits for
nothing more than before); those arriving meanwhile queue, and when the
round trip ends, its answers go to their threads and the first queued
thread sends everything queued in one round trip.  Each thread waits for its
own answer as it did for its own round trip, so nothing is answered later
than it would have been; there is no timer.  The database does the work of a
batch under one lock and one transaction (``ft_open_many``,
``ft_release_many``), which is where the CPU goes otherwise (docs/PERFORMANCE.md).

A failed batch fails each of its requests with the same exception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["MOST", "Batcher"]

K = TypeVar("K")
R = TypeVar("R")
MOST = 256  # requests in one batch at most


class _Request(Generic[K, R]):
    """One thread's request, its answer, and the lock it waits on."""

    __slots__ = ("error", "item", "lead", "result", "wake")

    def __init__(self, item: K) -> None:
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.lead = False  # woken to send the queued batch, not with an answer
        self.wake = threading.Lock()
        self.wake.acquire()  # released once: answered, or this thread sends next

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set with the batch's answers


class Batcher(Generic[K, R]):
    """``batcher(item)``: ``send([items])[i]`` for this item, sent along with those queued."""

    def __init__(self, send: Callable[[list[K]], Sequence[R]], most: int = MOST) -> None:
        self.send = send  # one round trip: an answer per item, in order
        self.most = most
        self._lock = threading.Lock()  # guards _queue and _busy
        self._queue: list[_Request[K, R]] = []
        self._busy = False  # a batch is in flight, or its sender is about to take the queue

    def __call__(self, item: K) -> R:
        request: _Request[K, R] = _Request(item)
        with self._lock:
            self._queue.append(request)
            lead, self._busy = not self._busy, True
        if not lead:
            request.wake.acquire()  # answered, or made the next sender
            if not request.lead:
                return request.outcome()
        self._send_queued()
        return request.outcome()

    def _send_queued(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self.most], self._queue[self.most :]
        try:
            results = self.send([r.item for r in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} answers to a batch of {len(batch)}")
            for request, result in zip(batch, results, strict=True):
                request.result = result
        except BaseException as exc:  # each request raises it in its own thread
            for request in batch:
                request.error = exc
        with self._lock:
            following = self._queue[0] if self._queue else None
            if following is None:
                self._busy = False
            else:
                following.lead = True
        for request in batch:
            request.wake.release()
        if following is not None:
            following.wake.release()
