"""A home's kept partial uploads as a whole, on S3: sweeping the stale ones, measuring with them.

A kept partial upload is an open multipart upload plus its record object
under the home's ``.ftp-partial/`` (:mod:`ftpserver.storage.s3upload`); its
finished parts count towards the quota until it is resumed or dropped.
:func:`sweep_partials` drops those older than ``partial_upload_ttl`` and
aborts multipart uploads abandoned by a crash (no record, or a stale one);
:func:`measure_home` is the home's usage: its objects plus those parts.
"""

from __future__ import annotations

import contextlib
import time

from ftpserver.storage.paths import PARTIAL_DIR
from ftpserver.storage.s3client import StoreError, store_error
from ftpserver.storage.s3files import Home
from ftpserver.storage.s3partial import drop_partial, read_record

__all__ = ["measure_home", "sweep_partials"]


def sweep_partials(home: Home, max_age: float) -> int:
    """Drop kept partial uploads older than ``max_age``; abort abandoned multipart uploads.

    Returns how many kept partial uploads were dropped.
    """
    deadline = time.time() - max_age
    removed = 0
    kept: set[str] = set()
    for page in home.pages(f"{home.base}{PARTIAL_DIR}/", delimiter=False):
        for item in page.get("Contents", []):
            if item["LastModified"].timestamp() >= deadline:
                record = read_record(home, item["Key"])
                kept.update([record.upload_id] if record else [])
                continue
            with home.locked():
                home.settle(-drop_partial(home, item["Key"]))
            removed += 1
    client = home.client
    paginator = client.get_paginator("list_multipart_uploads")
    try:
        for page in paginator.paginate(Bucket=home.bucket, Prefix=home.base):
            for upload in page.get("Uploads", []):
                stale = upload["Initiated"].timestamp() < deadline
                if stale and upload["UploadId"] not in kept:
                    with contextlib.suppress(*StoreError):
                        client.abort_multipart_upload(
                            Bucket=home.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
    except StoreError as exc:
        raise store_error(exc, "/") from exc
    return removed


def measure_home(home: Home) -> int:
    """The sum of the home's object sizes, plus the finished parts of kept partial uploads."""
    partials = f"{home.base}{PARTIAL_DIR}/"
    total = 0
    for page in home.pages(home.base, delimiter=False):
        for item in page.get("Contents", []):
            if not item["Key"].startswith(partials):
                total += int(item["Size"])
                continue
            record = read_record(home, item["Key"])
            total += record.size if record else 0
    return total
