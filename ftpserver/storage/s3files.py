"""The S3 backend's handles: a home's account, an object open for reading.

* :class:`Home` is where one user's objects live (client, bucket, key prefix)
  with the quota ledger calls that go with it: an object store has no
  ``flock``, so the lock that makes a change and its report to the ledger one
  step is per home within this process (the ledger itself is shared).
* :class:`S3ReadHandle` is one version of an object (pinned by its ETag: a
  ranged GET with ``If-Match``), read with :meth:`~S3ReadHandle.readinto`
  (no file descriptor, so no ``sendfile``).  Its BLAKE3 digest is the
  object's ``blake3`` metadata (objects the server wrote in one request),
  or a ``blake3`` tag bound to the ETag it was computed for (multipart
  uploads, whose metadata is fixed before the digest is known, and
  objects hashed once while sent); an object with neither is hashed while
  it is sent.
* :func:`object_mtime` is an object's modification time: S3 cannot set
  ``LastModified``, so a time set by ``touch`` (:meth:`Home.set_mtime`) is
  kept as ``mtime`` metadata, written by a CopyObject of the object onto
  itself (the bytes and their digest stay) and reported where present.

Uploads are in :mod:`ftpserver.storage.s3upload`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ftpproto.digest import is_hexdigest
from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.state.ledger import QuotaLedger
from ftpserver.storage.base import ClosedOnExit
from ftpserver.storage.homeaccount import HomeAccount
from ftpserver.storage.s3client import StoreError, error_code, store_error

__all__ = [
    "COPY_LIMIT",
    "DIGEST_KEY",
    "ETAG_TAG",
    "MTIME_KEY",
    "Home",
    "S3ReadHandle",
    "digest_tags",
    "object_mtime",
]

log = logging.getLogger("ftpserver")
DIGEST_KEY = "blake3"  # metadata key and tag key of an object's digest
ETAG_TAG = "blake3-etag"  # the ETag the digest tag was computed for
MTIME_KEY = "mtime"  # metadata key of a modification time set by touch
COPY_LIMIT = 5 * 1024**3  # the largest object one CopyObject may copy
_HEADS_AT_ONCE = 16  # HEAD requests in flight while a listing looks up times
_locks_lock = threading.Lock()
_locks: dict[str, threading.Lock] = {}


def digest_tags(hexdigest: str, etag: str) -> dict[str, Any]:
    """The ``Tagging`` argument that records ``hexdigest`` for the version ``etag``."""
    tags = [{"Key": DIGEST_KEY, "Value": hexdigest}, {"Key": ETAG_TAG, "Value": etag.strip('"')}]
    return {"TagSet": tags}


def object_mtime(head: dict[str, Any]) -> int:
    """An object's modification time: its ``mtime`` metadata if set, else ``LastModified``."""
    stamp = (head.get("Metadata") or {}).get(MTIME_KEY)
    if isinstance(stamp, str) and stamp.isdigit():
        return int(stamp)
    return int(head["LastModified"].timestamp())


class Home(HomeAccount):
    """One user's key prefix in a bucket, and the ledger calls made under its lock."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        base: str,
        ledger: QuotaLedger,
        user: str,
        quota: int | None,
        measure: Callable[[], int],
    ) -> None:
        super().__init__(ledger, user, quota, f"s3://{bucket}/{base}", measure)
        self.client = client
        self.bucket = bucket
        self.base = base  # "PREFIX/USER/": every key of the home starts with it

    @contextlib.contextmanager
    def locked(self) -> Any:
        """Hold the home's lock in this process (not re-entrant)."""
        with _locks_lock:
            lock = _locks.setdefault(self.root, threading.Lock())
        with lock:
            yield

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD answer, or None if there is no such object."""
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except StoreError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise store_error(exc, key[len(self.base) - 1 :]) from exc

    def pages(self, prefix: str, delimiter: bool) -> Iterator[dict[str, Any]]:
        """The ListObjectsV2 pages under ``prefix`` (with ``/`` as delimiter if asked)."""
        paginator = self.client.get_paginator("list_objects_v2")
        extra = {"Delimiter": "/"} if delimiter else {}
        try:
            yield from paginator.paginate(Bucket=self.bucket, Prefix=prefix, **extra)
        except StoreError as exc:
            raise store_error(exc, "/" + prefix[len(self.base) :]) from exc

    def size_of(self, key: str) -> int:
        """The size of the object ``key``; 0 if there is none."""
        head = self.head(key)
        return int(head["ContentLength"]) if head else 0

    def heads(self, keys: Iterable[str]) -> list[dict[str, Any] | None]:
        """:meth:`head` of each key, a few requests at once (a listing's times)."""
        keys = list(keys)
        if len(keys) < 2:
            return [self.head(key) for key in keys]
        with ThreadPoolExecutor(min(_HEADS_AT_ONCE, len(keys))) as pool:
            return list(pool.map(self.head, keys))

    def set_mtime(self, key: str, head: dict[str, Any], mtime: int, subject: str) -> None:
        """Give the object ``key`` (as ``head`` found it) the ``mtime`` metadata.

        A CopyObject onto itself with new metadata, pinned to the ETag seen
        (an object replaced meanwhile is FILE_CHANGED, never given the old
        one's digest); the digest known for those bytes goes along as
        metadata, as the ETag (and so an ETag-bound digest tag) changes.
        """
        metadata = dict(head.get("Metadata") or {})
        metadata[MTIME_KEY] = str(mtime)
        known = S3ReadHandle(self, key, head, subject).stored_digest()
        if known:
            metadata[DIGEST_KEY] = known
        source = {"Bucket": self.bucket, "Key": key}
        args: dict[str, Any] = {
            "Metadata": metadata,
            "MetadataDirective": "REPLACE",
            "CopySourceIfMatch": head["ETag"],
        }
        if head.get("ContentType"):
            args["ContentType"] = head["ContentType"]
        try:
            if int(head["ContentLength"]) <= COPY_LIMIT:
                self.client.copy_object(Bucket=self.bucket, Key=key, CopySource=source, **args)
            else:
                self.client.copy(source, self.bucket, key, ExtraArgs=args)
        except StoreError as exc:
            if error_code(exc) in ("PreconditionFailed", "412"):
                raise ProtocolError(
                    ErrorCode.FILE_CHANGED, f"file changed while its time was set: {subject}"
                ) from exc
            raise store_error(exc, subject) from exc


class S3ReadHandle(ClosedOnExit):
    """One version of an object, open for reading (a ReadHandle)."""

    def __init__(self, home: Home, key: str, head: dict[str, Any], subject: str) -> None:
        self._home = home
        self._key = key
        self._subject = subject
        self._size = int(head["ContentLength"])
        self._etag = str(head["ETag"])
        metadata = head.get("Metadata") or {}
        known = metadata.get(DIGEST_KEY)
        self._digest: str | None = known if isinstance(known, str) and is_hexdigest(known) else None
        self._looked_up = self._digest is not None
        self._position = 0
        self._body: Any = None
        self._replaced = False  # a read found the object replaced (If-Match failed)

    @property
    def size(self) -> int:
        return self._size

    @property
    def version(self) -> tuple[int, ...]:
        tag = hashlib.blake2s(self._etag.encode()).digest()[:8]
        return (self._size, int.from_bytes(tag, "big"))

    def fileno(self) -> int | None:
        return None

    def _open(self) -> Any:
        home = self._home
        try:
            answer = home.client.get_object(
                Bucket=home.bucket,
                Key=self._key,
                Range=f"bytes={self._position}-",
                IfMatch=self._etag,
            )
        except StoreError as exc:
            if error_code(exc) in ("PreconditionFailed", "412"):
                self._replaced = True  # the reader sees a short file, then FILE_CHANGED
                return None
            raise store_error(exc, self._subject) from exc
        return answer["Body"]

    def readinto(self, buffer: memoryview, /) -> int:
        if self._position >= self._size or not len(buffer):
            return 0
        if self._body is None:
            self._body = self._open()
            if self._body is None:
                return 0
        try:
            n = int(self._body.readinto(buffer))
        except (OSError, *StoreError) as exc:
            self._drop_body()
            raise OSError(f"reading from the object store failed: {exc}") from exc
        self._position += n
        return n

    def seek(self, offset: int, /) -> None:
        if offset != self._position:
            self._drop_body()
            self._position = offset

    def changed(self) -> bool:
        # Every GET is pinned to the opened version (If-Match on its ETag), so the
        # bytes read are that version's unless a GET found it replaced.
        return self._replaced

    def stored_digest(self) -> str | None:
        if not self._looked_up:
            self._looked_up = True
            home = self._home
            with contextlib.suppress(*StoreError):
                answer = home.client.get_object_tagging(Bucket=home.bucket, Key=self._key)
                tags = {t["Key"]: t["Value"] for t in answer.get("TagSet", [])}
                known = tags.get(DIGEST_KEY, "")
                if tags.get(ETAG_TAG) == self._etag.strip('"') and is_hexdigest(known):
                    self._digest = known
        return self._digest

    def store_digest(self, hexdigest: str) -> None:
        self._digest = hexdigest
        home = self._home
        try:
            home.client.put_object_tagging(
                Bucket=home.bucket, Key=self._key, Tagging=digest_tags(hexdigest, self._etag)
            )
        except StoreError as exc:  # the digest is an optimisation: the next reader hashes again
            log.debug("could not tag %s with its digest: %s", self._key, exc)

    def _drop_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            with contextlib.suppress(Exception):
                body.close()

    def close(self) -> None:
        self._drop_body()
