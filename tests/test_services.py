"""The throwaway PostgreSQL the cluster tests run on (tests/services.py)."""

from __future__ import annotations

import pytest
from services import Postgres, pg_url, postgres  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def test_a_fresh_database_answers_and_runs_as_an_unprivileged_user(
    postgres: Postgres,  # noqa: F811
    pg_url: str,  # noqa: F811
) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("select current_database(), version()").fetchone()
        assert row is not None and row[0] != "postgres" and "PostgreSQL" in row[1]
        tables = conn.execute("select count(*) from pg_tables where schemaname = 'public'")
        assert tables.fetchone() == (0,)
    assert postgres.data.stat().st_uid != 0
