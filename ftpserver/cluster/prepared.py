"""Statements prepared once on each pooled connection and run through libpq directly.

The sessions' hot path (a slot taken at each session start and given back at
its end, :mod:`ftpserver.cluster.pgstate`): :class:`Prepared` goes to libpq
(``conn.pgconn``) without psycopg's adaptation of parameters and rows, which
cost a node about a hundred microseconds of CPU per round trip
(docs/PERFORMANCE.md).  The parameters go as text (PostgreSQL infers their
types from the statement; a list goes as an array of text); rows come back
as text, None for NULL.  Errors are psycopg's: :class:`psycopg.OperationalError`
when the connection broke (:meth:`~ftpserver.cluster.database.Database.run`
tries another), the class of the SQLSTATE otherwise.  Call it inside
:meth:`~ftpserver.cluster.database.Database.run`.
"""

from __future__ import annotations

import threading
import weakref

import psycopg
from psycopg import pq

__all__ = ["Prepared", "array"]

Connection = psycopg.Connection[tuple[object, ...]]
Param = str | int | list[str]

# The statements prepared on each connection (:class:`Prepared`).
_PREPARED: weakref.WeakKeyDictionary[Connection, set[bytes]] = weakref.WeakKeyDictionary()
_PREPARED_LOCK = threading.Lock()


class Prepared:
    """One statement, prepared once on each connection and run with text parameters."""

    def __init__(self, name: str, query: str) -> None:
        self.name = name.encode()
        self.query = query.encode()

    def __call__(self, conn: Connection, *params: Param) -> tuple[str | None, ...] | None:
        """The first row of the result (None without one)."""
        rows = self.rows(conn, *params)
        return rows[0] if rows else None

    def rows(self, conn: Connection, *params: Param) -> list[tuple[str | None, ...]]:
        """Every row of the result; a list parameter goes as an array of text."""
        values = [(array(p) if isinstance(p, list) else str(p)).encode() for p in params]
        with conn.lock:
            result = self._execute(conn, values)
        fields = range(result.nfields)
        cells = ([result.get_value(row, i) for i in fields] for row in range(result.ntuples))
        return [tuple(None if cell is None else cell.decode() for cell in row) for row in cells]

    def _execute(self, conn: Connection, values: list[bytes]) -> pq.abc.PGresult:
        with _PREPARED_LOCK:
            done = _PREPARED.setdefault(conn, set())
        pgconn = conn.pgconn
        if self.name not in done:
            _checked(conn, pgconn.prepare(self.name, self.query))
            done.add(self.name)
        result = pgconn.exec_prepared(self.name, values)
        # 26000: no such statement (psycopg's DEALLOCATE ALL after a rolled-back
        # transaction on a connection where it prepared statements of its own)
        if result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000":
            _checked(conn, pgconn.prepare(self.name, self.query))
            result = pgconn.exec_prepared(self.name, values)
        return _checked(conn, result)


def array(items: list[str]) -> str:
    """``items`` as a PostgreSQL array literal of text."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def _checked(conn: Connection, result: pq.abc.PGresult) -> pq.abc.PGresult:
    """``result``, or psycopg's exception for its error (as psycopg's own calls raise it)."""
    if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        return result
    pgconn = conn.pgconn
    if pgconn.status == pq.ConnStatus.BAD:  # libpq gives no SQLSTATE for a broken socket
        message = (result.error_message or pgconn.error_message).decode(errors="replace")
        raise psycopg.OperationalError(message.strip() or "the connection to the database broke")
    raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
