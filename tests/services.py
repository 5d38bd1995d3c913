"""Fixtures for the cluster tests: a throwaway PostgreSQL (see ``bench/services.py``).

* :func:`require` skips a test whose service is missing, with the reason,
  unless ``FT_REQUIRE_SERVICES=1`` (CI), where it fails instead: CI can
  never pass by skipping.
* ``postgres`` (one per test session) and ``pg_url`` (a fresh database per
  test) are fixtures: import them into a test module.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

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
]

REQUIRED = os.environ.get("FT_REQUIRE_SERVICES", "").strip().lower() in ("1", "true", "yes")


def require(found: object, reason: str) -> None:
    """Skip (by hand) or fail (``FT_REQUIRE_SERVICES=1``) unless ``found``."""
    if found:
        return
    if REQUIRED:
        pytest.fail(f"{reason} (FT_REQUIRE_SERVICES=1: a missing service is a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster for the test session (skips or fails when there is none)."""
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


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """The URL of a fresh, empty database for one test."""
    return postgres.create_database()
