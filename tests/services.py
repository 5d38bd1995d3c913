"""Fixtures for the cluster tests: a throwaway PostgreSQL (see ``bench/services.py``).

* :func:`require` skips a test whose service is missing, with the reason,
  unless ``FT_REQUIRE_SERVICES=1`` (CI), where it fails instead: CI can
  never pass by skipping.
* ``postgres`` (one per test session) and ``pg_url`` (a fresh database per
  test) are fixtures: import them into a test module.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from required import require

from bench.services import Postgres, find_haproxy, find_pg_bin, free_port, start_haproxy

__all__ = [
    "Postgres",
    "find_haproxy",
    "find_pg_bin",
    "free_port",
    "pg_url",
    "postgres",
    "require",
    "start_haproxy",
    "started_postgres",
]


def started_postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster, stopped after use (skips or fails when there is none).

    The body of the ``postgres`` fixture, and of a module's own one.
    """
    bin_dir = find_pg_bin()
    require(bin_dir, "PostgreSQL is not installed (no initdb/pg_ctl; apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg is not installed (pip install '.[cluster]')")
    assert bin_dir is not None
    server = Postgres(bin_dir)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        server.close()
        require(False, f"the test PostgreSQL did not start: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster for the test session (skips or fails when there is none)."""
    yield from started_postgres()


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """The URL of a fresh, empty database for one test."""
    return postgres.create_database()
