"""Skip or fail a test whose outside service is missing (PostgreSQL, S3, haproxy, ...).

:func:`require` skips with the reason by hand, and fails instead under
``FT_REQUIRE_SERVICES=1`` (CI), so that CI can never pass by skipping.
Re-exported by ``services`` and ``s3service``.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["REQUIRED", "require"]

REQUIRED = os.environ.get("FT_REQUIRE_SERVICES", "").strip().lower() in ("1", "true", "yes")


def require(found: object, reason: str) -> None:
    """Skip (by hand) or fail (``FT_REQUIRE_SERVICES=1``) unless ``found``."""
    if found:
        return
    if REQUIRED:
        pytest.fail(f"{reason} (FT_REQUIRE_SERVICES=1: a missing service is a failure)")
    pytest.skip(reason)
