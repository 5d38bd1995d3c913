"""The file commands of a session: navigation, information and managing files.

``pwd``, ``cd``, ``ls``, ``stat``, ``tree``, ``quota``, ``mkdir``, ``rmdir``,
``rm``, ``mv`` and ``touch``, as ``cmd_<name>`` methods that
:class:`~ftpserver.handler.SessionHandler` inherits and dispatches to after
its checks.  Each works on the session's storage with virtual paths (this
module never calls ``os``) and sends its reply; an error is raised.
"""

from __future__ import annotations

from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.messages import Message, ok, parse_size
from ftpserver.session import SessionBase
from ftpserver.transfers import handle_digest
from ftpserver.treeinfo import send_tree

__all__ = ["LISTING_BATCH", "MAX_MTIME", "FileCommands", "flag"]

LISTING_BATCH = 256
MAX_MTIME = 9_000_000_000  # seconds (year 2255): fits every filesystem's nanosecond times


class FileCommands(SessionBase):
    """The ``cmd_<name>`` methods that inspect and change the user's files."""

    def cmd_pwd(self) -> None:
        self.channel.send(ok("pwd", self.storage.cwd))

    def cmd_cd(self, path: str) -> None:
        self.channel.send(ok("cd", self.storage.chdir(path)))

    def cmd_ls(self, path: str = ".") -> None:
        storage = self.storage
        entries = storage.listdir(storage.virtual(path))
        batch: list[Message] = []
        count = 0
        for name, kind, size, mtime in entries:
            batch.append(Message("ls", ("entry", name, kind, str(size), str(mtime))))
            count += 1
            if len(batch) == LISTING_BATCH:
                self.channel.send(*batch)
                batch.clear()
        self.channel.send(*batch, ok("ls", str(count)))

    def cmd_stat(self, path: str, option: str | None = None) -> None:
        flag(option, "blake3", "stat PATH [blake3]")
        storage = self.storage
        virtual = storage.virtual(path)
        _, kind, size, mtime = storage.stat(virtual)
        fields = [kind, str(size), str(mtime)]
        if option and kind == "file":
            with storage.open_read(virtual) as source:
                fields.append(handle_digest(source))
        self.channel.send(ok("stat", *fields))

    def cmd_tree(self, path: str, option: str | None = None) -> None:
        flag(option, "blake3", "tree PATH [blake3]")
        send_tree(self.channel, self.storage, path, bool(option), lambda: self._wait(0))

    def cmd_quota(self) -> None:
        usage = self.storage.usage()
        limit = "-" if usage.quota is None else str(usage.quota)
        self.channel.send(ok("quota", str(usage.used), limit, str(usage.available)))

    # -- managing files ------------------------------------------------------

    def cmd_mkdir(self, path: str, option: str | None = None) -> None:
        flag(option, "parents", "mkdir PATH [parents]")
        virtual = self.storage.virtual(path)
        self.storage.mkdir(virtual, parents=bool(option))
        self._audit("mkdir", path=virtual)
        self.channel.send(ok("mkdir", virtual))

    def cmd_rmdir(self, path: str) -> None:
        virtual = self.storage.virtual(path)
        self.storage.rmdir(virtual)
        self._audit("rmdir", path=virtual)
        self.channel.send(ok("rmdir", virtual))

    def cmd_rm(self, path: str, option: str | None = None, count: str | None = None) -> None:
        flag(option, "recursive", "rm PATH [recursive [folders]]")
        flag(count, "folders", "rm PATH [recursive [folders]]")
        storage = self.storage
        virtual = storage.virtual(path)
        if storage.kind(virtual) == "dir":
            if not option:
                raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder (use rm -r): {virtual}")
            files, freed, folders = storage.remove_tree(virtual)
        else:
            files, freed, folders = 1, storage.remove(virtual), 0
        self._audit("rm", path=virtual, files=files, bytes=freed)
        self.channel.send(ok("rm", str(files), str(freed), *([str(folders)] if count else [])))

    def cmd_mv(self, old: str, new: str, option: str | None = None) -> None:
        flag(option, "replace", "mv OLD NEW [replace]")
        storage = self.storage
        old_virtual = storage.virtual(old)
        storage.kind(old_virtual)  # a missing OLD is reported before anything wrong with NEW
        new_virtual = storage.rename(
            old_virtual, storage.virtual(new), new.endswith("/"), replace=option is not None
        )
        self._audit("mv", path=old_virtual, to=new_virtual)
        self.channel.send(ok("mv", new_virtual))

    def cmd_touch(self, path: str, mtime: str) -> None:
        seconds = parse_size(mtime)
        if seconds > MAX_MTIME:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"mtime out of range: {mtime}")
        virtual = self.storage.virtual(path)
        self.storage.set_mtime(virtual, seconds)
        self.channel.send(ok("touch", virtual, mtime))


def flag(option: str | None, word: str, usage: str) -> None:
    """Check an optional flag argument: absent or exactly ``word``."""
    if option is not None and option != word:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"usage: {usage}")
