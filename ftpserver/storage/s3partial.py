"""A home's kept partial uploads on S3: their records, and the hasher states of this process.

A kept partial upload is an open multipart upload plus a small JSON record
object under the home's ``.ftp-partial/`` (:class:`PartialRecord`: the key,
the upload id, the finished parts, their size, the BLAKE3 digest of those
bytes, and the private key the upload is staged at, if it is).  The BLAKE3
state at the end of those bytes cannot be stored: it stays in the memory of
the process that received them (:data:`checkpoints`), for a resume there;
a staged upload can be resumed by any process (:mod:`ftpserver.storage.s3upload`).
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, NamedTuple

from ftpserver.storage.s3client import StoreError
from ftpserver.storage.s3files import Home

__all__ = [
    "STAGE_SUFFIX",
    "Checkpoint",
    "CountingHasher",
    "KnownDigest",
    "PartialRecord",
    "checkpoints",
    "checkpoints_lock",
    "drop_partial",
    "read_record",
]


class PartialRecord(NamedTuple):
    """A kept multipart upload: key, id, finished parts ``(number, etag)``, size, prefix digest."""

    key: str
    upload_id: str
    parts: list[tuple[int, str]]
    size: int
    digest: str
    stage: str = ""  # the private key the multipart upload is at, if not ``key``


class Checkpoint(NamedTuple):
    """Where a kept upload can go on in this process: its id, size, BLAKE3 state at the end."""

    upload_id: str
    size: int
    hasher: Any  # the BLAKE3 state after ``size`` bytes


checkpoints: dict[str, Checkpoint] = {}  # record key -> state, for resuming in this process
checkpoints_lock = threading.Lock()


STAGE_SUFFIX = ".upload"  # a staged upload's key: the record's key, an id, this suffix


def read_record(home: Home, record_key: str) -> PartialRecord | None:
    """The partial upload recorded at ``record_key``, or None (also for a staged object)."""
    if record_key.endswith(STAGE_SUFFIX):
        return None
    try:
        body = home.client.get_object(Bucket=home.bucket, Key=record_key)["Body"].read()
        data = json.loads(body)
        parts = [(int(n), str(etag)) for n, etag in data["parts"]]
        return PartialRecord(
            str(data["key"]),
            str(data["upload_id"]),
            parts,
            int(data["size"]),
            str(data["digest"]),
            str(data.get("stage", "")),
        )
    except (*StoreError, ValueError, KeyError, TypeError):
        return None


def drop_partial(home: Home, record_key: str) -> int:
    """Abort a kept partial upload and remove its record; the bytes it held (uncounted here).

    A staged object left by a crash between its completion and its copy is removed too.
    """
    record = read_record(home, record_key)
    if record is None:
        if record_key.endswith(STAGE_SUFFIX):
            home.client.delete_object(Bucket=home.bucket, Key=record_key)
        return 0
    with contextlib.suppress(*StoreError):
        home.client.abort_multipart_upload(
            Bucket=home.bucket, Key=record.stage or record.key, UploadId=record.upload_id
        )
    home.client.delete_object(Bucket=home.bucket, Key=record_key)
    with checkpoints_lock:
        checkpoints.pop(record_key, None)
    return record.size


class KnownDigest:
    """A prefix digest known from a record (no state to continue from)."""

    def __init__(self, hexdigest: str) -> None:
        self.digest = hexdigest

    def hexdigest(self) -> str:
        return self.digest


class CountingHasher:
    """The transfer's BLAKE3 hasher, counting the bytes it has seen (for part checkpoints)."""

    def __init__(self, inner: Any, count: int = 0) -> None:
        self.inner = inner
        self.count = count

    def update(self, data: bytes | bytearray | memoryview, /) -> object:
        self.count += len(data)
        return self.inner.update(data)

    def hexdigest(self) -> str:
        return str(self.inner.hexdigest())
