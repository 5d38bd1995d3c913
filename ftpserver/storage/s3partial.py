"""A home's kept partial uploads on S3: their records, and the hasher states of this process.

A kept partial upload is an open multipart upload plus a small JSON record
object under the home's ``.ftp-partial/`` (:class:`PartialRecord`: the key,
the upload id, the finished parts, their size, the BLAKE3 digest of those
bytes, and the private key the upload is staged at, if it is).  The BLAKE3
state at the end of those bytes is kept in the memory of the process that
received them (:data:`checkpoints`), for a resume there, and, when it was
hashed with :mod:`ftpserver.storage.b3state`, saved in the record too, for a
resume by any process; a staged upload can be resumed by any process as well
(:mod:`ftpserver.storage.s3upload`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ftpserver.storage.s3client import StoreError
from ftpserver.storage.s3files import Home

__all__ = [
    "STAGE_SUFFIX",
    "Checkpoint",
    "CountingHasher",
    "KnownDigest",
    "PartialRecord",
    "ReadBack",
    "checkpoints",
    "checkpoints_lock",
    "drop_partial",
    "read_record",
    "record_body",
]


class PartialRecord(NamedTuple):
    """A kept multipart upload: key, id, finished parts ``(number, etag)``, size, prefix digest."""

    key: str
    upload_id: str
    parts: list[tuple[int, str]]
    size: int
    digest: str
    stage: str = ""  # the private key the multipart upload is at, if not ``key``
    state: bytes = b""  # the BLAKE3 state after ``size`` bytes (ftpserver.storage.b3state)
    tag: str = ""  # what ``state`` is valid for (b3state.state_tag)


class Checkpoint(NamedTuple):
    """Where a kept upload can go on in this process: its id, size, BLAKE3 state at the end."""

    upload_id: str
    size: int
    hasher: Any  # the BLAKE3 state after ``size`` bytes


checkpoints: dict[str, Checkpoint] = {}  # record key -> state, for resuming in this process
checkpoints_lock = threading.Lock()


STAGE_SUFFIX = ".upload"  # a staged upload's key: the record's key, an id, this suffix


def record_body(record: PartialRecord) -> bytes:
    """The record object's content (what :func:`read_record` reads back)."""
    data = record._asdict()
    data["state"] = base64.b64encode(record.state).decode()
    return json.dumps(data).encode()


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
            base64.b64decode(str(data.get("state", "")), validate=True),
            str(data.get("tag", "")),
        )
    except (*StoreError, ValueError, KeyError, TypeError):  # binascii.Error is a ValueError
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


class ReadBack:
    """The digest of a resume taken over without a BLAKE3 state: ``read()``, called once.

    The bytes received go to the store only; ``read`` (the upload's
    ``read_back``) completes the staged upload and hashes it as stored.
    """

    def __init__(self, read: Callable[[], str]) -> None:
        self.read = read
        self.digest = ""

    def update(self, data: bytes | bytearray | memoryview, /) -> object:
        return None

    def hexdigest(self) -> str:
        if not self.digest:
            self.digest = self.read()
        return self.digest
