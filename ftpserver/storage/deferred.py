"""Upload reservations that a session confirms later, several together (pipelined offers).

Reserving space asks the quota ledger, which with worker processes lives in
the supervisor: a round trip over a pipe per upload.  A session with many
uploads offered at once (:mod:`ftpserver.batch`) makes them inside
:func:`collecting`: :meth:`~ftpserver.storage.localfiles.HomeAccount.reserve`
then sends each request without waiting and returns the reservation the
ledger will hold if it agrees (the same figures it computes), and the
session calls the collected confirmation before it tells the client the
file is ready.  A confirmation raises the ledger's refusal (and zeroes the
reservation: nothing is held); until it has run, the upload must be
neither used nor given up.  Ledgers that answer at once (one process, the
cluster's database) are asked as before, and nothing is collected.

In the same way a session committing pipelined uploads holds back the
ledger changes that need no answer (:func:`holding_posts`): they go with
the next reservation, or when the session calls :func:`release_posts`
before it waits for its client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = [
    "Confirm",
    "collecting",
    "collector",
    "hold_back",
    "holding_posts",
    "release_posts",
]

Confirm = Callable[[], None]

_local = threading.local()


@contextmanager
def collecting() -> Iterator[list[Confirm]]:
    """Collect, for this thread, the confirmations of the reservations made in the block."""
    confirms: list[Confirm] = []
    previous = getattr(_local, "confirms", None)
    _local.confirms = confirms
    try:
        yield confirms
    finally:
        _local.confirms = previous


def collector() -> list[Confirm] | None:
    """Where this thread collects confirmations now; None outside :func:`collecting`."""
    confirms: list[Confirm] | None = getattr(_local, "confirms", None)
    return confirms


@contextmanager
def holding_posts() -> Iterator[None]:
    """Let the ledger hold back, in this thread, what it posts inside the block."""
    previous = getattr(_local, "holding", False)
    _local.holding = True
    try:
        yield
    finally:
        _local.holding = previous


def hold_back(send: Callable[[], None]) -> bool:
    """Inside :func:`holding_posts`: remember ``send`` for :func:`release_posts`; True if held."""
    if not getattr(_local, "holding", False):
        return False
    sends: list[Callable[[], None]] = _local.__dict__.setdefault("sends", [])
    sends.append(send)
    return True


def release_posts() -> None:
    """Send what this thread's ledgers hold back."""
    sends: list[Callable[[], None]] | None = getattr(_local, "sends", None)
    while sends:
        sends.pop()()
