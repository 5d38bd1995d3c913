"""The S3 storage backend: a user's home is the key prefix ``PREFIX/USERNAME/`` in a bucket.

The jail is the key prefix: every client path goes through the same
normalisation as on local storage (:func:`~ftpserver.storage.paths.virtual_path`:
``..`` stops at ``/``, NUL, over-long and reserved names refused), and the
key is the home's prefix plus the normalised path, so no path can name a
key outside it.  Folders are what S3 tools show: a common prefix, plus an
empty marker object ``name/`` (made by ``mkdir``, and for a folder emptied
by ``rm`` or ``mv`` so that it does not vanish).

What differs from local storage (docs/S3.md): ``mv`` is a server-side copy
then a delete, object by object for a folder (an interrupted ``mv`` leaves
each file in one place or the other, or in both, never lost); ``mv`` with
``replace`` copies over the target (atomic for it) and then deletes the
source; folders have no times of their own (``ls -l`` shows 0, ``touch`` on
one is IS_DIRECTORY); a file's time is its last write, or the time ``touch``
set, kept as metadata (:func:`~ftpserver.storage.s3files.object_mtime`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
from collections.abc import Iterator
from typing import Any

from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.state.ledger import QuotaLedger, Usage
from ftpserver.storage.base import Entry
from ftpserver.storage.paths import PARTIAL_DIR, is_reserved, virtual_path
from ftpserver.storage.s3files import Home, S3ReadHandle, object_mtime
from ftpserver.storage.s3moves import call, drop_folders, folders_under, move_folder, move_object
from ftpserver.storage.s3partial import read_record
from ftpserver.storage.s3sweep import measure_home, sweep_partials
from ftpserver.storage.s3upload import S3Upload
from ftpserver.users import User

__all__ = ["S3Storage", "home_prefix"]

MAX_KEY_BYTES = 1024  # S3's limit on a key, prefix included


def _missing(virtual: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), virtual)


def home_prefix(prefix: str, user: str) -> str:
    """The key prefix of ``user``'s home: ``PREFIX/USER/`` (``USER/`` without a prefix)."""
    prefix = prefix.strip("/")
    return f"{prefix}/{user}/" if prefix else f"{user}/"


class S3Storage:
    """One user's home in a bucket (see :class:`~ftpserver.storage.base.Storage`)."""

    def __init__(
        self,
        user: User,
        ledger: QuotaLedger,
        client: Any,
        bucket: str,
        prefix: str = "",
        part_size: int = 8 * 1024 * 1024,
        stage: bool = False,
    ) -> None:
        self.user = user
        self.part_size = part_size
        self.stage = stage  # multipart uploads at a private key: resumable by any process
        base = home_prefix(prefix, user.name)
        self.home = Home(client, bucket, base, ledger, user.name, user.quota, self.measure)
        self.client = client
        self.bucket = bucket
        self._cwd = "/"

    # -- paths -----------------------------------------------------------------

    @property
    def cwd(self) -> str:
        return self._cwd

    def virtual(self, path: str) -> str:
        virtual = virtual_path(self._cwd, path)
        try:
            key = self.key(virtual).encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(ErrorCode.BAD_PATH, "path is not valid UTF-8") from None
        # The longest key here is a folder marker: the path, a slash, the home's prefix.
        if len(key) + 1 > MAX_KEY_BYTES:
            limit = MAX_KEY_BYTES - 1 - len(self.home.base.encode())
            raise ProtocolError(ErrorCode.PATH_TOO_LONG, f"path longer than {limit} bytes")
        return virtual

    def key(self, virtual: str) -> str:
        """The object key of a normalised virtual path (the home's prefix for ``/``)."""
        return self.home.base + virtual.lstrip("/")

    def _record_key(self, virtual: str) -> str:
        digest = hashlib.sha256(virtual.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.home.base}{PARTIAL_DIR}/{digest}"

    def chdir(self, path: str) -> str:
        virtual = self.virtual(path)
        if self.stat(virtual).kind != "dir":
            raise ProtocolError(ErrorCode.NOT_DIRECTORY, f"not a folder: {virtual}")
        self._cwd = virtual
        return virtual

    def prepare(self) -> None:
        """Nothing to do: a home is a key prefix, there whether or not it holds objects."""

    # -- looking -----------------------------------------------------------------

    def _call(self, subject: str, method: str, **kwargs: Any) -> Any:
        return call(self.home, subject, method, **kwargs)

    def _is_folder(self, virtual: str) -> bool:
        if virtual == "/":
            return True
        answer = self._call(virtual, "list_objects_v2", Prefix=self.key(virtual) + "/", MaxKeys=1)
        return bool(answer.get("KeyCount") or answer.get("Contents"))

    def stat(self, virtual: str) -> Entry:
        name = posixpath.basename(virtual)
        if virtual != "/":
            head = self.home.head(self.key(virtual))
            if head is not None:
                return Entry(name, "file", int(head["ContentLength"]), object_mtime(head))
        if self._is_folder(virtual):
            return Entry(name, "dir", 0, 0)
        raise _missing(virtual)

    def kind(self, virtual: str) -> str:
        return self.stat(virtual).kind

    def listdir(self, virtual: str) -> Iterator[Entry]:
        entry = self.stat(virtual)
        if entry.kind == "file":
            return iter([entry])
        prefix = self.home.base if virtual == "/" else self.key(virtual) + "/"
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[Entry]:
        files: set[str] = set()
        for page in self.home.pages(prefix, delimiter=True):
            names = [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
            names = [name for name in names if name and not is_reserved(name)]
            # A listing has no metadata: each file's HEAD says whether touch set its time.
            for name, head in zip(names, self.home.heads(prefix + n for n in names), strict=True):
                if head is not None:  # else removed meanwhile
                    files.add(name)
                    yield Entry(name, "file", int(head["ContentLength"]), object_mtime(head))
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) :].rstrip("/")
                if name and not is_reserved(name) and name not in files:
                    yield Entry(name, "dir", 0, 0)

    # -- changing ----------------------------------------------------------------

    def _put_marker(self, virtual: str) -> None:
        self._call(virtual, "put_object", Key=self.key(virtual) + "/", Body=b"")

    def _keep_folder(self, virtual: str) -> None:
        """Give ``virtual``'s folder a marker if removing ``virtual`` left it empty."""
        parent = posixpath.dirname(virtual)
        if parent != "/" and not self._is_folder(parent):
            self._put_marker(parent)

    def mkdir(self, virtual: str, parents: bool = False) -> None:
        try:
            entry = self.stat(virtual)
        except FileNotFoundError:
            entry = None
        if entry is not None:
            if parents and entry.kind == "dir":
                return
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), virtual)
        parent = posixpath.dirname(virtual)
        try:
            kind = self.stat(parent).kind
        except FileNotFoundError:
            if not parents:
                raise
            self.mkdir(parent, parents=True)
            kind = "dir"
        if kind != "dir":
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), parent)
        self._put_marker(virtual)

    def rmdir(self, virtual: str) -> None:
        if virtual == "/":
            raise PermissionError(errno.EPERM, "cannot remove the home folder", virtual)
        if self.stat(virtual).kind != "dir":
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), virtual)
        self._check_empty(virtual)
        self._call(virtual, "delete_object", Key=self.key(virtual) + "/")
        self._keep_folder(virtual)

    def _check_empty(self, virtual: str) -> None:
        """ENOTEMPTY unless the folder holds nothing but its marker."""
        marker = self.key(virtual) + "/"
        answer = self._call(virtual, "list_objects_v2", Prefix=marker, MaxKeys=2)
        contents = answer.get("Contents", [])
        if any(item["Key"] != marker for item in contents) or answer.get("CommonPrefixes"):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), virtual)

    def remove(self, virtual: str) -> int:
        if self.stat(virtual).kind != "file":
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), virtual)
        home = self.home
        with home.locked():
            size = home.size_of(self.key(virtual))
            self._call(virtual, "delete_object", Key=self.key(virtual))
            home.settle(-size)
        self._keep_folder(virtual)
        return size

    def remove_tree(self, virtual: str) -> tuple[int, int, int]:
        if virtual == "/":
            raise PermissionError(errno.EPERM, "cannot remove the home folder", virtual)
        prefix = self.key(virtual) + "/"
        files = freed = 0
        folders: set[str] = {prefix}
        for page in self.home.pages(prefix, delimiter=False):
            items = []
            for item in page.get("Contents", []):
                folders |= folders_under(prefix, item["Key"])
                if not item["Key"].endswith("/"):
                    items.append(item)
            if not items:
                continue
            doomed = [{"Key": item["Key"]} for item in items]
            with self.home.locked():
                answer = self._call(virtual, "delete_objects", Delete={"Objects": doomed})
                failed = {e["Key"] for e in answer.get("Errors", [])}
                gone = [item for item in items if item["Key"] not in failed]
                size = sum(int(item["Size"]) for item in gone)
                self.home.settle(-size)
            files += len(gone)
            freed += size
            if failed:
                raise PermissionError(errno.EACCES, "some objects could not be removed", virtual)
        drop_folders(self.home, folders, virtual)
        self._keep_folder(virtual)
        return files, freed, len(folders)  # the top folder among them; S3 has no symlinks

    def rename(self, old: str, new: str, into_folder: bool = False, replace: bool = False) -> str:
        entry = self.stat(old)
        target = self._entry(new)
        if into_folder and (target is None or target.kind != "dir"):
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no such folder: {new}")
        if target is not None and target.kind == "dir":
            new = self.virtual(posixpath.join(new, posixpath.basename(old)))
            target = self._entry(new)
        if new == old:
            if replace and entry.kind == "file":
                return new  # onto itself: nothing to replace, as rename(2)
            raise ProtocolError(ErrorCode.EXISTS, f"already exists: {new}")
        if old == "/" or new.startswith(old.rstrip("/") + "/"):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), new)
        parent = posixpath.dirname(new)
        if self.stat(parent).kind != "dir":
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), parent)
        if target is not None:
            if not replace:
                raise ProtocolError(ErrorCode.EXISTS, f"already exists: {new}")
            self._check_replaceable(entry, target, new)
        if entry.kind == "file":
            move_object(self.home, self.key(old), self.key(new), new, replace)
        else:
            move_folder(self.home, self.key(old) + "/", self.key(new) + "/", new)
        self._keep_folder(old)
        return new

    def _entry(self, virtual: str) -> Entry | None:
        try:
            return self.stat(virtual)
        except FileNotFoundError:
            return None

    def _check_replaceable(self, entry: Entry, target: Entry, new: str) -> None:
        """What ``rename(2)`` allows: a file over a file, a folder over an empty folder."""
        if entry.kind == "file" and target.kind == "dir":
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), new)
        if entry.kind == "dir" and target.kind != "dir":
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), new)
        if target.kind == "dir":
            self._check_empty(new)

    def set_mtime(self, virtual: str, mtime: int) -> None:
        head = self.home.head(self.key(virtual)) if virtual != "/" else None
        if head is not None:
            self.home.set_mtime(self.key(virtual), head, mtime, virtual)
        elif self._is_folder(virtual):
            raise ProtocolError(
                ErrorCode.IS_DIRECTORY, f"folders have no modification time on S3: {virtual}"
            )
        else:
            raise _missing(virtual)

    # -- transfers ---------------------------------------------------------------

    def open_read(self, virtual: str) -> S3ReadHandle:
        head = self.home.head(self.key(virtual)) if virtual != "/" else None
        if head is None:
            if self._is_folder(virtual):
                raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder: {virtual}")
            raise _missing(virtual)
        return S3ReadHandle(self.home, self.key(virtual), head, virtual)

    def open_upload(self, virtual: str) -> S3Upload:
        if virtual == "/" or self._is_folder(virtual):
            raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder: {virtual}")
        parent = posixpath.dirname(virtual)
        try:
            kind = self.stat(parent).kind
        except FileNotFoundError:
            kind = ""
        if kind != "dir":
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no such folder: {parent}")
        return S3Upload(
            self.home,
            self.key(virtual),
            self._record_key(virtual),
            self.part_size,
            virtual,
            self.stage,
        )

    def partial_size(self, virtual: str) -> int:
        record = read_record(self.home, self._record_key(virtual))
        return record.size if record else 0

    def remove_stale_partials(self, max_age: float) -> int:
        """Drop kept partial uploads older than ``max_age``; abort abandoned multipart uploads."""
        return sweep_partials(self.home, max_age)

    # -- space -------------------------------------------------------------------

    def measure(self) -> int:
        """The sum of the home's object sizes, plus the finished parts of kept partial uploads."""
        return measure_home(self.home)

    def free_space(self) -> int:
        return 2**62  # an object store has no disk to fill; the quota is the limit

    def usage(self) -> Usage:
        home = self.home
        return home.ask(lambda: home.ledger.usage(home.user, home.quota, self.free_space()))
