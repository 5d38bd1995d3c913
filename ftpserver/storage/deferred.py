"""Upload reservations that a session confirms later, several together (pipelined offers).

Reserving space asks the quota ledger, which with worker processes lives in
the supervisor: a round trip over a pipe per upload.  A session with many
uploads offered at once (:mod:`ftpserver.batch`) makes them inside
:func:`collecting`: :meth:`~ftpserver.storage.homeaccount.HomeAccount.reserve`
then sends each request without waiting and returns the reservation the
ledger will hold if it agrees (the same figures it computes), and the
session calls the collected confirmation before it tells the client the
file is ready.  A confirmation raises the ledger's refusal (and zeroes the
reservation: nothing is held); until it has run, the upload must be
neither used nor given up.  Ledgers that answer at once (one process, the
cluster's database) are asked as before, and nothing is collected.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Confirm", "collecting", "collector"]

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
