"""An upload to S3: a multipart upload that becomes the object only when verified.

The bytes go into a buffer; each time it holds ``part_size`` bytes it is sent
as one part by a helper thread while the next part arrives, with at most four
parts in flight (so a transfer holds about five parts of memory, whatever
the file size).  An upload of up to two parts (its size is known at
:meth:`S3Upload.start`) is held for one PutObject at commit: one request,
not four or five.  Either way the object appears whole or not at all, only
after the client's digest matched: a reader sees the old object or the new.

The BLAKE3 digest goes with the object: as ``blake3`` metadata for a
one-request upload, as a tag bound to the ETag for a multipart one (its
metadata is fixed before the digest is known).

A connection lost mid-upload of one request keeps nothing (a resume starts
at 0: at most two parts are sent again).  A connection lost mid-upload of
several parts keeps the multipart upload open with its
finished parts as the *partial upload* of the target: a small record object
under the home's ``.ftp-partial/`` (upload id, parts, size, prefix digest)
that ``partial`` reports.  A resuming ``put`` with that offset and prefix
digest continues it from the BLAKE3 state at the end of those parts: kept in
this process's memory, and saved in the record when libblake3 is there
(:mod:`~ftpserver.storage.b3state`), so that any process or node, also after
a restart, goes on from it.  Without libblake3 another process cannot have
that state (the store cannot give back the bytes of an unfinished upload),
so in a cluster (``stage``) a multipart upload is made at a private key
under ``.ftp-partial/`` and copied into place once verified: a resume
elsewhere whose prefix digest matches the record continues it, and the
digest of the whole file is that of the staged object, read back
(:class:`~ftpserver.storage.s3partial.ReadBack`); otherwise it starts at 0.
Abandoned multipart uploads are aborted by the sweeper after
``partial_upload_ttl`` (:meth:`S3Storage.remove_stale_partials`).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from ftpproto.digest import READ_PIECE, Hasher, new_hasher
from ftpproto.handshake import Resume, upload_start
from ftpserver.state.ledger import Reservation
from ftpserver.storage.b3state import SavedHasher, restore, saveable_hasher, state_tag
from ftpserver.storage.base import AbortedOnExit
from ftpserver.storage.s3client import StoreError, store_error
from ftpserver.storage.s3files import COPY_LIMIT, DIGEST_KEY, Home, digest_tags
from ftpserver.storage.s3partial import (
    STAGE_SUFFIX,
    Checkpoint,
    CountingHasher,
    KnownDigest,
    PartialRecord,
    ReadBack,
    checkpoints,
    checkpoints_lock,
    drop_partial,
    read_record,
    record_body,
)

__all__ = ["S3Upload"]

_IN_FLIGHT = 4  # parts uploading at once: the store is faster with a few requests in flight


class S3Upload(AbortedOnExit):
    """An upload to ``key`` (see :class:`~ftpserver.storage.base.UploadHandle`).

    With ``stage`` a multipart upload is made at a private key (see the module docstring).
    """

    remote_commit = True  # the commit is a request to the store: see UploadHandle

    def __init__(
        self,
        home: Home,
        key: str,
        record_key: str,
        part_size: int,
        subject: str,
        stage: bool = False,
    ) -> None:
        self.home = home
        self.key = key
        saveable = saveable_hasher()
        self._hasher = CountingHasher(saveable or new_hasher())
        stage = stage and saveable is None  # a saved state lets any process resume: no copy
        # Where a multipart upload goes: the key itself, or a private one of this upload's own.
        self.target = f"{record_key}.{uuid.uuid4().hex}{STAGE_SUFFIX}" if stage else key
        self._staged = False  # the staged multipart upload was completed (an object at target)
        self._read_back = False
        self.record_key = record_key
        self.part_size = part_size
        self._one_request = False  # up to two parts: held for one PutObject
        self.subject = subject
        self.keep_partial = False
        self.reservation: Reservation | None = None
        self.error: BaseException | None = None
        self._buffer = bytearray()
        self._received = 0  # bytes of the file held: finished parts, in flight, buffered
        self._upload_id: str | None = None
        self._parts: dict[int, str] = {}
        self._next_part = 1
        self._futures: list[Future[None]] = []
        self._slots = threading.BoundedSemaphore(_IN_FLIGHT)
        self._pool: ThreadPoolExecutor | None = None
        self._checkpoint: Checkpoint | None = None
        self._checkpoint_parts = 0
        self._claimed = False
        self._done = False

    @property
    def sink(self) -> S3Upload:
        return self

    # -- starting ----------------------------------------------------------------

    def start(self, size: int, resume: Resume | None) -> tuple[int, Hasher]:
        offset = 0
        if resume is not None:
            offset = self._take_over(resume, size)
        self.keep_partial = offset > 0  # a refused reservation keeps what was taken over
        home = self.home
        replaced = home.size_of(self.key)
        self.reservation = home.reserve(size, replaced, 2**62, "")
        self.keep_partial = True
        self._one_request = offset == 0 and size <= 2 * self.part_size
        return offset, self._hasher

    def _take_over(self, resume: Resume, size: int) -> int:
        """Continue the kept partial upload if it holds exactly the client's prefix.

        The rule is :func:`~ftpproto.handshake.upload_start`'s; the prefix's
        digest is the BLAKE3 state this process kept at the end of the parts,
        or for a staged upload without one here, the digest recorded.
        """
        record = read_record(self.home, self.record_key)
        with checkpoints_lock:
            state = checkpoints.get(self.record_key)
        if record is None:
            return 0
        if state is None or (state.upload_id, state.size) != (record.upload_id, record.size):
            saved = None if record.stage else restore(record.state, record.tag)
            if saved is None or saved.hexdigest() != record.digest:
                return self._take_over_staged(resume, size, record)
            return self._take_over_saved(resume, size, record, saved)
        offset, hasher = upload_start(resume, size, record.size, lambda _: state.hasher.copy())
        if offset == 0:
            return 0
        with checkpoints_lock:
            if checkpoints.get(self.record_key) is not state:
                return 0  # another session took it over meanwhile
            del checkpoints[self.record_key]  # one session takes it over
        self._claim(record, CountingHasher(hasher, record.size), state)
        return record.size

    def _take_over_saved(
        self, resume: Resume, size: int, record: PartialRecord, saved: SavedHasher
    ) -> int:
        """Continue an upload kept by another process (or before a restart) from its saved state.

        Two sessions taking one over at once both upload the next parts; a
        completion names its parts by ETag (a stale one is refused), so only
        verified parts make the object, and the later session fails.
        """
        offset, hasher = upload_start(resume, size, record.size, lambda _: saved.copy())
        if offset == 0:
            return 0
        checkpoint = Checkpoint(record.upload_id, record.size, saved)
        self._claim(record, CountingHasher(hasher, record.size), checkpoint)
        return record.size

    def _take_over_staged(self, resume: Resume, size: int, record: PartialRecord) -> int:
        """Continue a staged upload kept by another process if its recorded prefix digest matches.

        Two sessions taking one over at once write the same parts: the read-back
        digest of the whole file then fails, and nothing unverified is published.
        """
        if not record.stage or resume != (record.size, record.digest) or record.size > size:
            return 0
        checkpoint = Checkpoint(record.upload_id, record.size, KnownDigest(record.digest))
        self._claim(record, CountingHasher(ReadBack(self.read_back), record.size), checkpoint)
        self._read_back = True
        return record.size

    def _claim(self, record: PartialRecord, hasher: CountingHasher, state: Checkpoint) -> None:
        """Take the kept upload over: its record is removed, its bytes now this upload's."""
        home = self.home
        with home.locked():
            home.client.delete_object(Bucket=home.bucket, Key=self.record_key)
            home.settle(-record.size)
        self._claimed = True
        self.target = record.stage or record.key
        self._upload_id = record.upload_id
        self._parts = dict(record.parts)
        self._next_part = max(self._parts, default=0) + 1
        self._received = record.size
        self._hasher = hasher
        self._checkpoint = state
        self._checkpoint_parts = len(self._parts)

    # -- receiving ---------------------------------------------------------------

    def write(self, data: bytes | memoryview, /) -> None:
        """Take the next bytes; a store error is kept for :meth:`commit` (the rest is dropped)."""
        if self.error is not None:
            return
        self._buffer += data
        self._received += len(data)
        if len(self._buffer) >= self.part_size and not self._one_request:
            self._send_part()

    def _send_part(self) -> None:
        body, self._buffer = self._buffer, bytearray()  # handed over, not copied
        number = self._next_part
        self._next_part += 1
        try:
            if self._upload_id is None:
                answer = self.home.client.create_multipart_upload(
                    Bucket=self.home.bucket, Key=self.target
                )
                self._upload_id = str(answer["UploadId"])
        except StoreError as exc:
            self.error = store_error(exc, self.subject)
            return
        if not self._read_back and self._hasher.count == self._received:  # state after the part
            hasher = self._hasher.inner.copy()
            self._checkpoint = Checkpoint(self._upload_id, self._received, hasher)
            self._checkpoint_parts = number
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_IN_FLIGHT, thread_name_prefix="s3-part")
        self._slots.acquire()  # at most _IN_FLIGHT parts uploading: the receiver waits
        future = self._pool.submit(self._upload_part, number, body)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def _upload_part(self, number: int, body: bytearray) -> None:
        home = self.home
        try:
            answer = home.client.upload_part(
                Bucket=home.bucket,
                Key=self.target,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
            self._parts[number] = str(answer["ETag"])
        except StoreError as exc:
            if self.error is None:
                self.error = store_error(exc, self.subject)

    def _wait_parts(self) -> None:
        for future in self._futures:
            future.result()
        self._futures.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- finishing ---------------------------------------------------------------

    def _all_parts(self) -> None:
        """Send the last part (it may be smaller than the others) and wait for every part."""
        if self._upload_id is not None and self._buffer:
            self._send_part()
        self._wait_parts()
        if self.error is not None:
            self.keep_partial = False
            raise self.error

    def commit(self, hexdigest: str) -> None:
        """Make the upload the object (verified by the caller); raise a store error seen."""
        self._all_parts()
        self._finish(commit=True, hexdigest=hexdigest)

    def _complete(self) -> str:
        """Complete the multipart upload at :attr:`target`; its ETag."""
        parts = [{"PartNumber": n, "ETag": e} for n, e in sorted(self._parts.items())]
        answer = self.home.client.complete_multipart_upload(
            Bucket=self.home.bucket,
            Key=self.target,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._upload_id = None
        self._staged = self.target != self.key
        return str(answer["ETag"])

    def read_back(self) -> str:
        """Complete the staged upload and hash it as stored: the digest of the whole file."""
        self._all_parts()
        home = self.home
        try:
            etag = self._complete()
            body = home.client.get_object(Bucket=home.bucket, Key=self.target, IfMatch=etag)
            hasher = new_hasher()
            for piece in body["Body"].iter_chunks(READ_PIECE):
                hasher.update(piece)
        except StoreError as exc:
            raise store_error(exc, self.subject) from exc
        return hasher.hexdigest()

    def abort(self) -> None:
        self._finish(commit=False)

    def _finish(self, commit: bool, hexdigest: str = "") -> None:
        if self._done:
            return
        self._done = True
        home = self.home
        reservation, self.reservation = self.reservation, None
        try:
            self._wait_parts()
            if commit:
                held, reservation = reservation, None
                self._publish(hexdigest, held)
                self._upload_id = None
                if not self._claimed:
                    with home.locked():
                        home.settle(-drop_partial(home, self.record_key))
            elif self.keep_partial and self._checkpoint is not None and self.error is None:
                self._keep()
                self._upload_id = None
        except StoreError as exc:
            raise store_error(exc, self.subject) from exc
        finally:
            if self._upload_id is not None:
                with contextlib.suppress(*StoreError):
                    home.client.abort_multipart_upload(
                        Bucket=home.bucket, Key=self.target, UploadId=self._upload_id
                    )
            if self._staged:  # completed at its private key, then refused or copied
                with contextlib.suppress(*StoreError):
                    home.client.delete_object(Bucket=home.bucket, Key=self.target)
            if reservation is not None:
                home.ledger.release(reservation)

    def _publish(self, hexdigest: str, held: Reservation | None) -> None:
        """Count the new object (refused over the quota) and make it visible in one step."""
        home = self.home
        client, bucket = home.client, home.bucket
        with home.locked():
            growth = self._received - home.size_of(self.key)
            home.settle(growth, home.quota, held)
            try:
                if self._upload_id is None and not self._staged:
                    client.put_object(
                        Bucket=bucket,
                        Key=self.key,
                        Body=bytes(self._buffer),
                        Metadata={DIGEST_KEY: hexdigest},
                    )
                    return
                etag = self._complete() if self._upload_id is not None else ""
                if self._staged:
                    etag = self._copy_into_place(hexdigest)
            except BaseException:
                home.settle(-growth)
                raise
        with contextlib.suppress(*StoreError):
            if etag:
                client.put_object_tagging(
                    Bucket=bucket, Key=self.key, Tagging=digest_tags(hexdigest, etag)
                )

    def _copy_into_place(self, hexdigest: str) -> str:
        """Copy the completed staged object to the key; the new ETag if the digest needs a tag."""
        home = self.home
        source = {"Bucket": home.bucket, "Key": self.target}
        if self._received <= COPY_LIMIT:
            home.client.copy_object(
                Bucket=home.bucket,
                Key=self.key,
                CopySource=source,
                Metadata={DIGEST_KEY: hexdigest},
                MetadataDirective="REPLACE",
            )
            return ""
        home.client.copy(source, home.bucket, self.key)
        return str(home.client.head_object(Bucket=home.bucket, Key=self.key)["ETag"])

    def _keep(self) -> None:
        """Record the finished parts up to the last checkpoint as the target's partial upload."""
        checkpoint = self._checkpoint
        assert checkpoint is not None
        home = self.home
        parts = sorted((n, e) for n, e in self._parts.items() if n <= self._checkpoint_parts)
        if len(parts) != self._checkpoint_parts:
            return  # a part before the checkpoint did not arrive: nothing to resume
        hasher = checkpoint.hasher
        saved = isinstance(hasher, SavedHasher) and self.target == self.key
        record = PartialRecord(
            self.key, checkpoint.upload_id, parts, checkpoint.size, hasher.hexdigest(),
            self.target if self.target != self.key else "",
            hasher.state() if saved else b"", state_tag() if saved else "",
        )  # fmt: skip
        with home.locked():
            old = drop_partial(home, self.record_key) if not self._claimed else 0
            body = record_body(record)
            home.client.put_object(Bucket=home.bucket, Key=self.record_key, Body=body)
            home.settle(checkpoint.size - old)
        if not self._read_back:  # a known digest only: nothing to continue from in memory
            with checkpoints_lock:
                checkpoints[self.record_key] = checkpoint
