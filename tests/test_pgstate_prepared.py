"""The sessions' round trips through libpq (:mod:`ftpserver.cluster.prepared`), on PostgreSQL.

Text parameters and arrays must reach PostgreSQL intact whatever they hold,
an SQL error must come back as psycopg's class for its SQLSTATE (the node
tells a missing node row, ``ForeignKeyViolation``, from an outage), a
connection that broke must be an ``OperationalError`` so that
:meth:`Database.run` tries another, and a statement dropped on the server
(``DEALLOCATE ALL``) must be prepared again.
"""

from __future__ import annotations

import psycopg
import pytest
from services import Postgres, find_pg_bin, free_port, pg_url, postgres  # noqa: F401

from ftpserver.cluster.database import Database
from ftpserver.cluster.prepared import Prepared, array

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(60)]

ECHO = Prepared("test_echo", "select $1::text, $2::bigint, array_length($3::text[], 1), $3::text[]")
FAIL = Prepared("test_fail", "select 1 / $1::int")
PID = Prepared("test_pid", "select pg_backend_pid()")


def test_text_and_arrays_arrive_intact(pg_url: str) -> None:  # noqa: F811
    awkward = ['a"b', "c\\d", "{x,y}", "", "NULL", "é ü", "10.0.0.1"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = ECHO(conn, "it's", 1 << 40, awkward)
        assert row is not None
        assert row[0] == "it's" and row[1] == str(1 << 40) and row[2] == str(len(awkward))
        parsed = conn.execute("select unnest(%s::text[])", (row[3],)).fetchall()
        assert [value for (value,) in parsed] == awkward
        assert array([]) == "{}"


def test_an_sql_error_is_psycopgs_class_for_it(pg_url: str) -> None:  # noqa: F811
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero, match="division by zero"):
            FAIL(conn, 0)
        assert FAIL(conn, 1) == ("1",)  # the connection is still usable


def test_a_dropped_statement_is_prepared_again(pg_url: str) -> None:  # noqa: F811
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert FAIL(conn, 1) == ("1",)
        conn.execute("deallocate all")
        assert FAIL(conn, 1) == ("1",)


def test_a_broken_connection_is_retried_on_another(pg_url: str) -> None:  # noqa: F811
    db = Database(pg_url)
    db.open()
    try:
        first = db.run(lambda conn: PID(conn))
        assert first is not None
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s::int)", (first[0],))
        again = db.run(lambda conn: PID(conn))  # the broken one is dropped, another answers
        assert again is not None and again != first
    finally:
        db.close()
